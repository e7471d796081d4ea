"""A trained look, applied to any frame at full resolution.

A :class:`LearnedLook` is the fast mode's global 3D LUT (the starting point) plus an
:class:`~grade.model.hrnet.AffineHRNet` that predicts, at working resolution, a field of local
affine colour transforms on top of it: ``out = A(x) · base + b(x)`` with ``base = LUT(in)``.

The maths (the field's fit, application, gate, YCbCr form) is in :mod:`grade.model.affine`; this
module holds the look object and its frame-layout adapters.

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

import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from grade.errors import InputError
from grade.lut import PackedTable, YuvTable, apply_lut, apply_lut_u16, identity_lut, yuv_affine
from grade.model.affine import (
    apply_coefficients,
    fit_local_affine,
    level_gate,
    lut_levels,
    network_input,
    working_size,
    yuv_field,
)
from grade.model.hrnet import AffineHRNet
from grade.model.material import MaterialMaps, MaterialSettings
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
    # with the "base" guide: the share of the frame itself in what the field maps, ``g = base + mix ·
    # (frame - base)`` (the table of ``g`` is the LUT blended with the identity: one lookup a frame). The
    # global LUT's curvature is what a local affine map of the footage cannot hold; a field on ``g``
    # carries ``mix`` of it locally instead (measured over the sample pairs, 0 -> 0.2 -> 0.3: affine
    # 0.215 -> 0.165 -> 0.142, wash 0.95 -> 1.07 -> 1.17, look 1.79 -> 1.80 -> 1.80; looks saved before
    # it was a setting read back as 0)
    guide_mix: float = 0.2


def settings_from_json(text: str) -> LookSettings:
    """:class:`LookSettings` from their JSON form (``widths`` comes back as a list)."""
    raw = json.loads(text)
    material = MaterialSettings(**raw.pop("material", {}))
    kind = raw.pop("kind", "network")  # presets written before the material look have a network
    guide = raw.pop("guide", "base")  # ... and their field maps the LUT-graded frame
    raw.setdefault("guide_mix", 0.0)  # ... itself, not a blend with the footage
    if kind not in ("material", "network") or guide not in ("source", "base"):
        raise ValueError(f"unknown look kind {kind!r} / guide {guide!r}")
    return LookSettings(**{**raw, "widths": tuple(raw["widths"])}, kind=kind, material=material, guide=guide)


def build_model(settings: LookSettings, materials: int | None = None) -> AffineHRNet | MaterialMaps:
    """The trainable part of a look of ``settings.kind`` (untrained: the identity on the global grade)."""
    if settings.kind == "material":
        return MaterialMaps(settings.material, materials)
    return AffineHRNet(in_ch=8, widths=settings.widths, blocks=settings.blocks)


LOOK_FORMAT = "grade.learned-look"


LOOK_VERSION = 2  # 2: LookSettings.guide_mix


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
        self._guide: tuple[float, torch.Tensor] = (0.0, lut)

    @property
    def guide_mix(self) -> float:
        """The share of the footage in what the field maps (:attr:`LookSettings.guide_mix`, scaled by
        ``regional``: at 0 the look is exactly the global LUT, fast mode's look)."""
        return self.settings.guide_mix * self.regional if self.settings.guide == "base" else 0.0

    @property
    def guide_lut(self) -> torch.Tensor:
        """What the field maps, as a table of the footage ``(3, N, N, N)``: the LUT blended with the
        identity by :attr:`guide_mix` (the LUT itself at 0). Tables for :meth:`apply_pixels` and
        :meth:`apply_yuv420` are built from it."""
        mix = self.guide_mix
        if mix == 0:
            return self.lut
        if self._guide[0] != mix:
            self._guide = (mix, (1 - mix) * self.lut + mix * identity_lut(self.lut.shape[-1]).to(self.lut))
        return self._guide[1]

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
            if self.guide_mix:
                guide = base + self.guide_mix * (small - base)  # apply_lut(self.guide_lut, small)
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
        self,
        pixels: np.ndarray,
        table: PackedTable | None = None,
        stabiliser: Stabiliser | None = None,
        fit_on: np.ndarray | None = None,
        base_lut: torch.Tensor | None = None,
    ) -> np.ndarray:
        """Grade a decoded frame in the layout of :mod:`grade.io.video`: 8-bit RGBA ``(H, W, 4)`` (the
        global part through ``table``, a :class:`~grade.lut.PackedTable` of this look's LUT) or 16-bit
        RGB ``(H, W, 3)``. Returns the same layout.

        With a :class:`~grade.temporal.Stabiliser` (frames of one shot, in order), the working-resolution
        field is blended with the previous frame's, motion-compensated (no flicker).

        ``fit_on`` and ``base_lut`` grade a frame that is not in the look's own space (colour-managed
        footage, :class:`grade.colourgrade.ManagedGrade`): ``fit_on`` is the frame in the look's space at any
        size down to the working one (same layout; the field is fitted on it, shrunk), and the base comes
        from ``table`` (8-bit) or ``base_lut`` (16-bit), tables of :attr:`guide_lut` composed with the
        frame's transform. Only with the ``"base"`` guide at strength 1, which never see the frame itself.
        """
        deep = pixels.dtype == np.uint16
        scale = 65535.0 if deep else 255.0
        rgb = pixels[..., :3]
        if fit_on is not None and (self.settings.guide != "base" or self.strength != 1.0):
            raise ValueError("fit_on needs the base guide at strength 1")
        if fit_on is not None and (table if not deep else base_lut) is None:
            raise ValueError("fit_on needs the frame's own base table")  # else the base would be of the wrong space
        h, w = working_size(rgb.shape[0], rgb.shape[1], self.settings.working_side)
        seen = pixels if fit_on is None else fit_on
        shrunk = cv2.resize(seen, (w, h), interpolation=cv2.INTER_AREA)[..., :3]  # contiguous input: no copy
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
        elif table is not None and not deep:  # the global part through the 8-bit table, as a planar view
            through = table.apply_rgba(pixels)  # (no split into planes: ~9 ms of copies a 1080p frame)
            alpha = np.ascontiguousarray(through[..., 3])
            base = torch.from_numpy(through).permute(2, 0, 1)[None, :3]
        elif deep:  # the global part as 16-bit codes (OpenColorIO's op: ~4x grid_sample's speed)
            lut = self.guide_lut if base_lut is None else base_lut
            base = torch.from_numpy(np.stack(cv2.split(apply_lut_u16(lut, rgb))))[None]
        frame = None
        if (base is None or self.strength != 1.0) and self.settings.guide != "source":
            frame = torch.from_numpy(np.stack(cv2.split(rgb)[:3]))[None]  # planar (1, 3, H, W)
        if base is not None and frame is None and not deep and self.strength == 1.0:  # 8-bit codes, strength 1
            if table is None:  # the "source" guide: alpha (RGBA frames) as it came
                alpha = pixels[..., 3] if pixels.shape[2] == 4 else None
            return cv2.merge([*self.apply_codes(base, field), *([] if alpha is None else [alpha])])
        else:
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

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_buffers", None)  # per-thread scratch planes: rebuilt where the look is used
        return state

    def _scratch(self, h: int, w: int) -> tuple[list[np.ndarray], torch.Tensor]:
        """This thread's 12 upsampled field planes ``(H, W)`` and the base's codes as floats ``(3, H, W)``
        (float32), kept between frames: fresh ones cost page faults on ~120 MiB a 1080p frame."""
        buffers = self.__dict__.setdefault("_buffers", {})
        key = threading.get_ident()
        held = buffers.get(key)
        if held is None or held[1].shape[-2:] != (h, w):
            held = buffers[key] = ([np.empty((h, w), np.float32) for _ in range(12)], torch.empty((3, h, w)))
        return held

    def apply_codes(self, base: torch.Tensor, field: torch.Tensor) -> np.ndarray:
        """:meth:`apply_field` at ``strength`` 1 on 8-bit code values: ``base`` ``(1, 3, H, W)`` uint8 (the
        frame through the LUT), ``field`` ``(1, 12, h, w)``; returns uint8 planes ``(3, H, W)``. The
        offsets are scaled to codes at working resolution, so the full-resolution frame is never
        converted to [0, 1] floats (within one code of :meth:`apply_field`)."""
        _, _, hh, ww = base.shape
        up, b = self._scratch(hh, ww)
        planes = field[0].float().numpy().copy()
        planes[9:] *= 255.0
        with torch.inference_mode():
            for k in range(12):
                cv2.resize(planes[k], (ww, hh), dst=up[k], interpolation=cv2.INTER_LINEAR)
            u = [torch.from_numpy(x) for x in up]
            b.copy_(base[0])  # the codes as floats once: each multiply-add promoting uint8 planes cost ~20 % more
            graded = torch.empty((3, hh, ww), dtype=torch.uint8)
            for c in range(3):  # out = M · base + t, as fused multiply-adds, over the first coefficient's plane
                o = u[3 * c].mul_(b[0]).addcmul_(u[3 * c + 1], b[1]).addcmul_(u[3 * c + 2], b[2]).add_(u[9 + c])
                graded[c].copy_(o.clamp_(0, 255).add_(0.5))  # truncated: rounded
            return graded.numpy()

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
                b = apply_lut(self.guide_lut, frame.float() / scale)[0]
            out = torch.empty((3, hh, ww), dtype=torch.float32)
            for c in range(3):  # out = M · base + t, as fused multiply-adds
                o = out[c]
                torch.mul(up[3 * c], b[0], out=o)
                o.addcmul_(up[3 * c + 1], b[1]).addcmul_(up[3 * c + 2], b[2]).add_(up[9 + c])
            if self.strength != 1.0:  # --strength blends the whole grade with the untouched frame
                src = frame[0].float() / scale if frame is not None else b
                out = src + self.strength * (out - src)
            return out.clamp_(0, 1)[None]
