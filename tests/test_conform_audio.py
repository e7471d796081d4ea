"""``grade conform --assemble``'s sound: real CMX EDLs with audio events, real media with a known tone each
(so the programme shows which source is heard where), decoded back and compared sample by sample."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from clips import scene_frame
from conftest import no_temp_files
from test_conform import run

from grade.cube import write_cube
from grade.lut import identity_lut

SR, FPS, PER_FRAME = 48_000, 24, 2000  # samples per frame at 24 fps
TONES = {"A001": 440.0, "B002": 1000.0, "C003": 250.0}


def tone(reel: str, samples: np.ndarray) -> np.ndarray:
    """The source ``reel``'s tone at its own sample indices (sample 0: its first video frame)."""
    return 0.3 * np.sin(2 * np.pi * TONES[reel] * samples / SR)


def tone_clip(path: Path, reel: str, frames: int, timecode: str, audio: str | None = "pcm_s16le") -> Path:
    """64x48 H.264 with a timecode tag and (``audio``) a stereo 48 kHz tone from sample 0."""
    with av.open(str(path), "w") as box:
        box.metadata["timecode"] = timecode
        vs = box.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        vs.options = {"preset": "ultrafast"}
        vs.time_base = Fraction(1, FPS)
        a_s = box.add_stream(audio, rate=SR) if audio else None
        if a_s is not None:
            a_s.layout = "stereo"
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(scene_frame(64, 48, i, reel == "B002"), format="rgb24")
            f.pts = i
            box.mux(vs.encode(f))
        box.mux(vs.encode(None))
        if a_s is not None:
            n = frames * PER_FRAME
            for s0 in range(0, n, 1000):
                x = tone(reel, np.arange(s0, min(n, s0 + 1000)))
                af = av.AudioFrame.from_ndarray(np.stack([x, x]).astype(np.float32), format="fltp", layout="stereo")
                af.sample_rate, af.pts, af.time_base = SR, s0, Fraction(1, SR)
                box.mux(a_s.encode(af))
            box.mux(a_s.encode(None))
    return path


def programme_audio(path: Path) -> np.ndarray:
    """The programme's whole sound, float (2, n), from its first sample."""
    with av.open(str(path)) as box:
        assert len(box.streams.audio) == 1
        s = box.streams.audio[0]
        assert s.codec_context.sample_rate == SR and s.codec_context.layout.nb_channels == 2
        parts = [f.to_ndarray().astype(np.float64) for f in box.decode(s)]
    pcm = np.concatenate(parts, axis=1)
    if pcm.dtype.kind != "f" or np.abs(pcm).max() > 1.5:  # s32 (24-bit PCM decodes as s32): to [-1, 1]
        pcm = pcm / 2**31
    if pcm.shape[0] != 2:  # packed formats: interleaved
        pcm = pcm.reshape(-1, 2).T
    return pcm


def picture_frames(path: Path) -> int:
    with av.open(str(path)) as box:
        return sum(1 for _ in box.decode(video=0))


def check_span(pcm: np.ndarray, a: int, b: int, expected: np.ndarray, tol: float = 2e-3, edge: int = 4) -> None:
    """``pcm[:, a:b]`` is ``expected`` (both channels), except ``edge`` samples at each end (the cut)."""
    got = pcm[:, a + edge : b - edge]
    want = expected[edge : len(expected) - edge]
    assert np.abs(got - want[None]).max() < tol, (a, b, np.abs(got - want[None]).max())


@pytest.fixture
def media(tmp_path: Path) -> Path:
    folder = tmp_path / "media"
    folder.mkdir()
    tone_clip(folder / "A001.mov", "A001", 96, "01:00:00:00")
    tone_clip(folder / "B002.mov", "B002", 96, "02:00:00:00")
    write_cube(tmp_path / "id.cube", identity_lut(9))
    return folder


def conform(capsys, tmp_path: Path, media: Path, edl_text: str, programme: str) -> tuple[dict, Path]:
    """Conform ``edl_text`` (a CMX EDL) with an identity look and assemble it into ``programme``."""
    name = Path(programme).stem
    edl = tmp_path / f"{name}.edl"
    edl.write_text(edl_text)
    prog = tmp_path / programme
    args = ["conform", edl, "--media", media, "--look", tmp_path / "id.cube", "-o", tmp_path / f"graded-{name}"]
    code, out, err = run(capsys, *args, "--handles", "0", "--match", "reel", "--assemble", prog, "--json")
    assert code == 0, err
    assert no_temp_files(tmp_path)
    return json.loads(out), prog


SPLIT_EDL = """TITLE: sound
FCM: NON-DROP FRAME

001  A001     V     C        01:00:00:00 01:00:01:00 10:00:00:00 10:00:01:00
002  B002     A     C        02:00:00:12 02:00:01:12 10:00:00:00 10:00:01:00
003  B002     B     C        02:00:02:00 02:00:02:12 10:00:01:00 10:00:01:12
004  A001     AA    C        01:00:02:00 01:00:02:12 10:00:01:12 10:00:02:00
005  A001     V     C        01:00:03:00 01:00:03:12 10:00:01:12 10:00:02:00
006  B002     V     C        02:00:03:00 02:00:03:06 10:00:02:00 10:00:02:06
"""


def test_audio_events_are_cut_sample_accurately(capsys, tmp_path: Path, media: Path) -> None:
    """A split edit (B's sound under A's picture), a cut on picture and sound (B), an audio-only AA event
    under other picture (heard once, not doubled on A1 and A2), and a picture-only event with no sound
    event (silent: the edit's own audio events are what is heard)."""
    report, prog = conform(capsys, tmp_path, media, SPLIT_EDL, "programme.mov")
    assert sum("event 002: audio only" in w for w in report["warnings"]) == 1
    assert picture_frames(prog) == 54
    pcm = programme_audio(prog)
    assert pcm.shape[1] == 54 * PER_FRAME  # as long as the picture, to the sample
    s = np.arange(pcm.shape[1])
    check_span(pcm, 0, 48000, tone("B002", s[:48000] + 12 * PER_FRAME))  # 02:00:00:12 under A's picture
    check_span(pcm, 48000, 72000, tone("B002", s[48000:72000] - 48000 + 48 * PER_FRAME))
    check_span(pcm, 72000, 96000, tone("A001", s[72000:96000] - 72000 + 48 * PER_FRAME))  # AA: once
    assert np.abs(pcm[:, 96000 + 4 :]).max() < 1e-4  # no sound event under 006: silent
    # each cut is where the record timecode puts it, to a few samples: the last sample before it is the
    # outgoing source's, the first after it the incoming's
    cuts = [(48000, ("B002", 12 * PER_FRAME), ("B002", 48 * PER_FRAME - 48000))]
    cuts.append((72000, ("B002", 48 * PER_FRAME - 48000), ("A001", 48 * PER_FRAME - 72000)))
    for cut, before, after in cuts:
        x = s[cut - 40 : cut + 40]
        err_out = np.abs(pcm[0, cut - 40 : cut + 40] - tone(before[0], x + before[1]))
        err_in = np.abs(pcm[0, cut - 40 : cut + 40] - tone(after[0], x + after[1]))
        assert err_out[:38].max() < 2e-3 and err_in[42:].max() < 2e-3, cut


DISSOLVE_EDL = """TITLE: dissolve
FCM: NON-DROP FRAME

001  A001     V     C        01:00:00:00 01:00:01:00 10:00:00:00 10:00:01:00
002  A001     V     C        01:00:01:00 01:00:01:00 10:00:01:00 10:00:01:00
002  B002     V     D    012 02:00:00:00 02:00:01:00 10:00:01:00 10:00:02:00
"""


def test_a_picture_only_edl_takes_its_events_sync_sound_and_dissolves_as_cross_fades(
    capsys, tmp_path: Path, media: Path
) -> None:
    """No audio event in the list: each video event's own source sound over its picture's range, and the
    dissolve an equal-power cross-fade of both sources over the dissolve's 12 frames."""
    _, prog = conform(capsys, tmp_path, media, DISSOLVE_EDL, "programme.mkv")
    assert picture_frames(prog) == 48
    pcm = programme_audio(prog)
    assert pcm.shape[1] == 48 * PER_FRAME
    s = np.arange(pcm.shape[1]).astype(float)
    check_span(pcm, 0, 48000, tone("A001", s[:48000]))
    fade = slice(48000, 72000)  # the dissolve: A goes on past its out point, B starts at its in point
    t = (s[fade] - 48000 + 0.5) / 24000
    mixed = np.cos(t * np.pi / 2) * tone("A001", s[fade]) + np.sin(t * np.pi / 2) * tone("B002", s[fade] - 48000)
    check_span(pcm, 48000, 72000, mixed, edge=0)
    middle = pcm[0, 58000:62000]
    alone = (tone("A001", s[58000:62000]), tone("B002", s[58000:62000] - 48000))
    assert all(np.abs(middle - x).max() > 0.05 for x in alone)  # both are heard: neither alone
    check_span(pcm, 72000, 96000, tone("B002", s[72000:96000] - 48000))


def test_aac_programme_and_media_without_audio(capsys, tmp_path: Path, media: Path) -> None:
    """An .mp4 programme carries AAC as long as its picture; an event whose media has no audio stream is
    silent there; when no media has audio the programme is picture only, without an error."""
    tone_clip(media / "C003.mp4", "C003", 48, "03:00:00:00", audio=None)
    text = (
        "TITLE: mixed\n\n"
        "001  A001     V     C        01:00:00:00 01:00:01:00 10:00:00:00 10:00:01:00\n"
        "002  C003     V     C        03:00:00:00 03:00:01:00 10:00:01:00 10:00:02:00\n"
    )
    _, prog = conform(capsys, tmp_path, media, text, "programme.mp4")
    with av.open(str(prog)) as box:
        assert box.streams.audio[0].codec_context.name == "aac"
    pcm = programme_audio(prog)
    assert abs(pcm.shape[1] - 48 * PER_FRAME) <= 1024  # one AAC frame at most
    rms = [float(np.sqrt((pcm[0, a : a + 9600] ** 2).mean())) for a in (12000, 60000)]
    assert rms[0] > 0.15 and rms[1] < 1e-3  # A's tone (0.3 peak: 0.21 RMS), then C's silence
    spectrum = np.abs(np.fft.rfft(pcm[0, 4000:44000]))
    assert abs(np.argmax(spectrum) * SR / 40000 - TONES["A001"]) < 2  # the tone of A001

    only = "TITLE: silent\n\n002  C003     V     C        03:00:00:00 03:00:01:00 10:00:00:00 10:00:01:00\n"
    _, prog2 = conform(capsys, tmp_path, media, only, "silent.mp4")
    with av.open(str(prog2)) as box:
        assert not box.streams.audio  # no media with audio: picture only
    assert picture_frames(prog2) == 24
