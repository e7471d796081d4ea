"""A shot's grade with the colour pipeline folded into its tables (:meth:`ColourPipeline.managed`).

Colour management per frame is two more lookups (input -> working, working -> output), each a trilinear
pass over every pixel: ~2.5 ms a 1080p 8-bit RGBA frame (a table of every code), ~22 ms a 16-bit one
(OpenColorIO's ``Lut3D`` op, :class:`grade.lut.U16Table`). A fast or LUT look is itself
a 3D table, so the three are composed once per shot into one table from input code values to output
code values (:meth:`ColourPipeline.compose`): a frame costs the look's own lookup, as without colour
management, and 8-bit 4:2:0 frames stay in their YCbCr when the output keeps the source's matrix.

A learned look is a base table and a per-pixel affine field on top. To a display output its input
transform is folded into the base table (``folded``): a frame costs one lookup for the base, the field's
fit on the frame brought to the working space at half size (a quarter of the pixels through the input
table), and the output lookup. Its field is fitted on the frame shrunk to working resolution, and a log
picture shrunk by 10 and converted after is not the working picture shrunk: the half-size step keeps
that error small (16-bit S-Log3 at 1080p against OCIO's exact chain: mean ΔE2000 0.10, against 0.16
shrunk at once and 0.08 through two lookups; at 8 bits 0.83 against 1.05, as no 8-bit working frame
is rounded). A scene-referred output keeps the two lookups around the grade (``separate``): pixels
whose working values the working space's [0, 1] clipped get the clipped part back, and pixels where
either baked table is more than a code off go through OCIO's exact processors
(:meth:`ColourPipeline.outside`, ~20 / ~90 ms); so does every look when frames leave as float (a video
pulled into scene-linear EXR frames, :attr:`ColourPipeline.float_frames`), and so do a look at
``--strength`` below 1 (its blend with the footage needs the working frame) and a look with the "source"
guide (whose field maps the frame itself).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

import cv2
import numpy as np
import torch

from grade.colourspace import ColourPipeline
from grade.lut import PackedTable, YuvTable, apply_lut, apply_lut_u16
from grade.model.affine import working_size
from grade.shotgrade import ShotGrade


class ManagedGrade:
    """``grade`` (a :class:`~grade.shotgrade.ShotGrade` in the working space) on frames in the input space,
    graded into the output space: the render's interface of a shot grade (``prepare``, ``grade``, ``black``,
    ``release``, ``stabiliser``). ``kind`` says how: ``"composed"`` (one table: fast and LUT looks),
    ``"folded"`` (a learned look to a display output: one table from input codes to the look's base, the
    field fitted on the frame brought to the working space at half size, and the output lookup) or
    ``"separate"`` (two lookups around the grade: other learned looks)."""

    def __init__(self, grade: ShotGrade, colour: ColourPipeline) -> None:
        # no strong reference to ``grade``: the pipeline keeps this object while ``grade`` lives, by a weak key
        self.colour, self._black = colour, grade.black()
        self._source = weakref.ref(grade)
        self.learned = grade.learned
        self.stabiliser = grade.stabiliser
        learned = grade.learned
        if colour.float_frames:  # float frames out (a scene-linear EXR pull): the working frame, exactly out
            self.kind = "separate"
        elif learned is None:
            self.kind = "composed"
        elif learned.settings.guide == "base" and learned.strength == 1.0 and not colour.scene_output:
            self.kind = "folded"
        else:
            self.kind = "separate"
        self._look = grade.lut if self.kind == "composed" else None  # the strength is already in grade.lut
        self._base: torch.Tensor | None = None  # folded: the look's base table from input codes
        self._lut: torch.Tensor | None = None
        self._lock = threading.Lock()
        self._table: PackedTable | YuvTable | None = None
        self._yuv = (1, False)
        views = getattr(grade, "views", None)
        if views is not None:
            views.append(self)  # the grade's release() frees this one's tables too

    @property
    def lut(self) -> torch.Tensor | None:
        """The composed table ``(3, 129, 129, 129)`` from input to output code values (None: ``folded``, ``separate``),
        built on first use (~0.7 s, 25 MiB) and dropped by :meth:`release`."""
        if self._look is None:
            return None
        with self._lock:
            if self._lut is None:
                self._lut = self.colour.compose(self._look)
            return self._lut

    @property
    def base_lut(self) -> torch.Tensor | None:
        """``folded``: the learned look's base (what its field maps) as a table ``(3, 129, 129, 129)`` of
        input code values (:meth:`ColourPipeline.compose_input`), built on first use; else None."""
        if self.kind != "folded":
            return None
        with self._lock:
            if self._base is None:
                self._base = self.colour.compose_input(self.learned.guide_lut)
            return self._base

    def prepare(self, native: bool, matrix: int, full_range: bool, reset: bool = True) -> None:
        """Start a shot (see :meth:`ShotGrade.prepare`): the composed table expanded for 8-bit RGBA frames,
        or with ``native`` for 4:2:0 planes (OCIO's chain evaluated at the (Y, Cb, Cr) grid itself,
        :meth:`YuvTable.from_colours`); the folded path's base table expanded for 8-bit RGBA frames (never
        ``native``: a learned look needs RGB); the separate path prepares the grade itself."""
        if self.kind == "separate":
            self._source().prepare(native, matrix, full_range, reset)
            return
        if self.kind == "folded":
            if reset and self.stabiliser is not None:
                self.stabiliser.reset()
            if not isinstance(self._table, PackedTable):
                self._table = PackedTable(self.base_lut)
            return
        if isinstance(self._table, YuvTable if native else PackedTable) and self._yuv == (matrix, full_range):
            return
        self._yuv = (matrix, full_range)
        if native:
            self._table = YuvTable.from_colours(lambda rgb: self.colour.exact(self._look, rgb), matrix, full_range)
        else:
            self._table = PackedTable(self.lut)

    def release(self) -> None:
        """Free the lookup tables: this one's and the grade's (:meth:`ShotGrade.release` calls
        :meth:`release_tables` of every view of it)."""
        source = self._source()
        if source is not None:
            source.release()
        self.release_tables()

    def release_tables(self) -> None:
        self._table, self._lut, self._base = None, None, None

    def black(self) -> np.ndarray:
        """What the grade makes of black, in the output space: R'G'B' ``(3,)`` in [0, 1]."""
        black = torch.from_numpy(self._black).float().reshape(1, 3, 1, 1).clamp(0, 1)
        with torch.inference_mode():
            out = apply_lut(self.colour.from_working, black)
        return out.reshape(3).double().numpy()

    def grade(
        self, pixels: np.ndarray, height: int, width: int, defer: bool = False
    ) -> np.ndarray | Callable[[], np.ndarray]:
        """Grade one decoded input-space frame (layouts of :mod:`grade.io.video`) into the output space;
        with ``defer`` perhaps a function that finishes it (as :meth:`ShotGrade.grade`)."""
        if self.kind == "composed":
            if pixels.dtype == np.uint16:
                return apply_lut_u16(self.lut, pixels)
            if isinstance(self._table, YuvTable):
                return self._table.apply_yuv420(pixels, height, width)
            return self._table.apply_rgba(pixels)
        colour = self.colour
        if self.kind == "folded":
            # one lookup from input codes to the look's base, and the field fitted on the frame brought to the
            # working space at half size (shrunk in the input space by 2 only: a log picture averaged over
            # the working resolution's whole blocks is not the working picture averaged; measured on 16-bit
            # S-Log3 at 1080p, mean ΔE2000 0.10 from OCIO's exact chain, 0.16 shrunk at once, 0.08 separate)
            h, w = working_size(height, width, self.learned.settings.working_side)
            half = (width // 2, height // 2)
            mid = cv2.resize(pixels, half, interpolation=cv2.INTER_AREA) if half[0] >= w and half[1] >= h else pixels
            seen = colour.frame_in(np.ascontiguousarray(mid))
            table = None
            if pixels.dtype == np.uint8:
                table = self._table  # held locally: release() on another thread must not empty it midway
                if not isinstance(table, PackedTable):  # a frame before prepare()
                    table = self._table = PackedTable(self.base_lut)
            out = self.learned.apply_pixels(pixels, table, self.stabiliser, fit_on=seen, base_lut=self.base_lut)
            return colour.frame_out(out)
        working = colour.frame_in(pixels)
        outside = colour.outside(pixels, working)  # what the working space's [0, 1] clipped (scene outputs)
        out = self._source().grade(working, height, width, defer)
        if callable(out):
            return lambda: colour.graded_out(out(), outside)
        return colour.graded_out(out, outside)


def managed(colour: ColourPipeline | None, grade: ShotGrade) -> ShotGrade | ManagedGrade:
    """The grade that frames go through: ``grade`` itself without colour management, else its
    :class:`ManagedGrade` (input-space frames in, output-space frames out; one per grade and pipeline)."""
    return grade if colour is None else colour.managed(grade)


def yuv420_ok(colour: ColourPipeline | None, matrix: int, composed: bool) -> bool:
    """Whether a colour-managed render may grade 8-bit 4:2:0 planes as they are (the source and output
    already allow it): always without colour management; with it, when every grade is ``composed`` (fast
    and LUT looks) and the output is written with the source's YCbCr ``matrix``."""
    return colour is None or (composed and colour.yuv_native(matrix))
