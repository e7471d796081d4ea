"""Temporal stabiliser of the learned field (grade.temporal), on small synthetic scenes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from grade.temporal import (
    Stabiliser,
    StabiliserSettings,
    fb_confidence,
    flow_dis,
    make_dis,
    motion_boundaries,
    photometric_confidence,
    resize_flow,
    warp,
)


def texture(h: int, w: int, seed: int = 0, sigma: float = 2.0) -> np.ndarray:
    """Smooth random texture, float32 (h, w) in [0.15, 0.85]."""
    rng = np.random.default_rng(seed)
    t = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sigma)
    t = (t - t.min()) / (t.max() - t.min())
    return 0.15 + 0.7 * t


def u8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def shift(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``out(x) = img(x - d)``: the content moves by ``d``."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def square_scene(t: int, h: int = 96, w: int = 128, size: int = 32, speed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Static textured background, a differently textured square moving right by ``speed`` px per frame.
    Returns luma float32 (h, w) and the square's mask (bool)."""
    bg = texture(h, w, seed=1)
    fg = 0.5 * texture(size, size, seed=2) + 0.45  # brighter than the background on average
    x0, y0 = 20 + speed * t, (h - size) // 2
    img = bg.copy()
    img[y0 : y0 + size, x0 : x0 + size] = fg
    mask = np.zeros((h, w), bool)
    mask[y0 : y0 + size, x0 : x0 + size] = True
    return img, mask


def test_flow_recovers_translation() -> None:
    base = texture(96, 128)
    nxt = shift(base, 3.0, -2.0)
    flow = flow_dis(u8(base), u8(nxt), make_dis("ultrafast", 1))
    assert flow.shape == (96, 128, 2) and flow.dtype == np.float32
    inner = flow[16:-16, 16:-16].reshape(-1, 2)
    med = np.median(inner, axis=0)
    assert abs(med[0] - 3.0) < 0.5 and abs(med[1] + 2.0) < 0.5
    assert np.mean(np.abs(inner - (3.0, -2.0)).max(1) < 0.5) > 0.9


def test_warp_zero_flow_is_identity_and_follows_flow() -> None:
    zero = np.zeros((20, 30, 2), np.float32)
    img = texture(20, 30)
    assert np.array_equal(warp(img, zero), img)
    many = np.random.default_rng(0).random((20, 30, 12), dtype=np.float32)
    assert np.array_equal(warp(many, zero), many)
    one = np.full((20, 30, 2), (2.0, 1.0), np.float32)
    moved = warp(img, one)
    assert np.allclose(moved[:-1, :-2], img[1:, 2:])


def test_resize_flow_scales_vectors() -> None:
    flow = np.full((10, 20, 2), (2.0, 1.0), np.float32)
    big = resize_flow(flow, 30, 40)
    assert big.shape == (30, 40, 2)
    assert np.allclose(big[..., 0], 4.0) and np.allclose(big[..., 1], 3.0)


def test_fb_confidence_consistent_translation_is_high() -> None:
    fwd = np.full((40, 60, 2), (2.0, -1.0), np.float32)
    conf = fb_confidence(fwd, -fwd)
    assert conf.dtype == np.float32 and conf.shape == (40, 60)
    assert conf[2:-2, 2:-3].min() == 1.0
    assert conf[:, -1].max() == 0.0  # points outside the other frame: unknown there


def test_fb_confidence_low_in_disoccluded_strip() -> None:
    # a square moving right by 6 px over a static background, flows written out exactly
    h, w, d = 60, 80, 6.0
    a_sq = (slice(20, 40), slice(20, 40))  # square in frame A
    b_sq = (slice(20, 40), slice(26, 46))  # and in frame B
    a_to_b = np.zeros((h, w, 2), np.float32)
    a_to_b[a_sq] = (d, 0)
    b_to_a = np.zeros((h, w, 2), np.float32)
    b_to_a[b_sq] = (-d, 0)
    conf = fb_confidence(b_to_a, a_to_b)  # on B's grid
    strip = conf[22:38, 21:25]  # background in B, hidden under the square in A
    assert strip.max() == 0.0
    assert conf[22:38, 28:44].min() == 1.0  # the square itself
    assert conf[:, 55:].min() == 1.0 and conf[:15].min() == 1.0  # static background


def test_motion_boundaries() -> None:
    flow = np.zeros((60, 80, 2), np.float32)
    flow[20:40, 20:40] = (6.0, 0.0)
    mb = motion_boundaries(flow)
    assert mb.dtype == np.float32 and 0.0 <= mb.min() and mb.max() <= 1.0
    assert mb[30, 19:21].max() == 1.0 and mb[30, 39:41].max() == 1.0
    assert mb[25:35, 25:35].max() == 0.0 and mb[:10].max() == 0.0
    assert motion_boundaries(np.full((30, 30, 2), 5.0, np.float32)).max() == 0.0


def test_photometric_confidence_collapses_under_brightness_drop() -> None:
    luma = texture(48, 64)
    assert photometric_confidence(luma, luma, 0.04).min() == 1.0
    assert photometric_confidence(luma + 0.01, luma, 0.04).min() == 1.0  # noise-sized
    assert photometric_confidence(luma, 0.5 * luma, 0.04).mean() < 0.05


def noisy_fields(n: int, shape: tuple[int, int], sigma: float, seed: int = 0) -> list[torch.Tensor]:
    """``n`` fields ``(1, 12, *shape)``: one fixed random field plus fresh Gaussian noise each."""
    rng = np.random.default_rng(seed)
    clean = rng.random((1, 12, *shape), dtype=np.float32)
    return [torch.from_numpy(clean + sigma * rng.standard_normal(clean.shape).astype(np.float32)) for _ in range(n)]


def test_first_step_and_after_reset_return_the_field() -> None:
    stab = Stabiliser()
    luma = u8(texture(54, 96))
    fields = noisy_fields(5, (27, 48), 0.05)
    assert stab.step(luma, fields[0]) is fields[0]
    out = stab.step(luma, fields[1])
    assert out.shape == fields[1].shape and out.dtype == torch.float32
    assert not torch.equal(out, fields[1])  # static scene: blended with the previous frame
    stab.reset()
    assert stab.step(luma, fields[2]) is fields[2]
    assert stab.frames == 3 and stab.seconds > 0
    # a new size (another clip through the same object) starts again too
    assert stab.step(u8(texture(60, 80)), fields[3]) is fields[3]


def test_state_is_not_a_view_of_the_callers_tensor() -> None:
    luma = u8(texture(54, 96))
    stab = Stabiliser(StabiliserSettings(max_weight=0.5))
    first = torch.ones(1, 1, 27, 48)
    stab.step(luma, first)
    first.zero_()  # the caller reuses its buffer
    out = stab.step(luma, torch.zeros(1, 1, 27, 48))
    assert out.shape == (1, 1, 27, 48)
    assert out.mean() > 0.3  # ~0.5 of the remembered ones


def test_static_scene_noise_is_smoothed() -> None:
    n = 40
    luma = u8(texture(108, 192))  # field and luma grids differ: both get resized
    fields = noisy_fields(n, (27, 48), 0.05)
    stab = Stabiliser()
    outs = torch.cat([stab.step(luma, f) for f in fields])[10:]
    raw = torch.cat(fields)[10:]
    assert outs.std(0).mean() < 0.5 * raw.std(0).mean()
    assert (outs[1:] - outs[:-1]).abs().mean() < 0.5 * (raw[1:] - raw[:-1]).abs().mean()
    assert (outs.mean(0) - raw.mean(0)).abs().max() < 0.05  # no drift


def test_fade_to_black_follows_the_current_field() -> None:
    luma = texture(72, 128)
    stab = Stabiliser()
    rng = np.random.default_rng(3)
    for t in range(6):
        field = torch.from_numpy(rng.random((1, 12, 18, 32), dtype=np.float32))  # new colours every frame
        out = stab.step(u8(luma * 0.5**t), field)
        assert (out - field).abs().max() < 1e-3, t
    assert stab.resets == 5


def test_flash_resets_but_steady_frames_stabilise() -> None:
    luma = u8(texture(72, 128))
    flash = u8(np.clip(texture(72, 128) + 0.4, 0, 1))
    stab = Stabiliser()
    fields = noisy_fields(4, (18, 32), 0.05)
    stab.step(luma, fields[0])
    stab.step(luma, fields[1])
    assert stab.last_weight > 0.5
    assert torch.equal(stab.step(flash, fields[2]), fields[2])
    assert stab.last_weight == 0.0


@pytest.mark.parametrize("refresh", [1, 3])
def test_moving_square_field_follows_the_motion(refresh: int) -> None:
    """The field is tied to the content (1 on the square, 0 on the background); the stabilised field
    must move with the square and leave no trail where the square was, also when the network may run only every
    ``refresh``-th frame (the square's disoccluded trail must stop the field from being carried: carried
    through 2 frames, it left a ghost of 0.27 on the trail)."""
    n, h, w = 12, 96, 128
    stab = Stabiliser(StabiliserSettings(refresh=refresh))
    rng = np.random.default_rng(4)
    out = None
    for t in range(n):
        luma, mask = square_scene(t, h, w)
        small = cv2.resize(mask.astype(np.float32), (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        field = torch.from_numpy(np.repeat(small[None, None], 12, 1)).float()
        field = field + 0.02 * torch.from_numpy(rng.standard_normal(field.shape).astype(np.float32))
        out = stab.step(u8(luma), lambda field=field: field)
    assert out is not None
    # the moving square's trail and edges are untrusted: nothing can be carried, the network runs every frame
    assert stab.carried == 0
    _, mask = square_scene(n - 1, h, w)
    inside = cv2.erode(mask.astype(np.uint8), np.ones((9, 9), np.uint8))[::2, ::2].astype(bool)
    _, old = square_scene(n - 4, h, w)
    # where the square was 3 frames ago and the background shows now
    trail = old & ~cv2.dilate(mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    trail = trail[::2, ::2]
    o = out[0, 0].numpy()
    assert inside.sum() > 50 and trail.sum() > 20
    assert np.abs(o[inside] - 1.0).mean() < 0.03  # ~0.005 here; ~0.08 if the flow were ignored
    assert np.abs(o[trail]).mean() < 0.05  # ~0.02 here; ~0.12 without the flow, ~0.5 without the confidences
    assert stab.last_weight > 0.3  # it did stabilise (not a reset every frame)


def test_the_network_runs_only_when_the_field_cannot_be_carried() -> None:
    """Given a function for the field, the stabiliser calls it on the first frame, every ``refresh``-th
    frame, and on frames whose flow it does not trust (a flash); in between it carries the field."""
    luma = u8(texture(72, 128))
    flash = u8(np.clip(texture(72, 128) + 0.4, 0, 1))
    fields = noisy_fields(12, (18, 32), 0.05)
    calls: list[int] = []

    def network(t: int):
        return lambda: calls.append(t) or fields[t]

    stab = Stabiliser(StabiliserSettings(refresh=4))
    outs = [stab.step(luma, network(t)) for t in range(9)]
    assert calls == [0, 4, 8] and stab.carried == 6
    assert torch.allclose(outs[1], fields[0], atol=1e-5)  # a still frame carries the field unchanged
    stab.step(flash, network(9))
    assert calls[-1] == 9  # the light changed: the network runs
    stab.reset()
    stab.step(luma, network(10))
    assert calls[-1] == 10  # a new shot starts from the network
    every = Stabiliser(StabiliserSettings(refresh=1))
    calls.clear()
    for t in range(4):
        every.step(luma, network(t))
    assert calls == [0, 1, 2, 3] and every.carried == 0


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        Stabiliser(StabiliserSettings(max_weight=1.0))
    with pytest.raises(ValueError):
        Stabiliser(StabiliserSettings(preset="slow"))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Stabiliser(StabiliserSettings(refresh=0))


def test_flat_dark_frames_are_not_blended() -> None:
    """Near-black, textureless frames (a fade-in from black): the flow is noise, so nothing is carried."""
    from grade.temporal import Stabiliser

    rng = np.random.default_rng(1)
    stab = Stabiliser()
    for t in range(6):
        luma = rng.integers(0, 2, (108, 192)).astype(np.uint8)  # sensor noise around black
        field = torch.from_numpy(rng.normal(0, 1, (1, 12, 27, 48)).astype(np.float32))
        out = stab.step(luma, field)
        assert torch.equal(out, field), t


def test_temporal_loss_is_zero_for_a_grade_that_moves_with_the_content() -> None:
    import torch

    from grade.losses import temporal_loss

    h, w = 12, 16
    res_a = torch.rand(1, 3, h, w)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    shift = 2 / (w - 1)  # frame b sees frame a one pixel to the left: b(x) = a(x + 1)
    grid = torch.stack([xs + shift, ys], -1)[None]
    res_b = torch.cat([res_a[..., 1:], res_a[..., -1:]], -1)
    conf = torch.ones(1, 1, h, w)
    assert float(temporal_loss(res_a, res_b, grid, conf)) < 1e-5
    assert float(temporal_loss(res_a, res_a.flip(-1), grid, conf)) > 0.05
    assert float(temporal_loss(res_a, res_a.flip(-1), grid, torch.zeros(1, 1, h, w))) == 0.0  # nothing trusted
