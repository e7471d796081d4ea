"""Temporal stabilisation through the real render pipeline: flicker, cuts, fades, timing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from clips import read_all, scene_frame, write_frames

from grade.lut import identity_lut
from grade.model.hrnet import AffineHRNet
from grade.model.look import LearnedLook, LookSettings
from grade.pipeline import GradeOptions, grade_file
from grade.presets import SUFFIX, build_preset, write_preset


def _write(path: Path, frames: list[np.ndarray], fps: int = 24, pix_fmt: str = "bgr0") -> Path:
    """Lossless (FFV1) clip, so that only the grade differs between runs. ``bgr0`` frames are graded in
    RGB; ``yuv420p`` ones in their own YCbCr (``LearnedLook.apply_yuv420``)."""
    return write_frames(path, frames, fps=fps, codec="ffv1", pix_fmt=pix_fmt)


LAYOUTS = pytest.mark.parametrize("pix_fmt", ["bgr0", "yuv420p"])


@pytest.fixture(scope="module")
def jumpy_preset(tmp_path_factory) -> Path:
    """A learned look whose field reacts strongly to small changes of the input (a flicker source)."""
    torch.manual_seed(3)
    net = AffineHRNet(in_ch=8, widths=(8, 16, 32), blocks=1)
    with torch.no_grad():
        net.head[-1].weight.normal_(0, 0.4)
        net.head[-1].bias.zero_()
    look = LearnedLook(identity_lut(9), net, LookSettings(working_side=64, widths=(8, 16, 32)))
    key = scene_frame(96, 64, 0, 0)
    preset = build_preset("jumpy", mode="learned", lut=look.lut, learned=look, keys=[key])
    return write_preset(preset, tmp_path_factory.mktemp("lib") / f"jumpy{SUFFIX}")


def _grade(src: Path, preset: Path, out: Path, stabilise: bool) -> list[np.ndarray]:
    options = GradeOptions(preset=str(preset), stabilise=stabilise, force=True, codec="ffv1")
    report = grade_file(src, None, options, output=out)
    frames, times = read_all(out)
    src_frames, src_times = read_all(src)
    assert len(frames) == len(src_frames) == report.frames and times == pytest.approx(src_times)
    assert (report.stabiliser_ms_per_frame is not None) == stabilise
    assert (report.network_frames is not None) == stabilise
    if stabilise:
        assert 1 <= report.network_frames <= report.frames
    return [f.astype(np.float64) for f in frames]


def moving_clip(n: int = 24, noise: float = 2.0, seed: int = 0) -> list[np.ndarray]:
    """Static textured background, a box moving 2 px a frame, and a per-frame colour jitter."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        f = scene_frame(96, 64, t, 0).astype(np.float64)
        f += rng.normal(0, noise, 3)  # the whole frame's colour wobbles a little
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return out


def _static_change(frames: list[np.ndarray]) -> float:
    """Mean frame-to-frame change on the static part (rows away from the moving box)."""
    rows = np.r_[0:12, 40:64]
    return float(np.mean([np.abs(b[rows] - a[rows]).mean() for a, b in zip(frames, frames[1:])]))


@LAYOUTS
def test_stabilised_output_flickers_less(tmp_path: Path, jumpy_preset: Path, pix_fmt: str) -> None:
    src = _write(tmp_path / "moving.mkv", moving_clip(), pix_fmt=pix_fmt)
    raw = _grade(src, jumpy_preset, tmp_path / "raw.mkv", stabilise=False)
    stab = _grade(src, jumpy_preset, tmp_path / "stab.mkv", stabilise=True)
    source = [f.astype(np.float64) for f in read_all(src)[0]]
    flicker_raw = _static_change(raw) - _static_change(source)
    flicker_stab = _static_change(stab) - _static_change(source)
    assert flicker_raw > 0.5  # the look does flicker on this clip without the stabiliser
    assert flicker_stab < 0.6 * flicker_raw


@LAYOUTS
def test_nothing_is_carried_across_a_cut(tmp_path: Path, jumpy_preset: Path, pix_fmt: str) -> None:
    frames = [scene_frame(96, 64, t, 0) for t in range(12)] + [scene_frame(96, 64, t, 1) for t in range(12, 24)]
    src = _write(tmp_path / "cut.mkv", frames, pix_fmt=pix_fmt)
    raw = _grade(src, jumpy_preset, tmp_path / "raw.mkv", stabilise=False)
    stab = _grade(src, jumpy_preset, tmp_path / "stab.mkv", stabilise=True)
    # the first frame of each shot is graded as if it were alone
    assert np.array_equal(raw[0], stab[0])
    assert np.array_equal(raw[12], stab[12])
    # ... while the stabiliser is at work inside the shot
    assert not np.array_equal(raw[13], stab[13])


@LAYOUTS
def test_fade_to_black_leaves_no_old_colours(tmp_path: Path, jumpy_preset: Path, pix_fmt: str) -> None:
    frames = [scene_frame(96, 64, t, 0) for t in range(10)]
    frames += [(scene_frame(96, 64, 10 + t, 0) * (0.75**t)).astype(np.uint8) for t in range(1, 15)]
    src = _write(tmp_path / "fade.mkv", frames, pix_fmt=pix_fmt)
    raw = _grade(src, jumpy_preset, tmp_path / "raw.mkv", stabilise=False)
    stab = _grade(src, jumpy_preset, tmp_path / "stab.mkv", stabilise=True)
    # a fade is graded as its shot's look on the undarkened frame, darkened: the stabiliser may carry the
    # field across it (the content does not change), so the two differ only by what it smooths, darkened
    # with the frame; old colours never outlive the fade
    smoothed = max(np.abs(stab[t] - raw[t]).mean() for t in range(4, 10))  # before the fade, at full level
    for t in range(12, len(frames)):  # never more than at full level (the unstabilised look is jumpier on
        # the brought-back frames, whose noise the fade amplified), and fading with the frame
        assert np.abs(stab[t] - raw[t]).mean() < 1.0 + 1.5 * smoothed * min(1.0, 2.5 * 0.75 ** (t - 9)), t
    for t in range(len(frames) - 3, len(frames)):  # the end of the fade: the two agree
        assert np.abs(stab[t] - raw[t]).mean() < 1.0, t
