"""Colour management on the review page, as the ``grade`` command does it (:mod:`grade.colourspace`).

With ``--input-space`` / ``--working-space`` / ``--output-space`` / ``--ocio-config`` / ``--keep-log`` (or a
preset made in a working space, or PQ / HLG tags on the clip) a shot's look is fitted in the working space
(its key frame taken there, the reference through the inverse of the display's view), and the page shows
pictures in the output space: "before" is the clip through the input and output transforms with no look,
"after" the shot's grade at its strength through the same composed table the render uses
(:mod:`grade.colourgrade`). Without any of them nothing changes (``pipeline`` is None).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from grade.colourspace import ColourPipeline
from grade.review.jobs import Memo

COLOUR_FIELDS = ("input_space", "working_space", "output_space", "keep_log", "ocio_config")


class ReviewColour:
    """The colour settings of a review session, and the pipelines and grades built from them (cached).

    Args:
        settings: the :class:`grade.options.GradeOptions` colour fields (``input_space``, ...); None or
            missing ones are unset. Colour space names are checked here (one line naming the closest).
    """

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        from grade.colourspace import colour_pipeline

        self.settings = {k: v for k, v in (settings or {}).items() if k in COLOUR_FIELDS and v}
        s = self.settings  # the names and their combination (--keep-log with --output-space, ...), as grade checks them
        colour_pipeline(s.get("input_space"), s.get("working_space"), s.get("output_space"),
                        bool(s.get("keep_log")), s.get("ocio_config"))  # fmt: skip
        self._grades = Memo(8)

    def pipeline(self, info: Any, working: str | None = None) -> ColourPipeline | None:
        """The pipeline of a clip (its :class:`~grade.io.video.VideoInfo`) and a look made in ``working``
        (a preset's working space, or None), as :func:`grade.pipeline.grade_files` builds it; None: none."""
        from grade.colourspace import colour_pipeline, space_of_tags

        s = self.settings
        return colour_pipeline(
            s.get("input_space"),
            s.get("working_space"),
            s.get("output_space"),
            bool(s.get("keep_log")),
            s.get("ocio_config"),
            space_of_tags(info.color_trc),
            working,
        )

    def fit(self, colour: ColourPipeline, keyframe: np.ndarray, reference: Path, mode: str, progress, fit: dict):
        """:func:`grade.api.fit_look` in the working space: the key frame (RGB uint8) taken into it, the
        reference loaded at working size and converted as the command converts it. Returns a
        :class:`grade.api.Look` (full strength) whose preset names its working space."""
        from grade.api import Look, _options
        from grade.io import image as image_io
        from grade.model.look import LearnedLook
        from grade.presets import build_preset
        from grade.progress import NullProgress
        from grade.shotgrade import fit_shots, resolve_device

        options = _options(mode=mode, **fit)  # a bad setting: one InputError naming it
        ref, thumb = image_io.load_reference(reference, options.working_side)
        keys = [colour.frame_in(keyframe)]
        device = resolve_device(options.device)
        grade = fit_shots(keys, colour.reference(ref), options, device, progress or NullProgress())[0]
        learned = grade.learned
        if learned is not None:
            learned = LearnedLook(learned.lut, learned.net, learned.settings, 1.0)
        preset = build_preset(
            "look", mode=mode, lut=grade.full_lut, learned=learned, reference=thumb, keys=keys,
            working_space=colour.working,
        )  # fmt: skip
        return Look(preset)

    def _grade(self, key: tuple, preset, strength: float, regional: float):
        from grade.shotgrade import preset_grade

        return self._grades.get(key, lambda: preset_grade(preset, strength, stabilise=False, regional=regional))

    def apply(self, colour: ColourPipeline, key: tuple, preset, strength: float, regional: float, rgb: np.ndarray):
        """An input-space picture (RGB ``(H, W, 3)``, uint8 or uint16: a 10-bit log clip is shown from its
        16-bit decode, as the render grades it) graded by ``preset`` at ``strength`` into the output space,
        through the render's own path (:class:`~grade.colourgrade.ManagedGrade`, at 16 bits): one composed
        table for a fast or LUT look, the folded base table and the output transform for a learned one
        (the two transforms around it for a scene-referred output). Returns RGB uint8. ``key`` names the
        grade (cached)."""
        from grade.colourgrade import managed
        from grade.lut import apply_lut_u16

        grade = self._grade((key, strength, regional), preset, strength, regional)
        m = managed(colour, grade)
        deep = np.ascontiguousarray(rgb)
        if deep.dtype == np.uint8:
            deep = deep.astype(np.uint16) * 257
        if m.kind == "composed":
            out = apply_lut_u16(m.lut, deep)
        else:
            out = m.grade(deep, deep.shape[0], deep.shape[1])
        return ((out.astype(np.uint32) + 128) // 257).astype(np.uint8)

    def before(self, colour: ColourPipeline, rgb: np.ndarray) -> np.ndarray:
        """An input-space picture (uint8 or uint16) in the output space with no look (the input and output
        transforms): RGB uint8."""
        from grade.lut import identity_lut
        from grade.presets import build_preset

        plain = self._grades.get(("identity",), lambda: build_preset("identity", mode="lut", lut=identity_lut(2)))
        return self.apply(colour, ("identity",), plain, 1.0, 1.0, rgb)
