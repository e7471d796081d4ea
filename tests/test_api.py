"""The public Python API (``import grade``): one Look interface, the command's jobs as functions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from clips import make_clip, read_all, scene_frame
from test_conform import frame_indices, project  # noqa: F401  (the conform project fixture)

import grade
from grade.errors import InputError


@pytest.fixture(scope="module")
def frames():
    return [scene_frame(96, 64, t, 0) for t in (0, 4)]


@pytest.fixture(scope="module")
def reference():
    return scene_frame(80, 60, 3, 1)


@pytest.fixture(scope="module")
def looks(frames, reference):
    return {
        "fast": grade.fit_look(frames, reference, mode="fast"),
        "learned": grade.fit_look(frames, reference, mode="learned", steps=20),
    }


@pytest.mark.parametrize("mode", ["fast", "learned"])
def test_apply_keeps_dtype_and_shape_and_agrees_across_them(looks, frames, mode: str) -> None:
    look = looks[mode]
    f8 = frames[0]
    out8 = look.apply(f8)
    assert out8.dtype == np.uint8 and out8.shape == f8.shape
    assert np.abs(out8.astype(int) - f8.astype(int)).mean() > 3  # it grades
    out16 = look.apply(f8.astype(np.uint16) * 257)
    outf = look.apply(f8.astype(np.float32) / 255)
    assert out16.dtype == np.uint16 and outf.dtype == np.float32 and outf.shape == f8.shape
    assert np.abs(out16 / 65535 - out8 / 255).mean() < 1.5 / 255
    assert np.abs(outf - out16 / 65535).max() < 1e-4


def test_strength_zero_is_the_source(frames, reference) -> None:
    look = grade.fit_look(frames, reference, mode="fast", strength=0.0)
    assert np.abs(look.apply(frames[0]).astype(int) - frames[0].astype(int)).max() <= 1


@pytest.mark.parametrize("mode", ["fast", "learned"])
def test_save_load_round_trip_and_cube(looks, frames, tmp_path: Path, mode: str) -> None:
    look = looks[mode]
    saved = look.save(tmp_path / "look.gpreset")
    again = grade.load_look(saved)
    assert again.mode == mode
    assert np.array_equal(again.apply(frames[1]), look.apply(frames[1]))
    cube = grade.load_look(look.to_cube(tmp_path / "look.cube", size=33))
    assert cube.mode == "lut"
    de = np.abs(cube.apply(frames[1]).astype(int) - look.apply(frames[1]).astype(int)).mean()
    assert de < (1.0 if mode == "fast" else 6.0)  # fast: a LUT already; learned: the best single LUT


def test_library_names_load_from_the_library(looks, frames, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GRADE_PRESETS", str(tmp_path / "lib"))
    looks["fast"].save(tmp_path / "lib" / "dusk.gpreset")
    assert np.array_equal(grade.load_look("dusk").apply(frames[0]), looks["fast"].apply(frames[0]))
    with pytest.raises(InputError, match="no preset"):
        grade.load_look("dawn")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda f, r: grade.fit_look(f, r, mode="slow"), "mode: learned or fast"),
        (lambda f, r: grade.fit_look(f, r, strength=2.0), "strength: "),
        (lambda f, r: grade.fit_look(f, r, codec="h264"), "codec: not a look setting"),
        (lambda f, r: grade.fit_look([], r), "frames: give at least one"),
        (lambda f, r: grade.fit_look([f[0][..., :2]], r), r"frame: expected an RGB array of shape \(H, W, 3\)"),
        (lambda f, r: grade.fit_look(f, r.astype(np.int32)), "reference: expected uint8, uint16 or float32"),
    ],
)
def test_library_errors_name_the_argument_not_a_flag(frames, reference, call, message: str) -> None:
    with pytest.raises(InputError, match=message) as e:
        call(frames, reference)
    assert "--" not in str(e.value)


def test_grade_file_takes_a_look_a_reference_array_or_a_preset(looks, reference, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "shot.mp4", frames=6, size=(96, 64), audio=False)
    # lossless outputs: x264 is not bit-exact from run to run on a loaded machine, FFV1 is
    with_look = grade.grade_file(src, looks["fast"], tmp_path / "a.mkv", codec="ffv1")
    with_array = grade.grade_file(src, reference, tmp_path / "b.mp4", mode="fast")
    preset = looks["fast"].save(tmp_path / "fast.gpreset")
    with_preset = grade.grade_file(src, preset, tmp_path / "c.mkv", codec="ffv1")
    assert with_look.frames == with_array.frames == with_preset.frames == 6
    a, _ = read_all(tmp_path / "a.mkv")
    c, _ = read_all(tmp_path / "c.mkv")
    # a Look and its saved preset: the same picture (on failure: which frames, how many samples, how far)
    diffs = [
        (i, int((x != y).sum()), int(np.abs(x.astype(int) - y.astype(int)).max())) for i, (x, y) in enumerate(zip(a, c))
    ]
    assert len(a) == 6 and all(n == 0 for _, n, _ in diffs), f"(frame, samples differing, max difference): {diffs}"
    with pytest.raises(InputError, match="strength"):
        grade.grade_file(src, looks["fast"], tmp_path / "d.mp4", strength=-1)


def test_detect_shots(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "cut.mp4", frames=40, cut_at=20, audio=False)
    shots = grade.detect_shots(src)
    assert [(s.start, s.end) for s in shots.shots] == [(0, 20), (20, 40)]


def test_conform_through_the_api(project, looks) -> None:  # noqa: F811
    root, media, edl = project
    report = grade.conform(edl, media, root / "graded", look=root / "mild.cube", handles=0)
    assert [e.status for e in report.events] == ["done"] * 4
    assert frame_indices(Path(report.events[0].output)) == list(range(10, 22))
    again = grade.conform(edl, media, root / "graded2", look=looks["fast"], handles=0)
    assert [e.status for e in again.events] == ["done"] * 4
    with pytest.raises(InputError, match="handles"):
        grade.conform(edl, media, root / "graded3", look=looks["fast"], handles=-1)


def test_library_errors_name_settings_and_the_cli_shows_flags(looks, tmp_path: Path, capsys) -> None:
    src = make_clip(tmp_path / "shot.mp4", frames=4, size=(96, 64), audio=False)
    out = tmp_path / "taken.mp4"
    out.write_bytes(b"x")
    with pytest.raises(grade.OutputError) as e:
        grade.grade_file(src, looks["fast"], out)
    assert "`force=True`" in str(e.value) and "--" not in str(e.value)
    from grade.cli import main

    assert main([str(src), "--look", str(tmp_path / "nothing.cube"), "-o", str(out), "-q"]) != 0
    capsys.readouterr()
    assert main([str(src), "--preset", "x", "--refine", "--mode", "fast", "-o", str(out), "-q"]) != 0
    code = main([str(src), "--look", str(looks["fast"].save(tmp_path / "l.gpreset")), "-o", str(out), "-q"])
    assert code == 3 and "(use --force to overwrite)" in capsys.readouterr().err
