"""The fast mode: a global, tone-aware colour transfer from a key frame to a reference still.

Fitted in CIELAB (kornia's conversion), in two steps:

1. a monotone tone curve on L* that matches the reference's luminance distribution, with its slope
   limited (no crushed or stretched tone ranges), and a Monge-Kantorovich linear map (MKL; Pitie &
   Kokaram 2007) for chroma that matches mean and covariance (including how chroma varies
   with luminance);
2. a few rounds of sliced optimal transport (iterative distribution transfer, Pitie et al. 2005):
   along random orthonormal axes, monotone 1D maps between the quantiles of the two
   distributions, with their slopes limited so that no tone range is crushed or stretched into
   banding (this is what keeps edges and texture intact).

The result is a smooth global map RGB -> RGB, baked into a 3D LUT (``grade.lut``) so that
applying it costs one table lookup per pixel. It is also the starting point of the learned mode.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import kornia.color as KC
import torch
import torch.nn.functional as F

from grade.lut import grid_points

if TYPE_CHECKING:
    from grade.memory import MemoryColours, MemorySettings


@dataclass(frozen=True)
class TransferSettings:
    """Settings of the fast transfer; defaults are the measured ones (BENCHMARKS.md)."""

    iterations: int = 12  # sliced-OT rounds (chroma) after MKL
    quantiles: int = 48  # knots of each 1D map
    tone_slope_min: float = 0.5  # limits of the luminance tone curve's slope
    tone_slope_max: float = 2.0
    slope_min: float = 0.35  # limits of each chroma 1D map's slope
    slope_max: float = 2.5
    relax: float = 0.8  # step size of each sliced round
    samples: int = 16384  # pixels sampled from each image (65536 measured no better)
    lut_size: int = 33
    seed: int = 0
    flat_spread: float = 2.0  # key frames whose L* 5-95 % spread is below this keep their tone
    tone_spread: float = 8.0  # ... and from this spread up the tone curve applies in full
    flat_min_var: float = 1.0  # floor of the key frame's Lab covariance eigenvalues in the MKL map
    # Gaussian smoothing (in LUT nodes) of the chroma the baked map gives: no banding where the sliced
    # maps' slopes change (measured over the sample pairs: affine 0.32 -> 0.23, look 2.06 -> 2.49)
    smooth: float = 1.0
    # Gaussian smoothing (in LUT nodes) of the baked table's departure from the identity, after the gamut
    # mapping and the memory colours' protection, whose edges are kinks a local affine map cannot follow
    # (measured over the sample pairs: fast affine 0.223 -> 0.199, look 3.41 -> 3.53; 1.0 costs the
    # learned look more than it is worth, BENCHMARKS.md)
    rgb_smooth: float = 0.7
    memory: bool = True  # protect skin (of detected faces) and neutrals (grade.memory)
    seen: int = 2048  # key-frame colours kept to map the colours the key frame does not hold


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run small tensor work on one thread: on busy machines, intra-op threads on tensors of a few
    ten thousand elements spin and wait far longer than the work takes (measured 25x slower)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def rgb_to_lab_points(rgb: torch.Tensor) -> torch.Tensor:
    """``(N, 3)`` sRGB in [0,1] -> ``(N, 3)`` CIELAB (L in [0,100])."""
    return KC.rgb_to_lab(rgb.clamp(0, 1).T.reshape(1, 3, -1, 1)).reshape(3, -1).T


def lab_to_rgb_points(lab: torch.Tensor) -> torch.Tensor:
    """``(N, 3)`` CIELAB -> ``(N, 3)`` sRGB, clipped to [0,1]."""
    return KC.lab_to_rgb(lab.T.reshape(1, 3, -1, 1), clip=True).reshape(3, -1).T


def sample_pixels(img: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """Up to ``n`` random pixels of a ``(3, H, W)`` image as ``(n, 3)``."""
    flat = img.reshape(3, -1).T
    if flat.shape[0] <= n:
        return flat
    return flat[torch.randperm(flat.shape[0], generator=gen)[:n]]


def _sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(m)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def mkl_map(
    src: torch.Tensor, tgt: torch.Tensor, eps: float = 1e-3, src_min_var: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Monge-Kantorovich linear map between two point clouds ``(N, 3)``, ``(M, 3)``.

    ``src_min_var`` floors the source covariance's eigenvalues: along a direction where the
    source barely varies (a flat or monochrome key frame) the map stays a shift instead of
    blowing compression noise up to the target's whole spread.

    Returns:
        ``(T, t)`` with ``T`` ``(3, 3)`` and ``t`` ``(3,)`` such that ``x @ T.T + t`` has the
        target's mean and covariance.
    """
    ms, mt = src.mean(0), tgt.mean(0)
    # population covariance: defined for a single pixel too (a 1x1 or flat reference is a colour cast)
    cs = torch.cov((src - ms).T, correction=0) + eps * torch.eye(3, dtype=src.dtype)
    ct = torch.cov((tgt - mt).T, correction=0) + eps * torch.eye(3, dtype=src.dtype)
    if src_min_var > 0:
        w, v = torch.linalg.eigh(cs)
        cs = (v * w.clamp_min(src_min_var)) @ v.T
    cs_h = _sqrtm_psd(cs)
    cs_ih = torch.linalg.inv(cs_h)
    t_mat = cs_ih @ _sqrtm_psd(cs_h @ ct @ cs_h) @ cs_ih
    return t_mat, mt - t_mat @ ms


def monotone_map(s: torch.Tensor, t: torch.Tensor, knots: int, slope_min: float, slope_max: float):
    """A slope-limited monotone 1D transport map from samples ``s`` to samples ``t``.

    Returns:
        ``(xs, ys)`` knots, shape ``(K,)`` each, of a piecewise-linear map (slope 1 outside).
    """
    q = torch.linspace(0.0, 1.0, knots + 2, dtype=s.dtype)[1:-1]
    xs = torch.quantile(s, q)
    yt = torch.quantile(t, q)
    dx = (xs[1:] - xs[:-1]).clamp_min(1e-6)
    slope = ((yt[1:] - yt[:-1]) / dx).clamp(slope_min, slope_max)
    ys = torch.cat([yt[:1], yt[:1] + torch.cumsum(slope * dx, 0)])
    ys = ys + (yt - ys).median()  # re-anchor: the clamped map stays centred on the target
    xs = torch.cat([xs[:1], xs[:1] + torch.cumsum(dx, 0)])
    return xs, ys


def interp_linear(x: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation through knots, extrapolated with slope 1."""
    idx = torch.searchsorted(xs, x.contiguous()).clamp(1, len(xs) - 1)
    x0, x1 = xs[idx - 1], xs[idx]
    y0, y1 = ys[idx - 1], ys[idx]
    w = ((x - x0) / (x1 - x0).clamp_min(1e-9)).clamp(0, 1)
    y = y0 + w * (y1 - y0)
    y = torch.where(x < xs[0], ys[0] + (x - xs[0]), y)
    return torch.where(x > xs[-1], ys[-1] + (x - xs[-1]), y)


class GlobalTransfer:
    """A fitted global map in Lab. Call it on ``(N, 3)`` RGB points.

    Luminance goes through one monotone tone curve (so every edge of the footage keeps its
    shape), anchored so that black maps to the reference's black level and white to its white
    level; chroma goes through an MKL map and sliced 1D maps that may depend on luminance
    (split toning) but never feed back into it. Colours that leave the RGB gamut are
    desaturated back into it rather than clipped (clipping would flatten luminance detail).

    Colours the key frame does not hold are not left to the maps' free extrapolation
    (:attr:`levels`, :attr:`seen`): lighter or darker than anything in the key frame, chroma is
    mapped as at the key frame's own lightest or darkest, and blends toward the reference's white
    or black tint at the ends of the scale; far from every colour of the key frame, a colour
    keeps the chroma shift of the nearest colours the key frame does hold.
    """

    def __init__(
        self,
        tone,
        matrix: torch.Tensor,
        offset: torch.Tensor,
        rounds: list,
        levels: Levels | None = None,
        seen: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        self.tone, self.matrix, self.offset, self.rounds = tone, matrix, offset, rounds
        self.levels, self.seen = levels, seen

    def _chroma(self, lab: torch.Tensor, l_out: torch.Tensor) -> torch.Tensor:
        x = torch.cat([l_out[:, None], lab[:, 1:]], 1)
        x = torch.cat([l_out[:, None], x @ self.matrix[1:].T + self.offset[1:]], 1)
        for rot, maps, relax in self.rounds:
            x = _sliced_chroma_step(x, rot, maps, relax)
        return x[:, 1:]

    def lab(self, lab: torch.Tensor) -> torch.Tensor:
        l_out = interp_linear(lab[:, 0], *self.tone).clamp(0, 100)
        lv = self.levels
        if lv is None:
            return torch.cat([l_out[:, None], self._chroma(lab, l_out)], 1)
        inside = lab.clone()
        inside[:, 0] = lab[:, 0].clamp(lv.key_dark, lv.key_light)  # the nearest lightness the fit saw
        ab = self._chroma(inside, interp_linear(inside[:, 0], *self.tone).clamp(0, 100))
        if self.seen is not None:
            ab = _nearest_shift(inside, ab, *self.seen)
        # toward the ends of the scale, the reference's own black and white tint
        dark = ((lv.key_dark - lab[:, 0]) / max(lv.key_dark, 1e-3)).clamp(0, 1)[:, None]
        light = ((lab[:, 0] - lv.key_light) / max(100 - lv.key_light, 1e-3)).clamp(0, 1)[:, None]
        ab = ab * (1 - dark) + lv.black[1:].to(ab) * dark
        ab = ab * (1 - light) + lv.white[1:].to(ab) * light
        return torch.cat([l_out[:, None], ab], 1)

    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        return lab_to_rgb_in_gamut(self.lab(rgb_to_lab_points(rgb)))


@dataclass(frozen=True)
class Levels:
    """The key frame's lightness range (1st and 99th percentile of L*) and the reference's black and
    white points (Lab ``(3,)``: L* at its 1st / 99th percentile, a*, b* the median tint there)."""

    key_dark: float
    key_light: float
    black: torch.Tensor
    white: torch.Tensor


def image_levels(t_lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Black and white points (Lab ``(3,)`` each) of an image's Lab samples ``(M, 3)``: L* at the 1st
    and 99th percentile, and the median a*, b* of the darkest and lightest 2 %."""
    q = torch.quantile(t_lab[:, 0], torch.tensor([0.01, 0.02, 0.98, 0.99], dtype=t_lab.dtype))
    dark, light = t_lab[t_lab[:, 0] <= q[1]], t_lab[t_lab[:, 0] >= q[2]]
    black = torch.cat([q[:1], dark[:, 1:].median(0).values])
    white = torch.cat([q[3:], light[:, 1:].median(0).values])
    return black, white


def anchor_tone(tone, black: float, white: float):
    """The tone curve through ``(0, black)`` and ``(100, white)`` outside the key frame's range, kept
    monotone and between the two: black input gets the reference's black level and never brighter."""
    xs, ys = tone
    inner = (xs > 0.5) & (xs < 99.5)
    xs, ys = xs[inner], ys[inner]
    lo = min(black, float(ys[0])) if len(ys) else black
    hi = max(white, float(ys[-1])) if len(ys) else white
    xs = torch.cat([xs.new_tensor([0.0]), xs, xs.new_tensor([100.0])])
    ys = torch.cat([ys.new_tensor([lo]), ys.clamp(lo, hi), ys.new_tensor([hi])])
    return xs, torch.cummax(ys, 0).values


def _nearest_shift(
    lab: torch.Tensor, ab: torch.Tensor, seen: torch.Tensor, shift: torch.Tensor, near: float = 10.0, far: float = 30.0
) -> torch.Tensor:
    """Chroma ``ab`` ``(N, 2)`` of colours ``lab`` ``(N, 3)``, replaced by ``lab``'s chroma plus the mean
    chroma shift of its 8 nearest key-frame colours (``seen`` ``(S, 3)``, ``shift`` ``(S, 2)``) where it is
    farther than ``near`` ΔE from all of them (fully from ``far``)."""
    out = ab.clone()
    k = min(8, len(seen))
    for start in range(0, len(lab), 4096):
        part = lab[start : start + 4096].float()
        d = torch.cdist(part, seen.float())
        dist, idx = d.topk(k, dim=1, largest=False)
        u = ((dist[:, 0] - near) / (far - near)).clamp(0, 1)[:, None].to(ab)
        if not bool((u > 0).any()):
            continue
        follow = lab[start : start + 4096, 1:] + shift[idx].mean(1).to(ab)
        out[start : start + 4096] = ab[start : start + 4096] * (1 - u) + follow * u
    return out


def _sliced_chroma_step(x: torch.Tensor, rot: torch.Tensor, maps, relax: float) -> torch.Tensor:
    p = x @ rot.T
    moved = torch.stack([interp_linear(p[:, k], *maps[k]) for k in range(3)], 1)
    step = (moved - p) @ rot
    step[:, 0] = 0  # chroma only: luminance is the tone curve's alone
    return x + relax * step


def lab_to_rgb_in_gamut(lab: torch.Tensor, steps: int = 12) -> torch.Tensor:
    """Lab ``(N, 3)`` -> RGB ``(N, 3)``; out-of-gamut colours lose chroma (bisection) instead of clipping."""
    lab = lab.clone()
    lab[:, 0] = lab[:, 0].clamp(0, 100)

    def unclipped(v: torch.Tensor) -> torch.Tensor:
        return KC.lab_to_rgb(v.float().T.reshape(1, 3, -1, 1), clip=False).reshape(3, -1).T

    rgb = unclipped(lab)
    bad = ((rgb < -1e-4) | (rgb > 1 + 1e-4)).any(1)
    if bad.any():
        sub = lab[bad]
        lo = torch.zeros(len(sub), dtype=lab.dtype)
        hi = torch.ones(len(sub), dtype=lab.dtype)
        for _ in range(steps):
            mid = (lo + hi) / 2
            trial = torch.cat([sub[:, :1], sub[:, 1:] * mid[:, None]], 1)
            c = unclipped(trial)
            ok = ((c >= -1e-4) & (c <= 1 + 1e-4)).all(1)
            lo = torch.where(ok, mid, lo)
            hi = torch.where(ok, hi, mid)
        sub = torch.cat([sub[:, :1], sub[:, 1:] * lo[:, None]], 1)
        rgb[bad] = unclipped(sub).to(rgb.dtype)
    return rgb.clamp(0, 1)


def fit_transfer(key, reference: torch.Tensor, settings: TransferSettings = TransferSettings()) -> GlobalTransfer:
    """Fit the global map from a key frame to a reference.

    Args:
        key: ``(3, H, W)`` or a list of them (several key frames of one scene), RGB in [0,1].
        reference: ``(3, H', W')`` RGB in [0,1].
    """
    gen = torch.Generator().manual_seed(settings.seed)
    keys = key if isinstance(key, list | tuple) else [key]
    per = max(1, settings.samples // len(keys))
    src = torch.cat([sample_pixels(k.float(), per, gen) for k in keys])
    tgt = sample_pixels(reference.float(), settings.samples, gen)
    s_lab, t_lab = rgb_to_lab_points(src).double(), rgb_to_lab_points(tgt).double()
    tone = monotone_map(s_lab[:, 0], t_lab[:, 0], settings.quantiles, settings.tone_slope_min, settings.tone_slope_max)
    tone = _trust_tone(tone, s_lab[:, 0], settings)
    black, white = image_levels(t_lab)
    tone = anchor_tone(tone, float(black[0]), float(white[0]))
    l_out = interp_linear(s_lab[:, 0], *tone)
    x = torch.cat([l_out[:, None], s_lab[:, 1:]], 1)
    mat, off = mkl_map(x, t_lab, src_min_var=settings.flat_min_var)
    x = torch.cat([l_out[:, None], x @ mat[1:].T + off[1:]], 1)
    rounds = []
    for _ in range(settings.iterations):
        rot, _r = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
        p, pt = x @ rot.T, t_lab @ rot.T
        maps = [
            monotone_map(p[:, k], pt[:, k], settings.quantiles, settings.slope_min, settings.slope_max)
            for k in range(3)
        ]
        x = _sliced_chroma_step(x, rot, maps, settings.relax)
        rounds.append((rot, maps, settings.relax))
    q = torch.quantile(s_lab[:, 0], torch.tensor([0.01, 0.99], dtype=s_lab.dtype)).tolist()
    levels = Levels(q[0], max(q[1], q[0] + 1e-3), black.float(), white.float())
    pick = torch.randperm(len(s_lab), generator=gen)[: settings.seen]
    seen = (s_lab[pick].float(), (x[pick, 1:] - s_lab[pick, 1:]).float())
    return GlobalTransfer(tone, mat, off, rounds, levels, seen)


def _trust_tone(tone, s_l: torch.Tensor, settings: TransferSettings):
    """Blend the tone curve toward identity when the key frame's luminance barely varies.

    A flat key frame (a black, white or uniformly grey shot) has no tone distribution to match:
    its quantiles are one value, and the matched curve would move the whole shot to the
    reference's median tone (black lifted to grey). Below ``flat_spread`` L* units between the
    5th and 95th percentiles the shot keeps its own tone; the full curve applies from
    ``tone_spread`` up.
    """
    lo, hi = settings.flat_spread, settings.tone_spread
    spread = float(torch.quantile(s_l, 0.95) - torch.quantile(s_l, 0.05))
    trust = min(1.0, max(0.0, (spread - lo) / max(hi - lo, 1e-6)))
    if trust >= 1.0:
        return tone
    xs, ys = tone
    return xs, xs + trust * (ys - xs)


def transfer_lut(
    transfer: GlobalTransfer,
    size: int = 33,
    smooth: float = 0.0,
    memory: MemoryColours | None = None,
    memory_settings: MemorySettings | None = None,
    rgb_smooth: float = 0.0,
) -> torch.Tensor:
    """Bake a global map into a 3D LUT ``(3, size, size, size)``; ``smooth`` (in nodes) smooths the map's
    departure from the identity with a 3D Gaussian, so the LUT is smooth in colour (no banding where
    the sliced maps' slopes change); ``memory`` protects skin and neutrals (:func:`grade.memory.protect`);
    ``rgb_smooth`` (in nodes) smooths the gamut-mapped table's departure from the identity in R'G'B'
    (the gamut's boundary and the protection's are edges that a local affine map cannot follow); skin's
    limits are applied again after it."""
    pts = grid_points(size).double()
    if smooth <= 0 and memory is None:
        return _smoothed_rgb(transfer(pts).float().T.reshape(3, size, size, size).contiguous(), rgb_smooth)
    src_lab = rgb_to_lab_points(pts)
    lab = transfer.lab(src_lab)
    if smooth > 0:
        # smooth the chroma the map gives each colour; its tone curve (L*) is smooth already and kept exact
        grid = (lab[:, 1:] - src_lab[:, 1:]).float().T.reshape(2, size, size, size)
        chroma = smooth_lut_offsets(grid, smooth).reshape(2, -1).T.double() + src_lab[:, 1:]
        lab = torch.cat([lab[:, :1], chroma], 1)
    from grade.memory import MemorySettings, protect

    settings = memory_settings or MemorySettings()
    if memory is not None:
        lab = protect(src_lab, lab, memory, settings)
    out = lab_to_rgb_in_gamut(lab).float().T.reshape(3, size, size, size).contiguous()
    if rgb_smooth <= 0:
        return out
    out = _smoothed_rgb(out, rgb_smooth)
    if memory is None or memory.skin is None or settings.skin <= 0:
        return out
    # skin's limits once more: smoothing mixes the neighbouring colours' larger turns into them (a limit
    # is a clamp, so a second pass only restores it)
    lab = rgb_to_lab_points(out.reshape(3, -1).T.double())
    only_skin = dataclasses.replace(settings, neutral=0.0, sky=0.0)
    lab = protect(src_lab, lab, memory, only_skin)
    return lab_to_rgb_in_gamut(lab).float().T.reshape(3, size, size, size).contiguous()


def _smoothed_rgb(lut: torch.Tensor, sigma: float) -> torch.Tensor:
    """``lut`` ``(3, n, n, n)`` with its departure from the identity smoothed by a Gaussian of ``sigma``
    nodes (:func:`smooth_lut_offsets`), in [0, 1]; ``lut`` itself when ``sigma`` is 0."""
    if sigma <= 0:
        return lut
    n = lut.shape[-1]
    identity = grid_points(n).float().T.reshape(3, n, n, n)
    return (identity + smooth_lut_offsets(lut - identity, sigma)).clamp_(0, 1).contiguous()


def smooth_lut_offsets(delta: torch.Tensor, sigma: float) -> torch.Tensor:
    """3D Gaussian smoothing ``(C, n, n, n)`` -> same, separable, borders replicated.

    >>> d = torch.zeros(3, 9, 9, 9); d[:, 4, 4, 4] = 1
    >>> round(float(smooth_lut_offsets(d, 1.0).sum() / 3), 3)
    1.0
    """
    r = max(1, int(math.ceil(2.5 * sigma)))
    x = torch.arange(-r, r + 1, dtype=delta.dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    out = delta[None]  # (1, C, n, n, n)
    c = delta.shape[0]
    for dim in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + dim] = len(k)
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - dim)] = pad[2 * (2 - dim) + 1] = r
        out = F.conv3d(F.pad(out, pad, mode="replicate"), k.view(shape).expand(c, 1, *shape[2:]), groups=c)
    return out[0]


def tone_lut(reference: torch.Tensor, settings: TransferSettings = TransferSettings()) -> torch.Tensor:
    """The global tone mapping alone, as a 3D LUT ``(3, N, N, N)``: black to the reference's black level,
    white to its white level, linear in L* between, chroma kept except toward black and white (the
    reference's black and white tint). What black, flat and title shots get: nothing else can be
    learned from them.

    >>> lut = tone_lut(torch.full((3, 8, 8), 0.5))
    >>> [round(float(v), 2) for v in lut[:, 0, 0, 0]], [round(float(v), 2) for v in lut[:, -1, -1, -1]]
    ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    """
    gen = torch.Generator().manual_seed(settings.seed)
    t_lab = rgb_to_lab_points(sample_pixels(reference.float(), settings.samples, gen)).double()
    black, white = image_levels(t_lab)
    b, w = float(black[0]), max(float(white[0]), float(black[0]))
    tone = (t_lab.new_tensor([0.0, 100.0]), t_lab.new_tensor([b, w]))  # straight from black to white
    eye, zero = torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    levels = Levels(10.0, 90.0, black.float(), white.float())
    with single_thread(), torch.inference_mode():
        return transfer_lut(GlobalTransfer(tone, eye, zero, [], levels), settings.lut_size)


def fast_lut(key, reference: torch.Tensor, settings: TransferSettings = TransferSettings()) -> torch.Tensor:
    """Fit the fast-mode transfer and return it as a 3D LUT ``(3, N, N, N)``, memory colours protected
    unless ``settings.memory`` is off."""
    from grade.memory import memory_colours

    with single_thread(), torch.inference_mode():
        keys = key if isinstance(key, list | tuple) else [key]
        memory = memory_colours(list(keys), reference) if settings.memory else None
        transfer = fit_transfer(key, reference, settings)
        return transfer_lut(transfer, settings.lut_size, settings.smooth, memory, rgb_smooth=settings.rgb_smooth)
