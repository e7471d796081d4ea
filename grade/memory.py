"""Memory colours: skin and neutrals keep what a viewer remembers them to be, whatever the look.

A look fitted to a reference's colour distribution moves every colour toward where the reference
has colours. Two kinds of colour a viewer checks first must not be moved freely:

* **Skin.** Faces are found in the key frames with OpenCV's bundled Haar cascades; a skin-colour
  model (mean and covariance of a*, b*, and the L* range) is sampled from the middle of each face.
  Colours the model holds keep their hue within ``skin_hue`` degrees and their chroma within
  ``skin_chroma`` of the source: a sunset look may warm a face, it may not turn it grey or green.
  Without a detected face nothing is protected as skin (autumn leaves, wood and sand have skin's
  hue, and their look must not be held back).
* **Neutrals.** Source colours of low chroma (a white cup, grey stone, overcast sky) are pulled
  toward the reference's own neutral axis: the tint of the reference's least saturated colours at
  that lightness. White balance follows the look; a white does not turn yellow-green because the
  reference has a lot of green in it.

* **Sky.** A viewer accepts a blue sky graded anywhere from teal to grey to a sunset's orange or
  purple, not green. A source colour of blue-sky hue (:func:`sky_weight`) whose graded hue falls in
  the olive to green arc loses that chroma (toward grey), the more the deeper into the arc
  (:func:`implausible`): such a sky turns grey, not green. Only that arc is touched, so every
  plausible grade of a sky is left as the look made it. (Foliage is not held the same way: pink or
  white leaves are a look of their own, infrared's.)

All are functions of colour alone, applied to a look's colours in CIELAB (:func:`protect`): they
are baked into the global LUT (fast mode, and the base of the learned look) and the learned look's
training keeps its regional maps off skin and neutrals (:func:`protection_weights`) and skies out of
the green arc (:func:`implausible`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from grade.transfer import rgb_to_lab_points


@dataclass(frozen=True)
class MemorySettings:
    """How strongly memory colours are protected (0 turns one off)."""

    neutral: float = 0.6  # how far neutral colours move to the reference's neutral axis
    neutral_chroma: float = 7.0  # source chroma (C*ab, Gaussian σ) that counts as neutral
    neutral_tint: float = 10.0  # most chroma of the neutral axis (a reference without neutrals: a tint, not a colour)
    skin: float = 1.0  # protection of the skin colours of detected faces
    skin_hue: float = 10.0  # degrees the hue of a skin colour may turn
    skin_chroma: tuple[float, float] = (0.75, 1.35)  # limits of a skin colour's chroma, × the source's
    min_face: float = 0.06  # smallest face searched for, as a share of the frame's short side
    sky: float = 1.0  # how far a blue sky's colours graded into green hues lose that chroma


# CIELAB hue arcs in degrees (start, end, counter-clockwise), each with a soft edge of ``_EDGE`` degrees:
# the source hues of a blue sky, and the graded hues they must not take
_SKY = (210.0, 310.0)  # from pale cyan-blue to a deep, violet-leaning blue
_NOT_SKY = (80.0, 170.0)  # olive, yellow-green and green (orange and teal skies stay)
_EDGE = 15.0


@dataclass(frozen=True)
class SkinModel:
    """Skin colours in CIELAB: mean ``(2,)`` and covariance ``(2, 2)`` of a*, b*, and the L* range."""

    mean: torch.Tensor
    cov: torch.Tensor
    lightness: tuple[float, float]


@dataclass(frozen=True)
class MemoryColours:
    """What a shot's memory colours are: its skin (None without a face) and the reference's neutral
    axis ``(11, 2)`` (a*, b* at L* = 0, 10, …, 100)."""

    skin: SkinModel | None
    neutral_axis: torch.Tensor
    faces: int = 0


_CASCADES: list[cv2.CascadeClassifier] = []


def _overlap(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes."""
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / max(1, a[2] * a[3] + b[2] * b[3] - inter)


def detect_faces(rgb: np.ndarray, min_face: float = MemorySettings.min_face) -> list[tuple[int, int, int, int]]:
    """Frontal faces ``(x, y, w, h)`` in an RGB ``(H, W, 3)`` uint8 image: OpenCV's bundled cascades
    ``frontalface_default`` and ``frontalface_alt2`` must both find a face there (either alone mistakes
    lit windows and textures for faces).

    >>> detect_faces(np.zeros((64, 64, 3), np.uint8))
    []
    """
    if not _CASCADES:
        for name in ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml"):
            _CASCADES.append(cv2.CascadeClassifier(cv2.data.haarcascades + name))
    grey = cv2.equalizeHist(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY))
    side = max(20, int(min(grey.shape) * min_face))
    found = [
        [tuple(int(v) for v in f) for f in c.detectMultiScale(grey, 1.1, 4, minSize=(side, side))] for c in _CASCADES
    ]
    return [a for a in found[0] if any(_overlap(a, b) > 0.4 for b in found[1])]


def skin_model(frames: list[torch.Tensor], faces: list[list[tuple[int, int, int, int]]]) -> SkinModel | None:
    """Sample a skin model from the middle of each face (cheeks, nose; not eyes, hair or background)
    of frames ``(3, H, W)`` RGB in [0, 1]. None when the faces hold too few skin-like pixels."""
    samples = []
    for img, boxes in zip(frames, faces):
        for x, y, w, h in boxes:
            patch = img[:, y + int(0.45 * h) : y + int(0.8 * h), x + int(0.25 * w) : x + int(0.75 * w)]
            lab = rgb_to_lab_points(patch.reshape(3, -1).T.double())
            hue = torch.rad2deg(torch.atan2(lab[:, 2], lab[:, 1]))
            chroma = lab[:, 1:].norm(dim=1)
            # skin of every complexion lies in the red-yellow quadrant, neither grey nor neon
            ok = (hue > 10) & (hue < 100) & (chroma > 5) & (chroma < 60) & (lab[:, 0] > 15)
            if float(ok.double().mean()) >= 0.5:  # a real face's middle is mostly skin; else a false detection
                samples.append(lab[ok])
    if not samples:
        return None
    lab = torch.cat(samples)
    if len(lab) < 30:
        return None
    ab = lab[:, 1:]
    mean = ab.mean(0)
    cov = torch.cov(ab.T) + 25.0 * torch.eye(2, dtype=ab.dtype)  # at least 5 ΔE: LUT nodes lie that far apart
    lo, hi = torch.quantile(lab[:, 0], torch.tensor([0.05, 0.95], dtype=lab.dtype)).tolist()
    return SkinModel(mean.float(), cov.float(), (lo, hi))


def neutral_axis(reference: torch.Tensor, gen: torch.Generator | None = None, samples: int = 65536) -> torch.Tensor:
    """The reference's neutral axis ``(11, 2)``: at L* = 0, 10, …, 100, the median a*, b* of the least
    saturated fifth of its pixels of about that lightness (bins without pixels take their nearest
    neighbours' tint; an image without any: no tint). ``reference`` ``(3, H, W)`` RGB in [0, 1]."""
    pts = reference.reshape(3, -1).T
    if len(pts) > samples:
        gen = gen or torch.Generator().manual_seed(0)
        pts = pts[torch.randperm(len(pts), generator=gen)[:samples]]
    lab = rgb_to_lab_points(pts.double())
    chroma = lab[:, 1:].norm(dim=1)
    axis = torch.full((11, 2), math.nan, dtype=torch.float64)
    for i in range(11):
        near = (lab[:, 0] - 10 * i).abs() < 8
        if int(near.sum()) < 50:
            continue
        c = chroma[near]
        low = c <= torch.quantile(c, 0.2)
        axis[i] = lab[near][low][:, 1:].median(0).values
    valid = ~axis[:, 0].isnan()
    if not valid.any():
        return torch.zeros(11, 2)
    have = valid.nonzero()[:, 0].double()
    for i in (~valid).nonzero()[:, 0].tolist():
        axis[i] = axis[int(have[(have - i).abs().argmin()])]
    return axis.float()


def memory_colours(
    keys: list[torch.Tensor], reference: torch.Tensor, settings: MemorySettings = MemorySettings()
) -> MemoryColours:
    """Find the memory colours of key frames ``(3, H, W)`` against a reference ``(3, H', W')`` (RGB in
    [0, 1])."""
    faces: list[list[tuple[int, int, int, int]]] = []
    if settings.skin > 0:
        for k in keys:
            rgb = (k.permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).byte().numpy()
            faces.append(detect_faces(rgb, settings.min_face))
    skin = skin_model(list(keys), faces) if any(faces) else None
    return MemoryColours(skin, neutral_axis(reference), sum(len(f) for f in faces) if skin is not None else 0)


def _axis_at(axis: torch.Tensor, lightness: torch.Tensor) -> torch.Tensor:
    """The neutral axis's a*, b* ``(N, 2)`` at L* ``(N,)`` (linear between its 11 knots)."""
    pos = (lightness / 10).clamp(0, 10)
    lo = pos.floor().long().clamp(0, 9)
    t = (pos - lo)[:, None]
    axis = axis.to(lightness)
    return axis[lo] * (1 - t) + axis[lo + 1] * t


def skin_weight(src_lab: torch.Tensor, skin: SkinModel) -> torch.Tensor:
    """How much each colour ``(N, 3)`` Lab is skin, ``(N,)`` in [0, 1]."""
    d = src_lab[:, 1:] - skin.mean.to(src_lab)
    m2 = (d @ torch.linalg.inv(skin.cov.to(src_lab)) * d).sum(1)
    lo, hi = skin.lightness
    in_l = torch.sigmoid((src_lab[:, 0] - (lo - 15)) / 3) * torch.sigmoid(((hi + 15) - src_lab[:, 0]) / 3)
    return torch.exp(-0.5 * m2 / 9.0) * in_l


def neutral_weight(src_lab: torch.Tensor, settings: MemorySettings = MemorySettings()) -> torch.Tensor:
    """How neutral each colour ``(N, 3)`` Lab is, ``(N,)`` in [0, 1] (1 for greys; black and white
    excluded, their tint is the tone's business)."""
    chroma = src_lab[:, 1:].norm(dim=1)
    lit = torch.sigmoid((src_lab[:, 0] - 8) / 2) * torch.sigmoid((98 - src_lab[:, 0]) / 1)
    return torch.exp(-0.5 * (chroma / settings.neutral_chroma) ** 2) * lit


def _in_arc(hue: torch.Tensor, arc: tuple[float, float], edge: float = _EDGE) -> torch.Tensor:
    """``(N,)`` in [0, 1]: how far inside the arc ``arc`` each hue ``(N,)`` (degrees) lies, 0 outside, rising
    smoothly to 1 over ``edge`` degrees from the arc's ends."""
    start, end = arc
    d = torch.remainder(hue - start, 360.0)  # degrees past the start, counter-clockwise
    width = end - start
    depth = torch.minimum(d, width - d).clamp_min(0) / edge
    inside = d <= width
    t = depth.clamp(0, 1)
    return torch.where(inside, t * t * (3 - 2 * t), torch.zeros_like(t))


def _hue(lab: torch.Tensor) -> torch.Tensor:
    return torch.rad2deg(torch.atan2(lab[:, 2], lab[:, 1]))


def sky_weight(src_lab: torch.Tensor) -> torch.Tensor:
    """How much each colour ``(N, 3)`` Lab is a blue sky's, ``(N,)`` in [0, 1]: blue hue, some chroma
    (greys are neutrals), neither black nor white (a deep blue sky is dark: L* 15-25)."""
    chroma = src_lab[:, 1:].norm(dim=1)
    lit = torch.sigmoid((src_lab[:, 0] - 8) / 2) * torch.sigmoid((99 - src_lab[:, 0]) / 1)
    return _in_arc(_hue(src_lab), _SKY) * torch.sigmoid((chroma - 7) / 1.5) * lit


def implausible(
    src_lab: torch.Tensor | None,
    out_lab: torch.Tensor,
    settings: MemorySettings = MemorySettings(),
    sky: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(N,)`` in [0, 1]: how implausible each graded colour ``out_lab`` ``(N, 3)`` is for its source colour
    ``src_lab`` ``(N, 3)`` (CIELAB): a blue sky's colour graded green, by how much the source is sky and
    how deep its graded hue lies in the forbidden arc. ``sky``: the sources' :func:`sky_weight`, when
    already known (a trainer's fixed key frame), instead of ``src_lab``.

    >>> sky, leaf = torch.tensor([[60.0, -5.0, -30.0]]), torch.tensor([[50.0, -30.0, 40.0]])
    >>> green, teal = torch.tensor([[60.0, -30.0, 20.0]]), torch.tensor([[60.0, -20.0, -5.0]])
    >>> orange = torch.tensor([[60.0, 20.0, 40.0]])
    >>> [round(float(implausible(s, o)[0]), 2) for s, o in ((sky, green), (sky, teal), (sky, orange), (leaf, green))]
    [1.0, 0.0, 0.0, 0.0]
    """
    sky = sky_weight(src_lab) if sky is None else sky
    return (settings.sky * sky * _in_arc(_hue(out_lab), _NOT_SKY)).clamp(0, 1)


def protection_weights(
    src_lab: torch.Tensor, memory: MemoryColours, settings: MemorySettings = MemorySettings()
) -> torch.Tensor:
    """``(N,)`` in [0, 1]: how much a look must leave each source colour ``(N, 3)`` Lab where the global
    look (with :func:`protect`) put it."""
    w = settings.neutral * neutral_weight(src_lab, settings)
    if memory.skin is not None and settings.skin > 0:
        w = torch.maximum(w, settings.skin * skin_weight(src_lab, memory.skin))
    return w.clamp(0, 1)


def protect(
    src_lab: torch.Tensor, out_lab: torch.Tensor, memory: MemoryColours, settings: MemorySettings = MemorySettings()
) -> torch.Tensor:
    """A look's colours ``out_lab`` ``(N, 3)`` for source colours ``src_lab`` ``(N, 3)`` (CIELAB) with
    memory colours protected; lightness is never changed (the tone curve stays the look's).

    >>> mem = MemoryColours(None, torch.zeros(11, 2))
    >>> src = torch.tensor([[50.0, 0.0, 0.0]]); out = torch.tensor([[60.0, -10.0, 20.0]])
    >>> [round(float(v), 1) for v in protect(src, out, mem)[0]]
    [60.0, -4.0, 8.0]
    """
    out = out_lab.clone()
    if settings.neutral > 0:
        w = (settings.neutral * neutral_weight(src_lab, settings))[:, None]
        axis = _axis_at(memory.neutral_axis, out[:, 0])
        chroma = axis.norm(dim=1, keepdim=True)
        axis = axis * (settings.neutral_tint / chroma.clamp_min(1e-6)).clamp(max=1)
        out[:, 1:] = out[:, 1:] * (1 - w) + axis * w
    if settings.sky > 0:  # toward grey itself: a green reference's neutral tint is green too
        out[:, 1:] = out[:, 1:] * (1 - implausible(src_lab, out, settings)[:, None])
    if memory.skin is not None and settings.skin > 0:
        w = (settings.skin * skin_weight(src_lab, memory.skin)).clamp(0, 1)[:, None]
        h_in = torch.atan2(src_lab[:, 2], src_lab[:, 1])
        h_out = torch.atan2(out[:, 2], out[:, 1])
        turn = torch.remainder(h_out - h_in + math.pi, 2 * math.pi) - math.pi
        limit = math.radians(settings.skin_hue)
        hue = h_in + turn * (1 - w[:, 0]) + turn.clamp(-limit, limit) * w[:, 0]  # blended as angles, not vectors
        c_in = src_lab[:, 1:].norm(dim=1)
        c_out = out[:, 1:].norm(dim=1)
        lo, hi = settings.skin_chroma
        c = c_out * (1 - w[:, 0]) + torch.minimum(torch.maximum(c_out, lo * c_in), hi * c_in) * w[:, 0]
        out[:, 1:] = torch.stack([c * torch.cos(hue), c * torch.sin(hue)], 1)
    return out
