"""The pure tensor maths of a learned look: local affine colour transforms, their guided fit and
application, the level gate, and the field re-expressed on YCbCr code values.

``out = A(x) · base + b(x)`` with ``base = LUT(in)``; a field is ``(B, 12, h, w)``: nine matrix
entries then three offsets per pixel. Frame layouts (RGBA uint8, uint16 RGB, 4:2:0 planes) are
:class:`grade.model.look.LearnedLook`'s business, not this module's."""

from __future__ import annotations

import functools

import kornia.color as KC
import numpy as np
import torch

from grade.lut import yuv_affine
from grade.model.material import box_filter


def working_size(h: int, w: int, side: int, min_side: int = 32) -> tuple[int, int]:
    """``(h', w')`` with the long side at most ``side``; tiny images are enlarged to a short side of
    ``min_side`` (the network's and the losses' filters need room), long side capped at ``4 * side``."""
    s = min(1.0, side / max(h, w))
    s = max(s, min(min_side / max(1, min(h, w)), 4 * side / max(h, w)))
    return max(1, round(h * s)), max(1, round(w * s))


def network_input(frame: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """``(B, 8, h, w)``: the frame, its globally graded base, and normalised coordinates, in [-1, 1]."""
    b, _, h, w = frame.shape
    yy = torch.linspace(-1, 1, h, device=frame.device).view(1, 1, h, 1).expand(b, 1, h, w)
    xx = torch.linspace(-1, 1, w, device=frame.device).view(1, 1, 1, w).expand(b, 1, h, w)
    return torch.cat([frame * 2 - 1, base * 2 - 1, yy, xx], 1)


def apply_coefficients(coef: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """``out = (I + dA) · base + b`` per pixel. ``coef`` ``(B, 12, H, W)``, ``base`` ``(B, 3, H, W)``."""
    b, _, h, w = coef.shape
    a = coef[:, :9].reshape(b, 3, 3, h, w)
    out = base + (a * base[:, None]).sum(2) + coef[:, 9:]
    return out


def fit_local_affine(src: torch.Tensor, dst: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """Per-window ridge-regularised affine fit ``dst ≈ M · src + t`` (the guided filter, in colour).

    All window sums come from one box filter over the stacked moments (means, the 6 distinct products
    of ``src`` channels, the 9 cross products with ``dst``), then one batched 3x3 solve per pixel.

    Args:
        src, dst: ``(1, 3, h, w)``.
    Returns:
        ``(1, 12, h, w)``: ``M`` row-major (9) then ``t`` (3), averaged over windows.
    """
    _, _, h, w = src.shape
    ii, jj = torch.triu_indices(3, 3, device=src.device)
    cross = (src[:, :, None] * dst[:, None]).reshape(1, 9, h, w)  # (in, out) row-major
    moments = box_filter(torch.cat([src, dst, src[:, ii] * src[:, jj], cross], 1), radius)
    ms, md, ss = moments[:, :3], moments[:, 3:6], moments[:, 6:12]
    sd = moments[:, 12:21].reshape(1, 3, 3, h, w)
    cov = torch.empty(1, 3, 3, h, w, dtype=src.dtype, device=src.device)
    cov[:, ii, jj] = ss - ms[:, ii] * ms[:, jj]
    cov[:, jj, ii] = cov[:, ii, jj]
    cov = cov.permute(0, 3, 4, 1, 2).reshape(-1, 3, 3) + eps * torch.eye(3, dtype=src.dtype, device=src.device)
    csd = (sd - ms[:, :, None] * md[:, None]).permute(0, 3, 4, 1, 2).reshape(-1, 3, 3)
    m = torch.linalg.solve(cov, csd).transpose(1, 2)  # (P, out, in)
    m = m.reshape(1, h, w, 9).permute(0, 3, 1, 2)
    t = md - (m.reshape(1, 3, 3, h, w) * ms[:, None]).sum(2)
    return box_filter(torch.cat([m, t], 1), radius)


LEVEL_BAND = 6.0  # L* units above the look's black (below its white) over which the regional part fades in


def lut_levels(lut: torch.Tensor) -> tuple[float, float]:
    """L* of what a LUT ``(3, N, N, N)`` makes of black and of white: the look's black and white levels."""
    ends = torch.stack([lut[:, 0, 0, 0], lut[:, -1, -1, -1]]).float().clamp(1e-6, 1)
    lab = KC.rgb_to_lab(ends.T.reshape(1, 3, 2, 1)).reshape(3, 2)
    return float(lab[0, 0]), float(lab[0, 1])


def level_gate(base: torch.Tensor, levels: tuple[float, float]) -> torch.Tensor:
    """``(1, 1, h, w)`` in [0, 1]: 0 where the globally graded frame ``base`` ``(1, 3, h, w)`` is at the
    look's black or white level, 1 from :data:`LEVEL_BAND` L* inside them. A material look's offsets (a
    network look's whole correction) are scaled by it, so that black stays the reference's black and
    white its white (no fog on a fade, no tint on a clipped sky) whatever the regional maps learned for
    the colours they saw."""
    lum = KC.rgb_to_lab(base.clamp(1e-6, 1))[:, :1]
    lo, hi = levels
    return ((lum - lo) / LEVEL_BAND).clamp(0, 1) * ((hi - lum) / LEVEL_BAND).clamp(0, 1)


@functools.lru_cache(maxsize=16)
def yuv_map(matrix: int, full_range: bool, strength: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L, c)``: the linear map ``(13, 12)`` and offset ``(13,)`` of :func:`yuv_field` (rows: the code-value
    field's coefficients in the order of :func:`yuv_field`'s output)."""
    p, q = yuv_affine(matrix, full_range)
    pinv = torch.linalg.inv(p)
    # M' = P⁻¹ M P is linear in M; t' = P⁻¹ (M q + t - q) is affine in (M, t): probe with the unit fields
    basis = torch.cat([torch.zeros(1, 12), torch.eye(12)]).double()
    m = basis[:, :9].reshape(-1, 3, 3)
    m2 = (pinv @ m @ p).reshape(-1, 9)
    t2 = (m @ q + basis[:, 9:] - q) @ pinv.T
    full = torch.cat([m2, t2], 1) * strength  # (13, 12): [constant; response to each unit field]
    const, lin = full[0], full[1:] - full[0]
    # output order: [0, M'01, M'02, t'0], [M'10, M'11, M'12, t'1], [M'20, M'21, M'22, t'2], M'00
    order = [0, 1, 2, 9, 3, 4, 5, 10, 6, 7, 8, 11, 0]
    lin, const = lin[:, order].T.contiguous(), const[order].clone()
    lin[0], const[0] = 0, 0  # luma's own term lives in the last row (applied at full size)
    return lin.float(), const.float()


def yuv_field(field: torch.Tensor, matrix: int, full_range: bool, strength: float = 1.0) -> np.ndarray:
    """An R'G'B' affine field (``(1, 12, h, w)``, full matrices ``M`` and offsets ``t``, colours in [0, 1])
    as the same maps on 8-bit YCbCr code values: ``M' = P⁻¹ M P``, ``t' = P⁻¹ (M q + t - q)`` where
    ``RGB = P · YCbCr + q``; scaled by ``strength`` (the caller adds ``(1 - strength)`` of the source).

    Returns ``(h, w, 13)`` float32, grouped for :meth:`LearnedLook.apply_yuv420`'s 4-channel products
    with ``(Y, Cb, Cr, 1)``: ``[0, M'01, M'02, t'0]`` (luma's chroma terms), ``[M'10, M'11, M'12, t'1]``
    (Cb), ``[M'20, M'21, M'22, t'2]`` (Cr), then ``M'00`` (luma's own gain).
    """
    lin, const = yuv_map(matrix, full_range, float(strength))
    _, _, h, w = field.shape
    flat = field[0].float().reshape(12, -1)
    out = torch.addmm(const[:, None], lin, flat)  # (13, h*w)
    return out.T.reshape(h, w, 13).contiguous().numpy()


def apply_coefficients_full(m: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """``out = M · base + t`` with a full (not identity-relative) matrix ``m`` ``(B, 12, H, W)``."""
    out = torch.empty_like(base)
    for c in range(3):  # fused multiply-adds: no (B, 3, 3, H, W) temporary
        o = out[:, c]
        torch.mul(m[:, 3 * c], base[:, 0], out=o)
        o.addcmul_(m[:, 3 * c + 1], base[:, 1]).addcmul_(m[:, 3 * c + 2], base[:, 2]).add_(m[:, 9 + c])
    return out
