"""A trained look, applied to any frame at full resolution.

A :class:`LearnedLook` is the fast mode's global 3D LUT (the starting point) plus an
:class:`~grade.model.hrnet.AffineHRNet` that predicts, at working resolution, a field of local
affine colour transforms on top of it: ``out = A(x) · base + b(x)`` with ``base = LUT(in)``.

At full resolution the field is carried by bilateral guided upsampling (Chen et al. 2016): at
working resolution, a local affine map base -> output is fitted in small windows (box filters,
ridge-regularised), averaged, upsampled bilinearly and applied to the full-resolution base.
The result is locally an affine function of the frame's own colours (photoreal by construction),
follows its edges, and costs a fixed amount per pixel whatever the network does.

8-bit 4:2:0 video is graded in its own YCbCr (:meth:`LearnedLook.apply_yuv420`): the field, an
affine map in R'G'B', is re-expressed on code values and applied to the table-graded planes, so the
frame is never converted to RGB and back (at 1080p those two conversions cost more than the grade).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import kornia.color as KC
import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from grade.errors import InputError
from grade.lut import PackedTable, YuvTable, apply_lut, yuv_affine
from grade.model.hrnet import AffineHRNet
from grade.model.material import MaterialMaps, MaterialSettings
from grade.model.material import box_filter as _box
from grade.temporal import Stabiliser


@dataclass(frozen=True)
class LookSettings:
    """How a learned look is built. ``kind``: ``"material"`` (the default: one colour map per material,
    :mod:`grade.model.material`) or ``"network"`` (an HRNet predicting a free affine field; the looks of
    grade 0.1's presets, still read and applied)."""

    working_side: int = 192  # long side the look sees
    widths: tuple[int, ...] = (16, 32, 64)  # network kind only
    blocks: int = 1  # network kind only
    fit_radius: int = 2  # window of the guided upsampling fit, at working resolution
    fit_eps: float = 1e-3
    kind: str = "material"
    material: MaterialSettings = MaterialSettings()
    # what the full-resolution field is an affine map of: "source" (the frame itself: the whole grade,
    # global LUT included, is locally affine in the footage's colours, as in bilateral guided upsampling)
    # or "base" (the LUT-graded frame: grade 0.1's network looks)
    guide: str = "base"


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
    moments = _box(torch.cat([src, dst, src[:, ii] * src[:, jj], cross], 1), radius)
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
    return _box(torch.cat([m, t], 1), radius)


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


def settings_from_json(text: str) -> LookSettings:
    """:class:`LookSettings` from their JSON form (``widths`` comes back as a list)."""
    raw = json.loads(text)
    material = MaterialSettings(**raw.pop("material", {}))
    kind = raw.pop("kind", "network")  # presets written before the material look have a network
    guide = raw.pop("guide", "base")  # ... and their field maps the LUT-graded frame
    if kind not in ("material", "network") or guide not in ("source", "base"):
        raise ValueError(f"unknown look kind {kind!r} / guide {guide!r}")
    return LookSettings(**{**raw, "widths": tuple(raw["widths"])}, kind=kind, material=material, guide=guide)


def build_model(settings: LookSettings, materials: int | None = None) -> AffineHRNet | MaterialMaps:
    """The trainable part of a look of ``settings.kind`` (untrained: the identity on the global grade)."""
    if settings.kind == "material":
        return MaterialMaps(settings.material, materials)
    return AffineHRNet(in_ch=8, widths=settings.widths, blocks=settings.blocks)


LOOK_FORMAT = "grade.learned-look"
LOOK_VERSION = 1


class LearnedLook:
    """A global LUT and a trained model on top of it (per-material maps, or a coefficient network); call
    :meth:`apply` on frames. ``strength`` blends the whole grade with the source; ``regional`` scales the
    regional part on top of the global grade (0: the global look of fast mode, 1: the full look)."""

    def __init__(
        self,
        lut: torch.Tensor,
        net: AffineHRNet | MaterialMaps,
        settings: LookSettings,
        strength: float = 1.0,
        regional: float = 1.0,
    ) -> None:
        kind = "material" if isinstance(net, MaterialMaps) else "network"
        if settings.kind != kind:  # the settings describe the model they come with
            settings = replace(settings, kind=kind)
        self.lut, self.net, self.settings, self.strength = lut, net.eval(), settings, strength
        self.regional = regional
        self.levels = lut_levels(lut)
        self._ones_plane = np.empty(0, np.uint8)

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
        n = len(prefix) + 4
        state = {k[n:]: v for k, v in tensors.items() if k.startswith(f"{prefix}net.")}
        materials = state["maps"].shape[0] if settings.kind == "material" and "maps" in state else None
        if materials is not None and not 1 <= materials <= 64:
            raise RuntimeError(f"{materials} materials")
        net = build_model(settings, materials)
        net.load_state_dict(state)
        if not all(torch.isfinite(v).all() for v in net.state_dict().values()):
            raise RuntimeError("non-finite weights")
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
            gate = level_gate(base, self.levels)
            if isinstance(self.net, MaterialMaps):
                out = self.net(base, self.regional, gate)
            else:
                coef = self.net(network_input(small, base))
                out = base + gate * (apply_coefficients(coef * self.regional, base) - base)
            # fit the *correction*: the ridge then pulls flat windows toward the identity (texture kept),
            # not toward a constant colour
            guide = small if self.settings.guide == "source" else base
            field = fit_local_affine(guide, out - guide, self.settings.fit_radius, self.settings.fit_eps)
            field[:, 0] += 1
            field[:, 4] += 1
            field[:, 8] += 1
            return field, base

    def apply(self, frame: torch.Tensor) -> torch.Tensor:
        """Grade a full-resolution frame ``(1, 3, H, W)`` in [0, 1]; returns ``(1, 3, H, W)``."""
        field, _ = self.field(frame)
        return self.apply_field(frame, field, base=frame if self.settings.guide == "source" else None)

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
        small = torch.from_numpy(shrunk.astype(np.float32) / scale).permute(2, 0, 1)[None]
        if stabiliser is not None:  # it runs the network only when it cannot carry the previous field
            luma = cv2.cvtColor(np.ascontiguousarray(shrunk), cv2.COLOR_RGB2GRAY)
            field = stabiliser.step(luma, lambda: self.field_small(small)[0])  # 8 or 16-bit luma
        else:
            field, _ = self.field_small(small)
        base = None
        if self.settings.guide == "source":
            table = None
            base = torch.from_numpy(np.stack(cv2.split(rgb)[:3]))[None]  # the field maps the frame itself
        elif table is not None and not deep:  # the global part through the 8-bit table, as planes
            base = torch.from_numpy(np.stack(cv2.split(table.apply_rgba(pixels))[:3]))[None]
        frame = None
        if (base is None or self.strength != 1.0) and self.settings.guide != "source":
            frame = torch.from_numpy(np.stack(cv2.split(rgb)[:3]))[None]  # planar (1, 3, H, W)
        out = self.apply_field(frame, field, base=base, scale=scale)
        with torch.inference_mode():
            planes = out[0].mul_(scale).add_(0.5).to(torch.int32 if deep else torch.uint8).numpy()
        if deep:
            return cv2.merge([p.astype(np.uint16) for p in planes])
        graded = pixels.copy()
        graded[..., :3] = cv2.merge(list(planes))
        return graded

    def apply_yuv420(
        self,
        planes: np.ndarray,
        height: int,
        width: int,
        table: YuvTable,
        matrix: int,
        full_range: bool,
        stabiliser: Stabiliser | None = None,
        defer: bool = False,
    ) -> np.ndarray | Callable[[], np.ndarray]:
        """Grade an 8-bit 4:2:0 frame in its own YCbCr, as PyAV lays it out (``(H * 3 // 2, W)`` uint8, even
        ``H`` and ``W``; ``table`` a :class:`~grade.lut.YuvTable` of this look's LUT for the source's
        ``matrix`` and range). Returns the same layout; with ``defer``, a function that returns it: the
        field (network, stabiliser: frame after frame) is computed now, the full-resolution apply (which
        does not depend on other frames) when the function is called, on any thread.

        The same grade as :meth:`apply_pixels` without the two RGB conversions of the frame (which cost
        more than the grade): the network sees the frame at working resolution (converted to RGB there),
        and its field of affine maps base -> graded, an affine map in R'G'B', is re-expressed in code
        values (``M' = P⁻¹ M P``, ``t' = P⁻¹ (M q + t - q)`` for ``RGB = P · YCbCr + q``) and applied to
        the table-graded base: luma at full resolution, chroma at half (with the block's mean luma).
        Values are clipped to the code range, not to the RGB gamut.
        """
        h2, w2 = height // 2, width // 2
        y = planes[:height]
        chroma = planes[height:].reshape(2, h2, w2)
        hs, ws = working_size(height, width, self.settings.working_side)
        small_yuv = np.stack(
            [cv2.resize(p, (ws, hs), interpolation=cv2.INTER_AREA) for p in (y, chroma[0], chroma[1])], -1
        )
        p, q = yuv_affine(matrix, full_range)
        small = (torch.from_numpy(small_yuv.astype(np.float32)) @ p.T.float() + q.float()).clamp_(0, 1)
        small = small.permute(2, 0, 1)[None].contiguous()
        if stabiliser is not None:  # it runs the network only when it cannot carry the previous field
            luma = (small[0, 0] * 0.299 + small[0, 1] * 0.587 + small[0, 2] * 0.114).mul_(255).add_(0.5)
            field = stabiliser.step(luma.to(torch.uint8).numpy(), lambda: self.field_small(small)[0])
        else:
            field, _ = self.field_small(small)
        coef = yuv_field(field, matrix, full_range, self.strength)  # (hs, ws, 13) float32
        if defer:
            return lambda: self._apply_yuv420(planes, height, width, table, coef)
        return self._apply_yuv420(planes, height, width, table, coef)

    def _apply_yuv420(
        self, planes: np.ndarray, height: int, width: int, table: YuvTable, coef: np.ndarray
    ) -> np.ndarray:
        """:meth:`apply_yuv420`'s full-resolution part, with the code-value field ``coef`` of :func:`yuv_field`."""
        h2, w2 = height // 2, width // 2
        y = planes[:height]
        chroma = planes[height:].reshape(2, h2, w2)
        base = planes if self.settings.guide == "source" else table.apply_yuv420(planes, height, width)
        by, bc = base[:height], base[height:].reshape(2, h2, w2)
        # per half-resolution sample: x = (mean luma of the block, Cb, Cr, 1), and each output is a
        # dot product of x with 4 upsampled coefficients: 4-channel images, one resize and one multiply
        # each; the channel sum is an area resize of the interleaved products to a quarter of the
        # width (the mean of 4 neighbours: the products are scaled by 4 to make it their sum)
        x = cv2.merge([cv2.resize(by, (w2, h2), interpolation=cv2.INTER_AREA), bc[0], bc[1], self._ones(h2, w2)])
        out = np.empty_like(planes)
        oc = out[height:].reshape(2, h2, w2)
        terms = []
        for k in range(3):  # luma's chroma terms and offset (its luma term is applied at full size), Cb, Cr
            k4 = np.ascontiguousarray(coef[..., 4 * k : 4 * k + 4])
            up = cv2.resize(k4, (w2, h2), interpolation=cv2.INTER_LINEAR)
            prod = cv2.multiply(up, x, scale=4.0, dtype=cv2.CV_32F).reshape(h2, 4 * w2)
            terms.append(cv2.resize(prod, (w2, h2), interpolation=cv2.INTER_AREA))
        for c in (1, 2):
            if self.strength != 1.0:  # the rest of the blend with the source
                terms[c] = cv2.scaleAdd(chroma[c - 1].astype(np.float32), 1.0 - self.strength, terms[c])
            cv2.add(terms[c], 0.0, dst=oc[c - 1], dtype=cv2.CV_8U)  # rounds and saturates
        m00 = cv2.resize(np.ascontiguousarray(coef[..., 12]), (width, height), interpolation=cv2.INTER_LINEAR)
        c0 = cv2.resize(terms[0], (width, height), interpolation=cv2.INTER_LINEAR)
        if self.strength != 1.0:
            c0 = cv2.scaleAdd(y.astype(np.float32), 1.0 - self.strength, c0)
        cv2.add(cv2.multiply(by, m00, dtype=cv2.CV_32F), c0, dst=out[:height], dtype=cv2.CV_8U)
        return out

    def _ones(self, h: int, w: int) -> np.ndarray:
        ones = self._ones_plane
        if ones.shape != (h, w):  # kept between frames (read-only: threads may share it)
            ones = self._ones_plane = np.ones((h, w), np.uint8)
        return ones

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
                b = base[0].float().div(scale)
            else:
                b = apply_lut(self.lut, frame.float() / scale)[0]
            out = torch.empty((3, hh, ww), dtype=torch.float32)
            for c in range(3):  # out = M · base + t, as fused multiply-adds
                o = out[c]
                torch.mul(up[3 * c], b[0], out=o)
                o.addcmul_(up[3 * c + 1], b[1]).addcmul_(up[3 * c + 2], b[2]).add_(up[9 + c])
            if self.strength != 1.0:  # --strength blends the whole grade with the untouched frame
                src = frame[0].float() / scale if frame is not None else b
                out = src + self.strength * (out - src)
            return out.clamp_(0, 1)[None]


@functools.lru_cache(maxsize=16)
def _yuv_map(matrix: int, full_range: bool, strength: float) -> tuple[torch.Tensor, torch.Tensor]:
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
    lin, const = _yuv_map(matrix, full_range, float(strength))
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
