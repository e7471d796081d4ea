"""The material look (one colour map per material, no washes) and memory colours (skin, neutrals)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from clips import make_clip, read_all
from safetensors.torch import load_file, save_file

from grade.cli import main
from grade.io.image import to_tensor
from grade.lut import apply_lut
from grade.memory import (
    MemoryColours,
    MemorySettings,
    detect_faces,
    implausible,
    memory_colours,
    neutral_axis,
    protect,
)
from grade.model.hrnet import AffineHRNet
from grade.model.look import LearnedLook, LookSettings
from grade.train import TrainSettings, train_look
from grade.train_material import MaterialTraining, train_material_look
from grade.transfer import TransferSettings, fast_lut, fit_transfer, rgb_to_lab_points, transfer_lut

MATERIAL = LookSettings(working_side=96)


def _stone(h: int, w: int, seed: int) -> np.ndarray:
    """A grey-brown textured material (float RGB ``(h, w, 3)``)."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.5)
    base = np.array([0.52, 0.47, 0.40], np.float32)
    return np.clip(base + 0.12 * noise[..., None] * np.array([1.0, 0.95, 0.9], np.float32), 0, 1)


@pytest.fixture(scope="module")
def wash_case():
    """A shot whose stone wall is one material, left half and right half the same texture, under a sky;
    and a reference whose colours change from left to right (what made the old look wash)."""
    h, w = 72, 128
    shot = np.zeros((h, w, 3), np.float32)
    yy = np.linspace(0, 1, 24, dtype=np.float32)[:, None, None]
    shot[:24] = np.array([0.35, 0.55, 0.9], np.float32) * (0.85 + 0.15 * yy)
    stone = _stone(h - 24, w // 2, 1)
    shot[24:, : w // 2] = stone
    shot[24:, w // 2 :] = stone  # the very same texture again
    ref = np.zeros((60, 100, 3), np.float32)
    xx = np.linspace(0, 1, 100, dtype=np.float32)[None, :, None]
    ref[:20] = np.array([0.95, 0.6, 0.3], np.float32)
    ref[20:] = (1 - xx) * np.array([0.7, 0.25, 0.2], np.float32) + xx * np.array([0.6, 0.65, 0.2], np.float32)
    ref[20:] += 0.08 * _stone(40, 100, 2) - 0.04
    key, reference = torch.from_numpy(shot).permute(2, 0, 1), torch.from_numpy(ref.clip(0, 1)).permute(2, 0, 1)
    lut = fast_lut(key, reference)
    look, _ = train_look(key, reference, lut, MATERIAL, TrainSettings(steps=60))
    return key, reference, lut, look


def test_one_material_gets_one_colour_map_across_the_frame(wash_case) -> None:
    """The same stone colours on the left and the right of the frame come out the same colours."""
    key, _, lut, look = wash_case
    out = look.apply(key[None])[0]
    w = key.shape[-1]
    margin = 8  # away from the seam and the frame's edges
    left = out[:, 32:-4, margin : w // 2 - margin]
    right = out[:, 32:-4, w // 2 + margin : w - margin]
    lab_l = rgb_to_lab_points(left.reshape(3, -1).T)
    lab_r = rgb_to_lab_points(right.reshape(3, -1).T)
    de = (lab_l - lab_r).norm(dim=1)
    assert float(de.mean()) < 1.0, float(de.mean())
    # ... and the look did move the stone (the test would be empty otherwise)
    moved = (lab_l - rgb_to_lab_points(key[:, 32:-4, margin : w // 2 - margin].reshape(3, -1).T)).norm(dim=1)
    assert float(moved.mean()) > 5


def test_regional_zero_is_the_global_look(wash_case) -> None:
    key, _, lut, look = wash_case
    look.regional = 0.0
    try:
        assert torch.allclose(look.apply(key[None]), apply_lut(lut, key[None]), atol=1.5 / 255)
    finally:
        look.regional = 1.0
    assert not torch.allclose(look.apply(key[None]), apply_lut(lut, key[None]), atol=1.5 / 255)


def test_material_look_round_trips_through_a_file(wash_case, tmp_path: Path) -> None:
    key, _, _, look = wash_case
    look.save(tmp_path / "look.safetensors")
    again = LearnedLook.load(tmp_path / "look.safetensors")
    assert again.settings.kind == "material" and again.settings == look.settings
    assert torch.equal(again.apply(key[None]), look.apply(key[None]))


def test_a_network_look_written_before_materials_still_loads(tmp_path: Path) -> None:
    """A look file of grade 0.1 (HRNet, no ``kind`` / ``guide`` / ``material`` in its settings)."""
    torch.manual_seed(0)
    net = AffineHRNet()
    for p in net.parameters():
        p.data.normal_(0, 0.01)
    key = to_tensor(np.random.default_rng(3).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    look = LearnedLook(fast_lut(key, key.flip(0)), net, LookSettings(working_side=64, kind="network"))
    look.save(tmp_path / "new.safetensors")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "new.safetensors"), framework="pt") as f:
        meta = dict(f.metadata())
    settings = json.loads(meta["settings"])
    for key_name in ("kind", "guide", "material"):
        settings.pop(key_name)
    meta["settings"] = json.dumps(settings)
    save_file(load_file(str(tmp_path / "new.safetensors")), str(tmp_path / "old.safetensors"), metadata=meta)
    old = LearnedLook.load(tmp_path / "old.safetensors")
    assert old.settings.kind == "network" and isinstance(old.net, AffineHRNet)
    assert torch.equal(old.apply(key[None]), look.apply(key[None]))


def test_cli_regional_zero_gives_the_fast_picture(capsys, tmp_path: Path, reference: Path) -> None:
    src = make_clip(tmp_path / "shot.mp4", frames=4, audio=False)
    fast, zero = tmp_path / "fast.mp4", tmp_path / "zero.mp4"
    assert main([str(src), "--look", str(reference), "--mode", "fast", "-o", str(fast), "-q"]) == 0
    code = main([str(src), "--look", str(reference), "--regional", "0", "--steps", "6", "-o", str(zero), "-q"])
    assert code == 0, capsys.readouterr().err
    a, _ = read_all(fast)
    b, _ = read_all(zero)
    assert len(a) == len(b) == 4
    assert max(float(np.abs(x.astype(int) - y.astype(int)).mean()) for x, y in zip(a, b)) < 1.0


# memory colours


def _face_frame(w: int = 320, h: int = 240, skin=(225, 180, 150), background=(120, 90, 60)) -> np.ndarray:
    """A drawn frontal face (RGB uint8) that OpenCV's cascades take for one."""
    img = np.full((h, w, 3), background[::-1], np.uint8)  # drawn in BGR
    cx, cy, s = w // 2, h // 2, int(h * 0.29)
    cv2.ellipse(img, (cx, cy), (int(s * 0.8), s), 0, 0, 360, skin[::-1], -1)
    for dx in (-0.35, 0.35):
        eye = (int(cx + dx * s), int(cy - 0.25 * s))
        cv2.ellipse(img, eye, (int(0.18 * s), int(0.09 * s)), 0, 0, 360, (40, 40, 50), -1)
        brow = int(cy - 0.45 * s)
        cv2.line(img, (int(eye[0] - 0.2 * s), brow), (int(eye[0] + 0.2 * s), brow), (40, 50, 70), max(1, s // 16))
    cv2.ellipse(img, (cx, int(cy + 0.1 * s)), (int(0.08 * s), int(0.2 * s)), 0, 0, 360, (120, 150, 200), -1)
    cv2.ellipse(img, (cx, int(cy + 0.5 * s)), (int(0.3 * s), int(0.08 * s)), 0, 0, 360, (70, 70, 150), -1)
    return cv2.cvtColor(cv2.GaussianBlur(img, (5, 5), 1.5), cv2.COLOR_BGR2RGB)


def test_faces_are_found_and_textures_are_not() -> None:
    faces = detect_faces(_face_frame())
    assert len(faces) == 1
    x, y, w, h = faces[0]
    assert abs(x + w / 2 - 160) < 20 and abs(y + h / 2 - 120) < 25
    rng = np.random.default_rng(0)
    assert detect_faces(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)) == []


def _hue(rgb: torch.Tensor) -> torch.Tensor:
    lab = rgb_to_lab_points(rgb.reshape(3, -1).T)
    return torch.rad2deg(torch.atan2(lab[:, 2], lab[:, 1]))


def test_skin_keeps_its_hue_under_a_look_that_would_turn_it() -> None:
    frame = _face_frame()
    key = to_tensor(frame)
    ref = torch.zeros(3, 60, 80)
    ref[0], ref[1], ref[2] = 0.25, 0.75, 0.45  # a green-cyan reference: nothing warm in it
    ref += 0.1 * torch.rand(1, 60, 80, generator=torch.Generator().manual_seed(0))
    mem = memory_colours([key], ref)
    assert mem.faces == 1 and mem.skin is not None
    cheek = key[:, 125:140, 135:150]  # under the left eye, beside the nose
    turns = {}
    for on in (False, True):
        lut = fast_lut(key, ref, TransferSettings(memory=on))
        out = apply_lut(lut, cheek[None])[0]
        turn = (_hue(out) - _hue(cheek) + 180) % 360 - 180
        turns[on] = float(turn.abs().median())
    limit = MemorySettings().skin_hue
    assert turns[False] > 2 * limit  # the look alone turns skin
    assert turns[True] <= limit + 5, turns  # a few degrees more: the LUT interpolates between nodes


def test_neutrals_take_the_references_neutral_tint() -> None:
    # a reference whose least saturated colours are slightly blue (night look)
    ref = torch.zeros(3, 40, 40)
    ref[:, :20] = torch.tensor([0.45, 0.47, 0.53])[:, None, None]  # blue-grey
    ref[:, 20:] = torch.tensor([0.02, 0.15, 0.05])[:, None, None]  # saturated dark green
    axis = neutral_axis(ref)
    lab_ref = rgb_to_lab_points(torch.tensor([[0.45, 0.47, 0.53]]))[0]
    level = int(round(float(lab_ref[0]) / 10))
    assert torch.allclose(axis[level], lab_ref[1:], atol=0.5)
    mem = MemoryColours(None, axis)
    grey = torch.tensor([[float(lab_ref[0]), 0.0, 0.0]])
    yellowed = torch.tensor([[float(lab_ref[0]), -8.0, 25.0]])  # what a look might do to a white cup
    kept = protect(grey, yellowed, mem)[0]
    s = MemorySettings().neutral
    expected = (1 - s) * yellowed[0, 1:] + s * lab_ref[1:]
    assert torch.allclose(kept[1:], expected, atol=0.6)
    assert kept[0] == yellowed[0, 0]  # lightness is the tone curve's
    # a saturated colour is not a neutral: untouched
    red = torch.tensor([[50.0, 60.0, 40.0]])
    assert torch.allclose(protect(red, red + 5, mem), red + 5, atol=1e-3)


def test_memory_protection_can_be_turned_off() -> None:
    key = to_tensor(_face_frame(160, 120))
    ref = to_tensor(np.full((30, 40, 3), (60, 200, 120), np.uint8))
    off = fast_lut(key, ref, TransferSettings(memory=False))
    on = fast_lut(key, ref)
    assert not torch.allclose(on, off)
    assert math.isfinite(float(on.sum()))


def _sky_and_field() -> tuple[torch.Tensor, torch.Tensor]:
    """A blue sky over a snowfield (the key) and a green valley under a little blue sky (the reference)."""
    gen = torch.Generator().manual_seed(1)
    key = torch.zeros(3, 60, 80)
    key[:, :36] = torch.tensor([0.30, 0.52, 0.88])[:, None, None]  # blue sky
    key[:, 36:] = torch.tensor([0.88, 0.90, 0.93])[:, None, None]  # snow
    key = (key + 0.06 * torch.rand(3, 60, 80, generator=gen)).clamp(0, 1)
    ref = torch.zeros(3, 60, 80)
    ref[:, :12] = torch.tensor([0.45, 0.65, 0.90])[:, None, None]  # a strip of sky
    ref[:, 12:] = torch.tensor([0.25, 0.55, 0.15])[:, None, None]  # grass
    return key, (ref + 0.08 * torch.rand(3, 60, 80, generator=gen)).clamp(0, 1)


def _green_share(rgb: torch.Tensor) -> float:
    """The share of the pixels of ``rgb`` ``(3, H, W)`` graded green: CIELAB hue 95-160°, chroma above 8."""
    lab = rgb_to_lab_points(rgb.reshape(3, -1).T)
    hue = torch.rad2deg(torch.atan2(lab[:, 2], lab[:, 1])) % 360
    return float(((hue > 95) & (hue < 160) & (lab[:, 1:].norm(dim=1) > 8)).double().mean())


def test_a_blue_sky_is_never_graded_green() -> None:
    """A look matched to a mostly green reference would turn the shot's blue sky green (the look alone
    does); with the sky protected the sky's colours keep out of green hues, and others are not held."""
    key, ref = _sky_and_field()
    sky = key[:, :30]
    green = {}
    for on in (0.0, 1.0):
        mem = memory_colours([key], ref)
        lut = transfer_lut(fit_transfer(key, ref), 33, 1.0, mem, MemorySettings(sky=on))
        green[on] = _green_share(apply_lut(lut, sky[None])[0])
    assert green[0.0] > 0.3, green  # the look alone turns much of the sky green
    assert green[1.0] < 0.05, green
    # a green source (foliage) graded green is plausible: not touched
    leaf = torch.tensor([[50.0, -30.0, 40.0]])
    assert float(implausible(leaf, leaf + 3)[0]) == 0.0


def test_the_learned_look_keeps_a_blue_sky_out_of_green() -> None:
    """The learned look's regional maps are trained on top of the protected global look; the look term
    alone would pull the sky back toward the green reference."""
    key, ref = _sky_and_field()
    lut = fast_lut(key, ref)
    share = {}
    for weight in (0.0, MaterialTraining().sky):
        look, _ = train_material_look(key, ref, lut, LookSettings(), TrainSettings(steps=120),
                                      extra=MaterialTraining(sky=weight))  # fmt: skip
        with torch.inference_mode():
            out = look.apply(key[None])[0]
        share[weight] = _green_share(out[:, :30])
    assert share[0.0] > 0.5 and share[MaterialTraining().sky] < 0.05, share  # measured: 1.0 and 0.0
