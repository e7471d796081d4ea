"""The grade of one shot: a look (LUT or learned field) with its strength and stabiliser, fitted on key
frames (:func:`fit_shots`) or built from a preset (:func:`preset_grade`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from grade.errors import InputError, setting
from grade.io import image as image_io
from grade.lut import PackedTable, YuvTable, apply_lut, apply_lut_u16, blend_strength
from grade.model.look import LearnedLook, LookSettings
from grade.options import GradeOptions
from grade.presets import Preset
from grade.progress import Progress
from grade.temporal import Stabiliser
from grade.train import TrainSettings, train_look
from grade.transfer import TransferSettings, fast_lut


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is a user error."""
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"{setting('device', 'cuda')}: no CUDA device is available (use {setting('device', 'cpu')} or auto)"
        )
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class ShotGrade:
    """The grade of one shot: the fast mode's global LUT and, in learned mode, the trained look on top."""

    def __init__(
        self, lut: torch.Tensor, strength: float, learned: LearnedLook | None = None, stabilise: bool = True
    ) -> None:
        self.learned = learned
        self.stabiliser = Stabiliser() if learned is not None and stabilise else None
        self.full_lut = lut
        # fast mode bakes the strength into the LUT; the learned look blends its whole output instead
        self.lut = lut if learned is not None else blend_strength(lut, strength)
        self._table: PackedTable | YuvTable | None = None
        self._yuv = (1, False)  # the source's YCbCr matrix and range (set by prepare)
        self.views: list = []  # its colour-managed views (grade.colourgrade.ManagedGrade): released with it

    def prepare(self, native: bool, matrix: int, full_range: bool, reset: bool = True) -> None:
        """Start a shot: build the lookup table (~0.3 s, 16-64 MiB; :meth:`release` frees it) and reset
        the stabiliser (nothing is carried across a cut; ``reset=False`` keeps it: the other side of a
        dissolve)."""
        if self.stabiliser is not None and reset:
            self.stabiliser.reset()
        if isinstance(self._table, YuvTable if native else PackedTable) and self._yuv == (matrix, full_range):
            return
        self._yuv = (matrix, full_range)
        lut = self.lut if self.learned is None else self.learned.guide_lut  # learned: what its field maps
        if native:
            self._table = YuvTable(lut, matrix, full_range)
        else:
            self._table = PackedTable(lut)

    def release(self) -> None:
        """Free the lookup tables (this grade's and its colour-managed views'); :meth:`prepare` rebuilds."""
        self._table = None
        for view in self.views:
            view.release_tables()

    def black(self, at: np.ndarray | None = None) -> np.ndarray:
        """What this grade makes of black, R'G'B' ``(3,)`` in [0, 1] (the reference's black level, at the
        grade's strength): where a fade to black ends. ``at``: black's value where it is not 0 (a working
        space's code for the input's black), ``(3,)``."""
        if at is None:
            if self.learned is None:  # fast: the strength is baked into self.lut
                return self.lut[:, 0, 0, 0].double().numpy()
            return self.full_lut[:, 0, 0, 0].double().numpy() * self.learned.strength
        x = torch.from_numpy(np.asarray(at, np.float32)).view(1, 3, 1, 1)
        with torch.inference_mode():
            if self.learned is None:
                return apply_lut(self.lut, x).view(3).double().numpy()
            v = apply_lut(self.full_lut, x).view(3).double().numpy()
        return at + self.learned.strength * (v - at)

    def grade(
        self, pixels: np.ndarray, height: int, width: int, defer: bool = False
    ) -> np.ndarray | Callable[[], np.ndarray]:
        """Grade one decoded frame (layouts of :mod:`grade.io.video`). With ``defer``, the result may be a
        function that finishes the frame (see :func:`grade.io.video.render_video`'s workers)."""
        if self.learned is not None:
            if isinstance(self._table, YuvTable):
                yuv = self._yuv
                return self.learned.apply_yuv420(pixels, height, width, self._table, *yuv, self.stabiliser, defer)
            table = self._table if pixels.dtype == np.uint8 else None
            return self.learned.apply_pixels(pixels, table, self.stabiliser)
        if pixels.dtype == np.uint16:
            return apply_lut_u16(self.lut, pixels)
        if isinstance(self._table, YuvTable):
            return self._table.apply_yuv420(pixels, height, width)
        return self._table.apply_rgba(pixels)

    def grade_still(self, rgb: np.ndarray) -> np.ndarray:
        """Grade an RGB still ``(H, W, 3)`` uint8/uint16 at full precision."""
        if self.learned is not None:
            return self.learned.apply_pixels(rgb)
        deep = rgb if rgb.dtype == np.uint16 else rgb.astype(np.uint16) * 257
        graded = apply_lut_u16(self.lut, deep)
        return graded if rgb.dtype == np.uint16 else ((graded.astype(np.uint32) + 128) // 257).astype(np.uint8)

    def thumb(self, rgb_u8: np.ndarray) -> np.ndarray:
        """The graded version of a small RGB uint8 image (previews)."""
        if self.learned is not None:
            return self.learned.apply_pixels(rgb_u8)
        x = image_io.to_tensor(rgb_u8)[None]
        with torch.inference_mode():
            y = apply_lut(self.lut, x)[0].permute(1, 2, 0).numpy()
        return (np.clip(y, 0, 1) * 255 + 0.5).astype(np.uint8)


def fit_shots(
    keys: list[np.ndarray],
    reference: torch.Tensor | None,
    options: GradeOptions,
    device: torch.device,
    progress: Progress,
    joint: bool = False,
    init: Preset | None = None,
    neighbours: list[np.ndarray | None] | None = None,
) -> list[ShotGrade]:
    """Fit (fast) or train (learned) the grades of key frames (RGB uint8, long side <= 512).

    One grade per key frame, or with ``joint`` one grade for all of them (a scene: the shots match
    each other). ``init`` warm-starts from a preset (``--refine``): its network is fine-tuned on the
    keys (a fraction of the cold training steps). ``neighbours``: the frame after each key frame
    (or None), for the training's temporal term when its weight is set.
    """
    tensors = [image_io.to_tensor(k) for k in keys]
    after = [None if n is None else image_io.to_tensor(n) for n in (neighbours or [None] * len(keys))]
    groups = [tensors] if joint else [[t] for t in tensors]
    next_groups = [after] if joint else [[a] for a in after]
    mode = options.mode if init is None else ("learned" if init.learned is not None else "fast")
    luts = []
    with progress.stage("fit", len(groups)) as task:
        for group in groups:
            if init is not None and init.learned is not None:
                luts.append(init.lut)  # refine keeps the preset's base and adapts the network
            else:
                luts.append(fast_lut(group, reference, TransferSettings(seed=options.seed)))
            task.advance()
    if mode == "fast":
        return [ShotGrade(lut, options.strength) for lut in luts]
    default_steps = REFINE_STEPS if init is not None else TrainSettings().steps
    settings = TrainSettings(seed=options.seed, steps=options.steps or default_steps)
    grades = []
    with progress.stage("train", len(groups) * settings.steps) as task:
        for n, (group, lut, nexts) in enumerate(zip(groups, luts, next_groups)):

            def on_step(step: int, total: int, loss: float, n: int = n) -> None:
                label = "scene" if joint else f"shot {n + 1}"
                task.update(completed=n * settings.steps + step, info=f"{label} loss {loss:.3f}")

            look, _ = train_look(
                group,
                reference,
                lut,
                LookSettings(working_side=options.look_side),
                settings,
                device,
                on_step,
                init=init.learned if init is not None else None,
                neighbours=nexts,
            )
            look.strength, look.regional = options.strength, options.regional
            grades.append(ShotGrade(lut, options.strength, look, options.stabilise))
            task.update(completed=(n + 1) * settings.steps)
    return grades


REFINE_STEPS = 40  # --refine: a third of a cold training


def preset_grade(preset: Preset, strength: float, stabilise: bool = True, regional: float = 1.0) -> ShotGrade:
    if preset.learned is not None:
        learned = LearnedLook(preset.learned.lut, preset.learned.net, preset.learned.settings, strength, regional)
        return ShotGrade(preset.lut, strength, learned, stabilise)
    return ShotGrade(preset.lut, strength)


def stabiliser_stats(grades: list[ShotGrade]) -> tuple[float, int] | None:
    """Seconds spent stabilising so far and frames whose field was carried by the flow (the network not
    run), each distinct grade's stabiliser counted once; None without a stabiliser."""
    stabs = {id(g.stabiliser): g.stabiliser for g in grades if g.stabiliser is not None}
    if not stabs:
        return None
    return sum(s.seconds for s in stabs.values()), sum(s.carried for s in stabs.values())
