"""Temporal stabilisation of the learned mode's affine field (against flicker and colour swimming).

The learned look re-runs its network on every frame, so the working-resolution field of local affine
colour transforms (``(1, 12, h, w)``: ``M`` row-major then ``t``, see :mod:`grade.model.look`) wobbles
slightly from frame to frame. :class:`Stabiliser` blends each frame's field with the previous
*stabilised* field, motion-compensated with dense optical flow (OpenCV's DIS, Kroeger et al. 2016):

    out_t = w · warp(out_{t-1}, flow_{t -> t-1}) + (1 - w) · field_t,   w = max_weight · confidence

The confidence is the product of three per-pixel tests, in the spirit of Sundaram et al. 2010 and
Ruder et al. 2016 ("Artistic style transfer for videos"):

* forward-backward consistency of the flow (low where content is occluded or disoccluded, or where
  the flow is simply wrong),
* motion boundaries (large flow gradient: the flow is smeared across object edges),
* photometric agreement of the warped previous luma with the current one (low where the light
  changed: fades, flashes, cuts the shot detector missed; carrying the previous frame's offsets
  into a fade to black would leave the old colours behind).

Two frame-wide checks scale the whole weight down to zero (a reset): the mean photometric
confidence (missed cut, flash) and the global gain between the frames (fade steps, which leave
dark pixels' absolute differences small but are still a change of light everywhere).

Because every step keeps at least ``1 - max_weight`` of the current field, errors cannot accumulate:
what the warp gets wrong decays geometrically. All confidences use the same soft ramp: 1 while a
test's error is within its tolerance, falling linearly to 0 at twice the tolerance. Everything runs
at a small flow resolution (long side ``flow_side``) and costs a few milliseconds per frame on CPU.

The network need not run on every frame. Given a function for the field instead of the field,
:meth:`Stabiliser.step` carries the previous stabilised field by the flow (no network) while the flow
is trusted on average *and* almost everywhere, for at most ``refresh - 1`` frames in a row; on the
next frame computed, the carried field is weighted as if it had been blended every frame
(``max_weight ** frames``). A moving object's disoccluded trail, a pan's new edge, a flash or a fade
make the network run (carrying the field there would leave ghosts or stale colour).

Use, per shot::

    stab = Stabiliser()                      # once; stab.reset() at every cut
    field = stab.step(luma, lambda: look.field_small(small)[0])  # (1, 12, h, w); the network runs when needed
    # (luma: uint8 (H, W), any size; working size is cheapest)
    out = look.apply_field(frame, field, base=base, scale=scale)

Measured with ``benchmarks/flow_choice.py`` (2-core Xeon): about 3.3 ms a step for a 192x108 field
with 1080p luma (2.9 ms with working-size luma); on a learned look over real handheld footage the
frame-to-frame jitter of the grade falls ~5x (second difference along the motion, 0.71 -> 0.14
8-bit codes) for a mean lag of ~1.5 codes behind the per-frame grade.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch

Preset = Literal["ultrafast", "fast", "medium"]

_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


@dataclass(frozen=True)
class StabiliserSettings:
    """Tuning of :class:`Stabiliser`; the defaults were chosen with ``benchmarks/flow_choice.py``.

    Tolerances are where a confidence starts to fall; it reaches 0 at twice the tolerance.
    """

    flow_side: int = 192  # long side of the images the flow is computed on (px; never enlarged)
    preset: Preset = "ultrafast"  # DIS preset
    finest_scale: int | None = 1  # DIS finest pyramid level (0 = full flow resolution); None: the preset's
    fb_tol: float = 0.7  # forward-backward error allowed, px at flow resolution ...
    fb_rel: float = 0.01  # ... plus this fraction of the squared flow magnitudes (Sundaram et al.)
    boundary_tol: float = 0.1  # flow gradient allowed (px per px, scale-free) ...
    boundary_rel: float = 0.01  # ... plus this fraction of the squared flow magnitude (px at flow resolution)
    photo_tol: float = 0.04  # |warped previous luma - luma| allowed, luma in [0, 1] (3x3 box-filtered)
    gain_tol: float = 0.03  # |log(mean luma ratio)| allowed between frames (fades): 3 %; reset from 6 %
    reset_below: float = 0.35  # mean photometric confidence at or below which the frame resets (full weight at 2x)
    max_weight: float = 0.8  # most of the previous stabilised field a pixel keeps per frame
    texture_tol: float = 0.01  # luma std (0-1) below which a frame is too flat for flow; full trust at twice it
    # When ``step`` is given a function for the field (the network), it is run on at most every ``refresh``-th
    # frame; in between, the previous field is carried by the flow, as long as the frame's mean confidence
    # (times the frame-wide factor) stays at or above ``carry_confidence`` and at most ``carry_untrusted``
    # of its pixels have a confidence under 0.5 (disocclusions, motion boundaries, a pan's new edge: the
    # warp would leave ghosts there). 1: the network runs on every frame.
    refresh: int = 4
    carry_confidence: float = 0.8
    carry_untrusted: float = 0.005


def preset_id(name: str) -> int:
    """OpenCV's constant for a DIS preset name (``ultrafast``, ``fast``, ``medium``)."""
    try:
        return _PRESETS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown DIS preset {name!r} (one of {', '.join(_PRESETS)})") from None


def make_dis(preset: str = "ultrafast", finest_scale: int | None = None) -> cv2.DISOpticalFlow:
    """A DIS optical flow object (create once, reuse: it keeps its buffers between calls)."""
    dis = cv2.DISOpticalFlow.create(preset_id(preset))
    if finest_scale is not None:
        dis.setFinestScale(int(finest_scale))
    return dis


def flow_size(h: int, w: int, side: int) -> tuple[int, int]:
    """``(h', w')`` with the long side at most ``side`` (images are never enlarged)."""
    s = min(1.0, side / max(h, w))
    return max(1, round(h * s)), max(1, round(w * s))


def flow_dis(prev: np.ndarray, nxt: np.ndarray, dis: cv2.DISOpticalFlow) -> np.ndarray:
    """Dense optical flow from ``prev`` to ``nxt``: ``prev(x) ≈ nxt(x + flow(x))``.

    Args:
        prev, nxt: uint8 luma ``(h, w)``, same size.
        dis: from :func:`make_dis`.
    Returns:
        ``(h, w, 2)`` float32, ``(dx, dy)`` in pixels. ``warp(nxt, flow)`` then looks like ``prev``.
    """
    return dis.calc(np.ascontiguousarray(prev), np.ascontiguousarray(nxt), None)


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    xx = np.broadcast_to(np.arange(w, dtype=np.float32)[None, :], (h, w))
    yy = np.broadcast_to(np.arange(h, dtype=np.float32)[:, None], (h, w))
    return xx, yy


def warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warp: ``out(x) = img(x + flow(x))``, bilinear, border replicated.

    Args:
        img: ``(h, w)`` or ``(h, w, C)`` float32 (or uint8), any number of channels.
        flow: ``(h, w, 2)`` float32 in pixels, on ``img``'s grid.
    Returns:
        same shape and dtype as ``img``.
    """
    h, w = flow.shape[:2]
    xx, yy = _grid(h, w)
    mx, my = xx + flow[..., 0], yy + flow[..., 1]
    return cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _sq(v: np.ndarray) -> np.ndarray:
    """``|v|²`` of a ``(h, w, 2)`` field (faster than a numpy reduction over a length-2 axis)."""
    x, y = v[..., 0], v[..., 1]
    return x * x + y * y


def _ramp(ratio: np.ndarray) -> np.ndarray:
    """1 for ``ratio <= 1``, linear down to 0 at ``ratio >= 2``."""
    return np.clip(2.0 - ratio, 0.0, 1.0).astype(np.float32, copy=False)


def fb_confidence(fwd: np.ndarray, bwd: np.ndarray, tol: float = 0.7, rel: float = 0.01) -> np.ndarray:
    """Forward-backward consistency of a flow pair, on ``fwd``'s grid (Sundaram et al. 2010).

    ``fwd`` goes from frame A to frame B, ``bwd`` from B to A. Following ``fwd`` and coming back
    with ``bwd`` should return to the start: ``e(x) = fwd(x) + bwd(x + fwd(x))`` is ~0 where both
    are right, large where A's pixel is hidden in B (occlusion) or the flow failed. The test is
    ``|e|² <= rel · (|fwd|² + |bwd(x + fwd(x))|²) + tol²``; pixels whose target falls outside B get 0.

    Args:
        fwd, bwd: ``(h, w, 2)`` float32, pixels.
        tol: pixels of round-trip error always allowed.
        rel: the allowance that grows with the motion.
    Returns:
        ``(h, w)`` float32 in [0, 1]: 1 consistent, 0 inconsistent (ramp between 1x and 2x the threshold).
    """
    h, w = fwd.shape[:2]
    back = warp(bwd, fwd)
    err = fwd + back
    e2 = _sq(err)
    m2 = _sq(fwd) + _sq(back)
    conf = _ramp(e2 / (rel * m2 + tol * tol))
    xx, yy = _grid(h, w)
    tx, ty = xx + fwd[..., 0], yy + fwd[..., 1]
    inside = (tx >= -0.5) & (tx <= w - 0.5) & (ty >= -0.5) & (ty <= h - 0.5)
    return conf * inside


def motion_boundaries(flow: np.ndarray, tol: float = 0.1, rel: float = 0.01) -> np.ndarray:
    """Where the flow changes abruptly (object edges moving differently from their surroundings).

    The test (Sundaram et al.) is ``|∇u|² + |∇v|² > rel · |flow|² + tol²`` with central differences;
    the gradient is scale-free (px per px), the ``rel`` term is in pixels of the flow's grid.

    Args:
        flow: ``(h, w, 2)`` float32, pixels.
    Returns:
        ``(h, w)`` float32 in [0, 1]: 1 on a boundary (ramp between 1x and 2x the threshold), 0 elsewhere.
    """
    g2 = np.zeros(flow.shape[:2], np.float32)
    for c in range(2):
        f = flow[..., c]
        gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=1, scale=0.5, borderType=cv2.BORDER_REPLICATE)
        gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=1, scale=0.5, borderType=cv2.BORDER_REPLICATE)
        g2 += gx * gx + gy * gy
    thr = rel * _sq(flow) + tol * tol
    return 1.0 - _ramp(g2 / thr)


def photometric_confidence(prev_luma_warped: np.ndarray, luma: np.ndarray, tol: float = 0.04) -> np.ndarray:
    """Agreement of the motion-compensated previous luma with the current one.

    Low where the light changed (fade, flash, cut) or where the flow is wrong in a way the
    forward-backward test does not see. The absolute difference is box-filtered over 3x3 pixels
    (noise and sub-pixel misalignment at edges matter less).

    Args:
        prev_luma_warped, luma: ``(h, w)`` float32, in the units of ``tol`` (the stabiliser uses [0, 1]).
    Returns:
        ``(h, w)`` float32 in [0, 1]: 1 while the difference is within ``tol``, 0 from ``2 · tol``.
    """
    d = cv2.absdiff(np.asarray(prev_luma_warped, np.float32), np.asarray(luma, np.float32))
    d = cv2.blur(d, (3, 3), borderType=cv2.BORDER_REPLICATE)
    return _ramp(d / tol)


def global_gain(prev_luma: np.ndarray, luma: np.ndarray, eps: float = 0.02) -> float:
    """``|log|`` of the ratio of mean lumas (``[0, 1]`` units; ``eps`` keeps black frames sane): the size
    of a global brightness step such as a fade or a flash."""
    return abs(math.log((cv2.mean(luma)[0] + eps) / (cv2.mean(prev_luma)[0] + eps)))


def frame_factor(gain: float, mean_photo: float, settings: StabiliserSettings) -> float:
    """Frame-wide scale of the blend weight in [0, 1] (0: reset): falls from 1 to 0 as ``gain`` (see
    :func:`global_gain`) goes from ``gain_tol`` to twice that, and as the mean photometric confidence
    goes from ``2 · reset_below`` down to ``reset_below``."""
    g = float(np.clip(2.0 - gain / settings.gain_tol, 0.0, 1.0))
    p = float(np.clip((mean_photo - settings.reset_below) / max(settings.reset_below, 1e-6), 0.0, 1.0))
    return g * p


def resize_flow(flow: np.ndarray, h: int, w: int) -> np.ndarray:
    """A flow field ``(h', w', 2)`` resampled to ``(h, w, 2)``, its vectors rescaled to the new grid."""
    fh, fw = flow.shape[:2]
    if (fh, fw) == (h, w):
        return flow
    interp = cv2.INTER_AREA if h < fh and w < fw else cv2.INTER_LINEAR
    out = cv2.resize(flow, (w, h), interpolation=interp)
    out[..., 0] *= w / fw
    out[..., 1] *= h / fh
    return out


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    ih, iw = img.shape[:2]
    if (ih, iw) == (h, w):
        return img
    interp = cv2.INTER_AREA if h < ih and w < iw else cv2.INTER_LINEAR
    return cv2.resize(img, (w, h), interpolation=interp)


def _as_u8(luma: np.ndarray) -> np.ndarray:
    if luma.ndim == 3:
        luma = luma[..., 0]
    if luma.dtype == np.uint8:
        return luma
    if luma.dtype == np.uint16:
        return (luma >> 8).astype(np.uint8)
    return (np.clip(luma, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)  # float in [0, 1]


class Stabiliser:
    """Stateful temporal filter for one shot's sequence of fields; call :meth:`reset` at every cut.

    Attributes:
        seconds: cumulative wall time spent in :meth:`step` (for the render's progress report).
        frames: steps taken.
        resets: steps that the frame-wide checks turned into a reset (missed cuts, flashes, fades).
        carried: steps whose field was carried from the previous frame (the network not run).
        last_weight: mean blend weight of the latest step (0 on a reset or first frame).
    """

    def __init__(self, settings: StabiliserSettings | None = None) -> None:
        self.settings = settings or StabiliserSettings()
        if not 0.0 <= self.settings.max_weight < 1.0:
            raise ValueError("max_weight must be in [0, 1)")
        if self.settings.refresh < 1:
            raise ValueError("refresh must be at least 1")
        self._dis = make_dis(self.settings.preset, self.settings.finest_scale)
        self.seconds = 0.0
        self.frames = 0
        self.resets = 0
        self.carried = 0
        self.last_weight = 0.0
        self._like = torch.empty(0)
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next :meth:`step` returns its field unchanged (first frame of a shot)."""
        self._luma: np.ndarray | None = None  # previous luma at flow resolution, uint8 (h, w)
        self._field: np.ndarray | None = None  # previous stabilised field, float32 (h, w, 12)
        self._since = 0  # frames since the field was last computed

    def step(self, luma: np.ndarray, field: torch.Tensor | Callable[[], torch.Tensor]) -> torch.Tensor:
        """Stabilise one frame's field.

        Args:
            luma: the frame's luma, uint8 ``(H, W)`` at any resolution (uint16 or float in [0, 1] are
                converted); resized here to the flow resolution.
            field: ``(1, C, h, w)`` (``C`` = 12 for the learned look), any grid size; or a function that
                computes it (the network). Then, on frames where the flow is trusted and the field was
                computed less than ``refresh`` frames ago, the function is not called: the previous
                stabilised field, carried by the flow, is this frame's (see :class:`StabiliserSettings`).
        Returns:
            ``(1, C, h, w)``, same dtype and device as the field; the field itself on the first frame
            after construction or :meth:`reset`, and on frames the frame-wide checks reset.
        """
        t0 = time.perf_counter()
        spent = [0.0]  # time inside the caller's field function: the network's, not the stabiliser's

        def compute() -> torch.Tensor:
            if not callable(field):
                return field
            t = time.perf_counter()
            try:
                return field()
            finally:
                spent[0] += time.perf_counter() - t

        try:
            return self._step(luma, compute, callable(field))
        finally:
            self.seconds += time.perf_counter() - t0 - spent[0]
            self.frames += 1

    def _step(self, luma: np.ndarray, compute: Callable[[], torch.Tensor], may_carry: bool) -> torch.Tensor:
        s = self.settings
        lu = _as_u8(np.asarray(luma))
        fh, fw = flow_size(lu.shape[0], lu.shape[1], s.flow_side)
        small = np.ascontiguousarray(_resize(lu, fh, fw))
        prev_luma, prev_field = self._luma, self._field
        self._luma = small
        self.last_weight = 0.0
        if prev_luma is None or prev_luma.shape != small.shape or prev_field is None:
            return self._restart(compute())

        cur_l = small.astype(np.float32) / 255.0
        prev_l = prev_luma.astype(np.float32) / 255.0
        gain = global_gain(prev_l, cur_l)
        # too little texture (near-black or flat frames): the flow is noise, do not trust it
        texture = float(np.clip(float(cv2.meanStdDev(cur_l)[1][0, 0]) / s.texture_tol - 1.0, 0.0, 1.0))
        glob = frame_factor(gain, 1.0, s) * texture
        if glob > 0.0:
            back = flow_dis(small, prev_luma, self._dis)  # current -> previous: cur(x) ≈ prev(x + back(x))
            photo = photometric_confidence(warp(prev_l, back), cur_l, s.photo_tol)
            glob = frame_factor(gain, cv2.mean(photo)[0], s) * texture
        if glob <= 0.0:  # flash, fade step, missed cut: start again from this frame
            self.resets += 1
            return self._restart(compute())

        fwd = flow_dis(prev_luma, small, self._dis)
        conf = fb_confidence(back, fwd, s.fb_tol, s.fb_rel)
        conf *= photo
        conf *= 1.0 - motion_boundaries(back, s.boundary_tol, s.boundary_rel)
        h, w = prev_field.shape[:2]
        warped = warp(prev_field, resize_flow(back, h, w))
        if warped.ndim == 2:  # one-channel field: cv2 drops the channel axis
            warped = warped[..., None]
        self._since += 1
        if may_carry and self._since < s.refresh and self._can_carry(conf, glob):
            self._field = warped  # the network is not run on this frame
            self.carried += 1
            self.last_weight = 1.0
            return self._as_field(warped, self._like)
        field = compute()
        cur = self._planes(field)
        if cur.shape != prev_field.shape:
            return self._restart(field)
        # the previous field has gone ``since`` frames without a fresh one: weigh it as the per-frame
        # blend would have after that many frames (same time constant whether or not frames were carried)
        weight = _resize(conf, h, w) * np.float32(s.max_weight**self._since * glob)
        out = cur + weight[..., None] * (warped - cur)
        self._field = out
        self._since = 0
        self.last_weight = cv2.mean(weight)[0]
        return self._as_field(out, field)

    def _can_carry(self, conf: np.ndarray, glob: float) -> bool:
        """Whether the warped previous field can stand for this frame's: the flow is trusted on average
        and almost everywhere (a moving object's disoccluded trail, or a pan's new edge, would take the
        field of whatever the flow smeared over it: a ghost; there the network runs)."""
        s = self.settings
        if glob * cv2.mean(conf)[0] < s.carry_confidence:
            return False
        return float(np.count_nonzero(conf < 0.5)) <= s.carry_untrusted * conf.size

    def _planes(self, field: torch.Tensor) -> np.ndarray:
        """``(h, w, C)`` float32 copy of a ``(1, C, h, w)`` field (never a view of the caller's tensor)."""
        self._like = field
        planes = field.detach()[0].to("cpu", torch.float32).numpy()  # (C, h, w)
        return planes.transpose(1, 2, 0).copy()  # torch's permute + contiguous is much slower here

    def _restart(self, field: torch.Tensor) -> torch.Tensor:
        self._field = self._planes(field)
        self._since = 0
        return field

    @staticmethod
    def _as_field(planes: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        result = torch.from_numpy(np.ascontiguousarray(planes.transpose(2, 0, 1)))[None]
        return result if like.dtype == torch.float32 and like.device.type == "cpu" else result.to(like)
