"""A trained look, applied to any frame at full resolution.

A :class:`LearnedLook` is the fast mode's global 3D LUT (the starting point) plus an
:class:`~grade.model.hrnet.AffineHRNet` that predicts, at working resolution, a field of local
affine colour transforms on top of it: ``out = A(x) · base + b(x)`` with ``base = LUT(in)``.

At full resolution the field is carried by bilateral guided upsampling (Chen et al. 2016): at
working resolution, a local affine map base -> output is fitted in small windows (box filters,
ridge-regularised), averaged, upsampled bilinearly and applied to the full-resolution base.
The result is locally an affine function of the frame's own colours (photoreal by construction),
follows its edges, and costs a fixed amount per pixel whatever the network does; bands of rows
keep memory bounded at 4K.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import kornia.filters as KF
import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from grade.errors import InputError
from grade.lut import PackedTable, apply_lut
from grade.model.hrnet import AffineHRNet
from grade.temporal import Stabiliser


@dataclass(frozen=True)
class LookSettings:
    working_side: int = 192  # long side the network sees (trains in ~20 s on 2 cores)
    widths: tuple[int, ...] = (16, 32, 64)
    blocks: int = 1
    fit_radius: int = 2  # window of the guided upsampling fit, at working resolution
    fit_eps: float = 1e-3


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


def _box(t: torch.Tensor, r: int) -> torch.Tensor:
    return KF.box_blur(t, (2 * r + 1, 2 * r + 1), border_type="reflect")


def fit_local_affine(src: torch.Tensor, dst: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """Per-window ridge-regularised affine fit ``dst ≈ M · src + t`` (the guided filter, in colour).

    Args:
        src, dst: ``(1, 3, h, w)``.
    Returns:
        ``(1, 12, h, w)``: ``M`` row-major (9) then ``t`` (3), averaged over windows.
    """
    _, _, h, w = src.shape
    ms, md = _box(src, radius), _box(dst, radius)
    ss = torch.stack([_box(src[:, i : i + 1] * src[:, j : j + 1], radius)[:, 0] for i in range(3) for j in range(3)], 1)
    cov = ss - torch.stack([ms[:, i] * ms[:, j] for i in range(3) for j in range(3)], 1)
    cov = cov.permute(0, 2, 3, 1).reshape(-1, 3, 3) + eps * torch.eye(3, dtype=src.dtype, device=src.device)
    sd = torch.stack([_box(src[:, i : i + 1] * dst, radius) for i in range(3)], 1)  # (1, in, out, h, w)
    csd = (sd - ms[:, :, None] * md[:, None]).permute(0, 3, 4, 1, 2).reshape(-1, 3, 3)
    m = torch.linalg.solve(cov, csd).transpose(1, 2)  # (P, out, in)
    m = m.reshape(1, h, w, 9).permute(0, 3, 1, 2)
    t = md - (m.reshape(1, 3, 3, h, w) * ms[:, None]).sum(2)
    return _box(torch.cat([m, t], 1), radius)


def settings_from_json(text: str) -> LookSettings:
    """:class:`LookSettings` from their JSON form (``widths`` comes back as a list)."""
    raw = json.loads(text)
    return LookSettings(**{**raw, "widths": tuple(raw["widths"])})


LOOK_FORMAT = "grade.learned-look"
LOOK_VERSION = 1


class LearnedLook:
    """A global LUT and a trained coefficient network; call :meth:`apply` on frames."""

    def __init__(self, lut: torch.Tensor, net: AffineHRNet, settings: LookSettings, strength: float = 1.0) -> None:
        self.lut, self.net, self.settings, self.strength = lut, net.eval(), settings, strength

    def tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """The look's tensors (global LUT and network weights), names prefixed with ``prefix``."""
        out = {f"{prefix}lut": self.lut.contiguous()}
        out.update({f"{prefix}net.{k}": v.detach().contiguous() for k, v in self.net.state_dict().items()})
        return out

    @classmethod
    def from_tensors(
        cls, tensors: dict[str, torch.Tensor], settings: LookSettings, prefix: str = "", strength: float = 1.0
    ) -> LearnedLook:
        """Rebuild a look from :meth:`tensors`. Raises ``KeyError``/``RuntimeError`` when they do not fit."""
        net = AffineHRNet(in_ch=8, widths=settings.widths, blocks=settings.blocks)
        n = len(prefix) + 4
        net.load_state_dict({k[n:]: v for k, v in tensors.items() if k.startswith(f"{prefix}net.")})
        lut = tensors[f"{prefix}lut"].float()
        if lut.dim() != 4 or lut.shape[0] != 3 or not (lut.shape[1] == lut.shape[2] == lut.shape[3] >= 2):
            raise RuntimeError(f"LUT has shape {tuple(lut.shape)}")
        return cls(lut, net, settings, strength)

    def save(self, path: str | Path) -> None:
        """Write the look as one safetensors file (tensors and a JSON header; nothing executable)."""
        meta = {"format": LOOK_FORMAT, "version": str(LOOK_VERSION), "settings": json.dumps(asdict(self.settings))}
        save_file(self.tensors(), str(path), metadata=meta)

    @classmethod
    def load(cls, path: str | Path, strength: float = 1.0) -> LearnedLook:
        """Read a look written by :meth:`save`.

        Raises:
            InputError: not a look file, damaged, or written by a newer version.
        """
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise InputError(f"not a readable look file: {path} ({e})") from None
        if meta.get("format") != LOOK_FORMAT:
            raise InputError(f"not a grade look file: {path}")
        try:
            if int(meta.get("version", "0")) > LOOK_VERSION:
                raise InputError(f"look file {path} needs a newer grade (format version {meta['version']})")
            return cls.from_tensors(tensors, settings_from_json(meta["settings"]), strength=strength)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise InputError(f"damaged look file: {path} ({str(e)[:200]})") from None

    def field(self, frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Working-resolution fit for a full-resolution ``(1, 3, H, W)`` frame: ``(1, 12, h, w)`` affine field
        mapping the *base* (LUT-graded) colours to the graded ones, and the small base."""
        h, w = working_size(frame.shape[-2], frame.shape[-1], self.settings.working_side)
        return self.field_small(F.interpolate(frame, size=(h, w), mode="area"))

    def field_small(self, small: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`field` for a frame already at working resolution ``(1, 3, h, w)``."""
        base = apply_lut(self.lut, small)
        with torch.inference_mode():
            coef = self.net(network_input(small, base))
            out = apply_coefficients(coef, base)
            # fit the *correction*: the ridge then pulls flat windows toward the identity (texture kept),
            # not toward a constant colour
            field = fit_local_affine(base, out - base, self.settings.fit_radius, self.settings.fit_eps)
            field[:, 0] += 1
            field[:, 4] += 1
            field[:, 8] += 1
            return field, base

    def apply(self, frame: torch.Tensor) -> torch.Tensor:
        """Grade a full-resolution frame ``(1, 3, H, W)`` in [0, 1]; returns ``(1, 3, H, W)``."""
        field, _ = self.field(frame)
        return self.apply_field(frame, field)

    def apply_pixels(
        self, pixels: np.ndarray, table: PackedTable | None = None, stabiliser: Stabiliser | None = None
    ) -> np.ndarray:
        """Grade a decoded frame in the layout of :mod:`grade.io.video`: 8-bit RGBA ``(H, W, 4)`` (the
        global part through ``table``, a :class:`~grade.lut.PackedTable` of this look's LUT) or 16-bit
        RGB ``(H, W, 3)``. Returns the same layout.

        With a :class:`~grade.temporal.Stabiliser` (frames of one shot, in order), the working-resolution
        field is blended with the previous frame's, motion-compensated (no flicker).
        """
        deep = pixels.dtype == np.uint16
        scale = 65535.0 if deep else 255.0
        rgb = pixels[..., :3]
        h, w = working_size(rgb.shape[0], rgb.shape[1], self.settings.working_side)
        shrunk = cv2.resize(pixels, (w, h), interpolation=cv2.INTER_AREA)[..., :3]  # contiguous input: no copy
        small = torch.from_numpy(shrunk.astype(np.float32) / scale)
        field, _ = self.field_small(small.permute(2, 0, 1)[None])
        if stabiliser is not None:
            luma = cv2.cvtColor(np.ascontiguousarray(shrunk), cv2.COLOR_RGB2GRAY)
            field = stabiliser.step(luma, field)  # 8 or 16-bit luma
        base = None
        if table is not None and not deep:  # the global part through the 8-bit table, as planes
            base = torch.from_numpy(np.stack(cv2.split(table.apply_rgba(pixels))[:3]))[None]
        frame = None
        if base is None or self.strength != 1.0:
            frame = torch.from_numpy(np.stack(cv2.split(rgb)[:3]))[None]  # planar (1, 3, H, W)
        out = self.apply_field(frame, field, base=base, scale=scale)
        with torch.inference_mode():
            planes = out[0].mul_(scale).add_(0.5).to(torch.int32 if deep else torch.uint8).numpy()
        if deep:
            return cv2.merge([p.astype(np.uint16) for p in planes])
        graded = pixels.copy()
        graded[..., :3] = cv2.merge(list(planes))
        return graded

    def apply_field(
        self, frame: torch.Tensor | None, field: torch.Tensor, base: torch.Tensor | None = None, scale: float = 1.0
    ) -> torch.Tensor:
        """Apply a working-resolution field ``(1, 12, h, w)`` to a full-resolution frame ``(1, 3, H, W)``.

        ``frame`` (and ``base``, the frame through the LUT, when the caller has it; then ``frame`` is only
        needed for ``strength`` < 1) may hold integer code values: they are divided by ``scale``. The
        field is upsampled plane by plane with OpenCV's bilinear resize (the geometry of
        ``F.interpolate(align_corners=False)``, several times faster here); peak extra memory is the 12
        upsampled planes (~100 MiB at 1080p, ~400 MiB at 4K).
        """
        _, _, hh, ww = (base if base is not None else frame).shape
        with torch.inference_mode():
            planes = field[0].float().numpy()
            up = [torch.from_numpy(cv2.resize(planes[k], (ww, hh), interpolation=cv2.INTER_LINEAR)) for k in range(12)]
            if base is not None:
                b = base[0].float().div_(scale)
            else:
                b = apply_lut(self.lut, frame.float() / scale)[0]
            out = torch.empty((3, hh, ww), dtype=torch.float32)
            for c in range(3):  # out = M · base + t, as fused multiply-adds
                o = out[c]
                torch.mul(up[3 * c], b[0], out=o)
                o.addcmul_(up[3 * c + 1], b[1]).addcmul_(up[3 * c + 2], b[2]).add_(up[9 + c])
            if self.strength != 1.0:  # --strength blends the whole grade with the untouched frame
                src = frame[0].float() / scale
                out = src + self.strength * (out - src)
            return out.clamp_(0, 1)[None]


def apply_coefficients_full(m: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """``out = M · base + t`` with a full (not identity-relative) matrix ``m`` ``(B, 12, H, W)``."""
    out = torch.empty_like(base)
    for c in range(3):  # fused multiply-adds: no (B, 3, 3, H, W) temporary
        o = out[:, c]
        torch.mul(m[:, 3 * c], base[:, 0], out=o)
        o.addcmul_(m[:, 3 * c + 1], base[:, 1]).addcmul_(m[:, 3 * c + 2], base[:, 2]).add_(m[:, 9 + c])
    return out
