"""The command a user types, end to end on real files: outputs, reports and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from clips import audio_duration, cli_args, make_clip, make_still, read_all
from conftest import no_temp_files, sha

from grade.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(cli_args(args))
    out, err = capsys.readouterr()
    return code, out, err


def mean_rgb(frames: list[np.ndarray]) -> np.ndarray:
    return np.mean([f.reshape(-1, 3).mean(0) for f in frames], 0)


def test_grade_video_end_to_end(capsys, clip: Path, reference: Path, tmp_path: Path) -> None:
    before = sha(clip)
    code, out, err = run(capsys, clip, "--look", reference, "--preview", tmp_path / "sheet.png", "--json")
    assert code == 0, err
    report = json.loads(out)
    graded = clip.with_name("shot.graded.mp4")
    assert report["output"] == str(graded) and graded.exists()
    src_frames, src_t = read_all(clip)
    out_frames, out_t = read_all(graded)
    assert len(out_frames) == len(src_frames) == report["frames"] == 8
    assert out_t == pytest.approx(src_t)
    assert audio_duration(graded) == pytest.approx(audio_duration(clip), abs=1e-3)
    ref = cv2.cvtColor(cv2.imread(str(reference)), cv2.COLOR_BGR2RGB)
    ref_mean = ref.reshape(-1, 3).mean(0)
    d_before = np.linalg.norm(mean_rgb(src_frames) - ref_mean)
    d_after = np.linalg.norm(mean_rgb(out_frames) - ref_mean)
    assert d_after < 0.5 * d_before, (d_before, d_after)  # colours moved toward the reference
    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    assert sheet is not None and sheet.shape[0] > 100
    assert sha(clip) == before
    assert no_temp_files(clip.parent)


def test_output_option_strength_and_summary(capsys, clip: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "soft.mp4"
    code, _, err = run(capsys, clip, "--look", reference, "-o", out, "--strength", "0")
    assert code == 0 and "graded" in err
    a, _ = read_all(clip)
    b, _ = read_all(out)
    assert np.abs(a[3].astype(int) - b[3]).mean() < 4  # strength 0: the footage, re-encoded


def test_existing_output_is_not_overwritten_without_force(capsys, clip: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    out.write_bytes(b"keep me")
    code, _, err = run(capsys, clip, "--look", reference, "-o", out)
    assert code != 0 and err.count("\n") == 1 and "exists" in err
    assert out.read_bytes() == b"keep me"
    assert run(capsys, clip, "--look", reference, "-o", out, "--force", "-q")[0] == 0
    assert len(read_all(out)[0]) == 8


def test_mov_default_is_prores_and_keeps_audio(capsys, tmp_path: Path, reference: Path) -> None:
    src = make_clip(tmp_path / "cam.mov", codec="libx264", audio_codec="pcm_s16le", frames=5)
    code, out, err = run(capsys, src, "--look", reference, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["encoder"] == "prores_ks" and report["streams_copied"] == ["audio#1 (pcm_s16le)"]


@pytest.mark.parametrize("sixteen", [False, True])
def test_grade_still_8_and_16_bit(capsys, tmp_path: Path, reference: Path, sixteen: bool) -> None:
    src = make_still(tmp_path / "photo.png", scene=0, sixteen_bit=sixteen)
    code, out, err = run(capsys, src, "--look", reference, "--json")
    assert code == 0, err
    img = cv2.imread(str(tmp_path / "photo.graded.png"), cv2.IMREAD_UNCHANGED)
    orig = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
    assert img.dtype == orig.dtype and img.shape == orig.shape
    assert np.abs(img.astype(float) - orig).mean() > (2 if not sixteen else 500)


def test_still_with_alpha_keeps_alpha(capsys, tmp_path: Path, reference: Path) -> None:
    rgba = np.dstack([cv2.imread(str(make_still(tmp_path / "a.png", scene=0))), np.full((48, 64), 77, np.uint8)])
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    assert run(capsys, tmp_path / "rgba.png", "--look", reference, "-q")[0] == 0
    out = cv2.imread(str(tmp_path / "rgba.graded.png"), cv2.IMREAD_UNCHANGED)
    assert out.shape[2] == 4 and (out[..., 3] == 77).all()


def test_shots_command(capsys, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "cut.mp4", frames=40, cut_at=20, audio=False)
    code, out, _ = run(capsys, "shots", src, "--json")
    assert code == 0
    data = json.loads(out)
    assert [s["start"] for s in data["shots"]] == [0, 20]
    assert all(s["start"] <= s["key_frame"] < s["end"] for s in data["shots"])
    code, out, _ = run(capsys, "shots", src, "-q")
    assert out.splitlines()[1].split("\t")[:3] == ["2", "20", "40"]


def _one_line_error(capsys, args, match: str, code_expected: int | None = None) -> None:
    code, out, err = run(capsys, *args)
    assert code != 0
    if code_expected is not None:
        assert code == code_expected
    assert err.startswith("grade: error: ") and err.count("\n") == 1, err
    assert match in err, err
    assert "Traceback" not in err


def test_user_errors_are_one_line(capsys, tmp_path: Path, clip: Path, reference: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello " * 200)
    fake_jpg = tmp_path / "fake.jpg"
    fake_jpg.write_text("not an image")
    _one_line_error(capsys, [tmp_path / "missing.mp4", "--look", reference], "no such file")
    _one_line_error(capsys, [text, "--look", reference], "cannot read media")
    _one_line_error(capsys, [tmp_path, "--look", reference], "directory")
    _one_line_error(capsys, [clip, "--look", tmp_path / "nope.jpg"], "no such file")
    _one_line_error(capsys, [clip, "--look", fake_jpg], "not a readable image")
    _one_line_error(capsys, [clip, "--look", clip], "reference is a video")
    _one_line_error(capsys, [clip, "--look", reference, "-o", clip, "--force"], "input file itself")
    _one_line_error(capsys, [clip, "--look", reference, "--strength", "2"], "between 0 and 1", 2)
    _one_line_error(
        capsys, [clip, "--look", reference, "--codec", "bogus", "-o", tmp_path / "x.mp4"], "unknown video codec"
    )
    _one_line_error(capsys, [clip, "--look", reference, "-o", tmp_path / "no" / "x.mp4"], "does not exist")
    _one_line_error(capsys, [clip], "--look")
    assert not list(tmp_path.glob("*.graded.*"))
    assert no_temp_files(tmp_path)


def test_cuda_request_without_gpu(capsys, clip: Path, reference: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the CUDA path is exercised by a real run")
    _one_line_error(capsys, [clip, "--look", reference, "--device", "cuda"], "no CUDA device")


def test_console_script_runs_without_traceback(tmp_path: Path, clip: Path, reference: Path) -> None:
    exe = Path(sys.executable).with_name("grade")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "grade"]
    words = cli_args([clip, "--look", reference, "-q"])
    ok = subprocess.run([*cmd, *words], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([*cmd, str(clip), "--look", str(reference)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 3 and "exists" in bad.stderr and "Traceback" not in bad.stderr


def test_omp_num_threads_is_honoured(monkeypatch) -> None:
    """``OMP_NUM_THREADS=1`` (README: a bit-identical retrain) reaches torch; nonsense falls back to the cores."""
    import os

    from grade.cli import _threads

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _threads() == 1
    for bad in ("", "zero", "0", "-2"):
        monkeypatch.setenv("OMP_NUM_THREADS", bad)
        assert _threads() == max(1, min(8, os.cpu_count() or 1))
