"""Damaged input is reported: a truncated or cut file is graded as far as it decodes, with a warning
that names where it broke; ``--strict`` refuses it and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from clips import make_clip, read_all
from conftest import no_temp_files

from grade.cli import main

FRAMES = 48


def _faststart(src: Path, dst: Path) -> Path:
    """``src`` remuxed into an MP4 whose index (moov) comes first, as delivery files are."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        for packet in inp.demux(vin):
            if packet.dts is None:
                continue
            packet.stream = vout
            out.mux(packet)
    return dst


def _cut(path: Path, share: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * share)])
    return path


@pytest.fixture(params=["mkv", "mp4-faststart"])
def damaged(request, tmp_path: Path) -> Path:
    if request.param == "mkv":
        clip = make_clip(tmp_path / "cut.mkv", frames=FRAMES, size=(96, 64), audio=False)
    else:
        whole = make_clip(tmp_path / "whole.mp4", frames=FRAMES, size=(96, 64), audio=False)
        clip = _faststart(whole, tmp_path / "cut.mp4")
        whole.unlink()
    return _cut(clip, 0.55)


def test_a_truncated_file_is_graded_as_far_as_it_goes_with_a_warning(capsys, damaged: Path, reference: Path) -> None:
    out = damaged.with_name("out" + damaged.suffix)
    code = main([str(damaged), "--look", str(reference), "--mode", "fast", "-o", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    frames, _ = read_all(out)
    graded = report["damaged"]["frames_graded"]
    assert 0 < graded < FRAMES and len(frames) == graded == report["frames"]
    assert report["damaged"]["frames_expected"] == FRAMES
    warning = [line for line in captured.err.splitlines() if line.startswith("grade: warning:")]
    assert len(warning) == 1, captured.err
    assert f"graded {graded} of {FRAMES} frames" in warning[0] and "breaks at 00:00:" in warning[0]
    assert "Traceback" not in captured.err


def test_strict_refuses_a_truncated_file_and_writes_nothing(capsys, damaged: Path, reference: Path) -> None:
    out = damaged.with_name("out" + damaged.suffix)
    code = main([str(damaged), "--look", str(reference), "--mode", "fast", "-o", str(out), "--strict", "-q"])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("grade: error:") and "damaged" in lines[0], err
    assert not out.exists() and no_temp_files(out.parent)


def test_a_whole_file_has_no_warning(capsys, tmp_path: Path, reference: Path) -> None:
    clip = make_clip(tmp_path / "whole.mkv", frames=FRAMES, size=(96, 64), audio=False)
    code = main([str(clip), "--look", str(reference), "--mode", "fast", "--strict", "--json"])
    captured = capsys.readouterr()
    assert code == 0 and "warning" not in captured.err
    assert json.loads(captured.out)["damaged"] is None


def test_conform_reports_an_event_whose_media_breaks_off(capsys, tmp_path: Path) -> None:
    import opentimelineio as otio
    from clips import cli_args
    from test_conform import HOUR, clip, indexed_clip, tc

    media = tmp_path / "media"
    media.mkdir()
    cut = _cut(indexed_clip(media / "A001.mkv", 60, "01:00:00:00"), 0.6)
    decodable = len(read_all(cut)[0])
    assert 15 < decodable < 55
    track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    track.append(clip("early", "A001", HOUR + 2, 10))
    track.append(clip("late", "A001", HOUR + decodable - 4, 10))  # across where the file breaks
    timeline = otio.schema.Timeline(name="cut", global_start_time=tc(10 * HOUR))
    timeline.tracks.append(track)
    edl = tmp_path / "cut.edl"
    otio.adapters.write_to_file(timeline, str(edl), adapter_name="cmx_3600")
    ref = tmp_path / "ref.png"
    import cv2

    cv2.imwrite(str(ref), np.full((30, 40, 3), (40, 120, 200), np.uint8))
    args = ["conform", edl, "--media", media, "--look", ref, "--mode", "fast", "--handles", "0", "-o", tmp_path / "out"]
    code = main(cli_args([*args, "--json"]))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = json.loads(captured.out)
    early, late = out["events"]
    assert early["status"] == "done" and early["frames"] == 10 and not early.get("message")
    assert late["frames"] < 10 and "is damaged: graded" in late["message"]
    assert any("event 2 late" in w and "damaged" in w for w in out["warnings"])
