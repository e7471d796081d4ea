"""The public Python API: one :class:`Look` interface, and the command's jobs as functions.

Everything here is also importable from ``grade`` itself::

    import grade
    look = grade.fit_look([frame], "reference.jpg", mode="fast")
    graded = look.apply(frame)                       # numpy RGB in, the same dtype and shape out
    look.save("dusk.gpreset"); look.to_cube("dusk.cube")
    report = grade.grade_file("shot.mov", look)      # or a reference still, a .cube, a preset
    shots = grade.detect_shots("shot.mov")

Errors a caller can cause are :class:`grade.errors.GradeError` (``InputError``, ``OutputError``), one
line each, naming the argument or field at fault.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ValidationError

from grade.errors import InputError
from grade.io import image as image_io
from grade.io.atomic import atomic_output
from grade.library import read_look
from grade.model.look import LearnedLook
from grade.presets import Preset, build_preset, fit_look_lut, write_preset
from grade.progress import NullProgress, Progress
from grade.shots import ShotList, ShotSettings
from grade.shots import detect_shots as _detect_shots

__all__ = ["Look", "load_look", "fit_look", "grade_file", "detect_shots", "conform"]

Frame = np.ndarray  # (H, W, 3) RGB: uint8, uint16, or float32 in [0, 1]


def _options(**settings: Any):
    """:class:`grade.options.GradeOptions` from keyword settings; a bad one is an InputError naming it."""
    from grade.options import GradeOptions

    try:
        return GradeOptions(**settings)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        value = settings.get(str(first["loc"][0]), None) if first["loc"] else None
        why = first["msg"][0].lower() + first["msg"][1:]
        shown = f" (got {value!r})" if first["type"] != "extra_forbidden" else ""
        raise InputError(f"{field}: {why}{shown}") from None


class Look:
    """A look that grades frames: fitted to a reference (:func:`fit_look`) or loaded from a ``.cube``,
    a ``.gpreset`` file or a library preset (:func:`load_look`).

    ``strength`` (0..1) blends the grade with the source; ``regional`` (0..1, learned looks) scales the
    per-material part on top of the global one (0: the global look of fast mode).

    >>> frame = np.zeros((24, 32, 3), np.uint8); frame[:, :, 0] = np.arange(32) * 8
    >>> look = fit_look([frame], np.full((16, 16, 3), (200, 120, 60), np.uint8), mode="fast")
    >>> look.mode, look.apply(frame).shape, look.apply(frame).dtype
    ('fast', (24, 32, 3), dtype('uint8'))
    """

    def __init__(self, preset: Preset, strength: float = 1.0, regional: float = 1.0) -> None:
        self.preset = preset
        self.strength = float(strength)
        self.regional = float(regional)
        if not (0 <= self.strength <= 1 and 0 <= self.regional <= 1):
            raise InputError(f"strength and regional are 0..1, got {strength!r} and {regional!r}")

    @property
    def mode(self) -> Literal["fast", "learned", "lut"]:
        """``learned`` (regional by material), ``fast`` (one global LUT) or ``lut`` (a ``.cube``)."""
        return self.preset.manifest.mode

    @property
    def name(self) -> str:
        return self.preset.name

    def __repr__(self) -> str:
        return f"Look({self.name!r}, mode={self.mode!r}, strength={self.strength}, regional={self.regional})"

    def _grade(self):
        """The grade at this strength and regional balance, built once per setting (not per frame)."""
        from grade.shotgrade import preset_grade

        key = (self.strength, self.regional)
        if getattr(self, "_cached", (None, None))[0] != key:
            self._cached = (key, preset_grade(self.preset, self.strength, stabilise=False, regional=self.regional))
        return self._cached[1]

    def apply(self, frame: Frame) -> Frame:
        """Grade one frame: ``(H, W, 3)`` RGB uint8, uint16, or float32 in [0, 1] (values outside are
        clipped); returns the same dtype and shape. A frame on its own: no temporal stabilisation (use
        :func:`grade_file` for video).

        >>> look = load_look_identity()
        >>> f = np.random.default_rng(0).random((8, 8, 3), dtype=np.float32)
        >>> out = look.apply(f)
        >>> out.dtype, bool(np.abs(out - f).max() < 1e-3)
        (dtype('float32'), True)
        """
        frame = image_io.check_rgb(frame)
        grade = self._grade()
        if frame.dtype == np.float32:
            deep = (np.clip(np.nan_to_num(frame), 0, 1) * 65535 + 0.5).astype(np.uint16)
            return (grade.grade_still(np.ascontiguousarray(deep)).astype(np.float32) / 65535).astype(np.float32)
        return grade.grade_still(np.ascontiguousarray(frame))

    def save(self, path: str | Path, force: bool = False) -> Path:
        """Write the look as a ``.gpreset`` file (safetensors: weights, LUTs, thumbnails, a manifest;
        nothing executable), atomically; an existing file is kept unless ``force``.

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = load_look_identity().save(Path(d) / "plain.gpreset")
        ...     load_look(p).mode
        'lut'
        """
        path = Path(path)
        if path.suffix.lower() != ".gpreset":
            raise InputError(f"path: a look is saved as a .gpreset file, not {path.name}")
        return write_preset(self.preset, path, force=force)

    def to_cube(self, path: str | Path, size: int = 33, force: bool = False) -> Path:
        """Export the look as a ``size``-point ``.cube`` 3D LUT (Resolve, Premiere, ffmpeg). A learned
        look is regional, so its LUT is the best single LUT fitted to it on its key frames.

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = load_look_identity().to_cube(Path(d) / "plain.cube", size=17)
        ...     p.read_text().count("\\n") > 17**3
        True
        """
        from grade.cube import write_cube

        path = Path(path)
        if path.suffix.lower() != ".cube":
            raise InputError(f"path: a LUT is written as a .cube file, not {path.name}")
        if not 2 <= size <= 129:
            raise InputError(f"size: a .cube LUT has 2 to 129 points a side, got {size}")
        fitted = self.preset.fitted_lut
        if fitted.shape[-1] != size:
            fitted, _ = fit_look_lut(self.preset.learned, self.preset.lut, self.preset.keys, size)
        if self.strength != 1.0:
            from grade.lut import blend_strength

            fitted = blend_strength(fitted, self.strength)
        with atomic_output(path, force=force) as tmp:
            write_cube(tmp, fitted, title=f"grade look {self.name}")
        return path


def load_look_identity() -> Look:
    """A look that changes nothing (a 2-point identity LUT): a neutral starting point and for examples."""
    from grade.lut import identity_lut

    return Look(build_preset("identity", mode="lut", lut=identity_lut(2)))


def load_look(source: str | Path, strength: float = 1.0, regional: float = 1.0) -> Look:
    """A :class:`Look` from a ``.cube`` file, a ``.gpreset`` file or the name of a preset in the library
    (``$GRADE_PRESETS``, else the platform's data folder).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     cube = load_look_identity().to_cube(Path(d) / "id.cube", size=5)
    ...     load_look(cube).mode
    'lut'
    """
    preset = read_look(source)
    return Look(preset, strength, regional)


def fit_look(
    frames: Frame | Sequence[Frame],
    reference: str | Path | np.ndarray,
    mode: Literal["learned", "fast"] = "learned",
    progress: Progress | None = None,
    **settings: Any,
) -> Look:
    """Fit (fast) or train (learned) one look on key frames of a scene against a reference still.

    Args:
        frames: one or more key frames, ``(H, W, 3)`` RGB uint8 / uint16 / float32 in [0, 1].
        reference: the reference still: a path or an RGB array.
        mode: ``learned`` (regional by material; ~10 s on two CPU cores) or ``fast`` (global, instant).
        settings: :class:`grade.options.GradeOptions` fields that shape the look: ``strength``,
            ``regional``, ``steps``, ``seed``, ``look_side``, ``device``.

    >>> key = np.zeros((24, 32, 3), np.uint8); key[..., 1] = 120; key[:12, :, 2] = 200
    >>> look = fit_look(key, np.full((16, 16, 3), (180, 90, 40), np.uint8), mode="learned", steps=5)
    >>> look.mode, look.apply(key).shape
    ('learned', (24, 32, 3))
    """
    from grade.shotgrade import fit_shots, resolve_device

    if mode not in ("learned", "fast"):
        raise InputError(f"mode: learned or fast, got {mode!r}")
    allowed = {"strength", "regional", "steps", "seed", "look_side", "device", "working_side"}
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise InputError(f"{unknown[0]}: not a look setting (use {', '.join(sorted(allowed))})")
    options = _options(mode=mode, **settings)
    items = [frames] if isinstance(frames, np.ndarray) else list(frames)
    if not items:
        raise InputError("frames: give at least one key frame")
    keys = [image_io.thumbnail(image_io.as_uint8(image_io.check_rgb(f)), ShotSettings().key_side) for f in items]
    ref, thumb = image_io.load_reference(reference, options.working_side)
    device = resolve_device(options.device)
    grade = fit_shots(keys, ref, options, device, progress or NullProgress(), joint=True)[0]
    learned = grade.learned
    if learned is not None:
        learned = LearnedLook(learned.lut, learned.net, learned.settings, 1.0)
    preset = build_preset("look", mode=mode, lut=grade.full_lut, learned=learned, reference=thumb, keys=keys)
    return Look(preset, options.strength, options.regional)


def grade_file(
    source: str | Path,
    look: Look | str | Path | np.ndarray,
    output: str | Path | None = None,
    progress: Progress | None = None,
    **options: Any,
):
    """Grade a video or a still file, as the ``grade`` command does; returns its
    :class:`grade.options.GradeReport` (shots, frames, timings, streams).

    Args:
        source: a video (anything FFmpeg reads) or a still. Never modified.
        look: a :class:`Look` (applied to every shot), a reference still (path or RGB array: a look is
            fitted per shot, as the command does), or anything :func:`load_look` takes.
        output: where to write (default ``<stem>.graded.<ext>`` beside the source). Written atomically.
        options: :class:`grade.options.GradeOptions` fields: ``mode``, ``strength``, ``regional``,
            ``codec``, ``crf``, ``force``, ``steps``, ``stabilise``, ``strict``, ``preview``, ...

    >>> import tempfile, shutil
    >>> with tempfile.TemporaryDirectory() as d:
    ...     r = grade_file("samples/sample.mp4", "samples/reference.jpg", Path(d) / "out.mp4", mode="fast")
    ...     r.frames, len(r.shots)
    (96, 2)
    """
    from grade.pipeline import grade_files

    if isinstance(look, Look):
        options.setdefault("strength", look.strength)
        options.setdefault("regional", look.regional)
        opts = _options(**options)
        return grade_files([source], look.preset, opts, [output] if output else None, progress)[0]
    if isinstance(look, np.ndarray):
        opts = _options(**options)
        return grade_files([source], look, opts, [output] if output else None, progress)[0]
    text = str(look)
    if text.lower().endswith(".gpreset") or (not Path(text).exists() and Path(text).suffix == ""):
        opts = _options(preset=text, **options)
        return grade_files([source], None, opts, [output] if output else None, progress)[0]
    opts = _options(**options)
    return grade_files([source], Path(text), opts, [output] if output else None, progress)[0]


def detect_shots(path: str | Path, settings: ShotSettings | None = None) -> ShotList:
    """Shots of a video (cuts, black and title cards, fades, dissolves) and each one's key frame.

    >>> shots = detect_shots("samples/sample.mp4")
    >>> [(s.start, s.end) for s in shots.shots], shots.transitions
    ([(0, 48), (48, 96)], [])
    """
    return _detect_shots(path, settings=settings or ShotSettings())


def conform(
    edit: str | Path,
    media: str | Path | Sequence[str | Path],
    output_dir: str | Path,
    look: Look | str | Path | None = None,
    looks: str | Path | None = None,
    progress: Progress | None = None,
    **options: Any,
):
    """Conform an edit (CMX 3600 EDL, FCP 7 XML, ``.otio``): relink its events to ``media``, grade each
    with its scene's look and write the graded clips and edits to ``output_dir``, resumably, as ``grade
    conform`` does. ``look`` is the default look (a :class:`Look`, a reference still, a ``.cube`` or a
    preset); ``looks`` a looks file naming scenes and rules. ``options``: the conform settings
    (``handles``, ``match``, ``skip_missing``, ``apply_cdl``, ``rate``, ``assemble``) and
    :class:`grade.options.GradeOptions` fields. Returns the conform report."""
    from grade.conform import ConformSettings, run_conform

    conform_fields = set(ConformSettings.model_fields) - {"media", "looks", "look"}
    picked = {k: options.pop(k) for k in list(options) if k in conform_fields}
    folders = [media] if isinstance(media, str | Path) else list(media)
    preset_path = None
    with tempfile.TemporaryDirectory(prefix="grade-look-") as tmp:
        look_path: Path | None = None
        if isinstance(look, Look):
            preset_path = write_preset(look.preset, Path(tmp) / "look.gpreset")
            options.setdefault("strength", look.strength)
            options.setdefault("regional", look.regional)
        elif look is not None and (str(look).lower().endswith(".gpreset") or Path(str(look)).suffix == ""):
            preset_path = str(look)
        elif look is not None:
            look_path = Path(look)
        try:
            settings = ConformSettings(
                media=[Path(m) for m in folders], looks=Path(looks) if looks else None, look=look_path, **picked
            )
        except ValidationError as e:
            first = e.errors()[0]
            raise InputError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
        opts = _options(**({"preset": str(preset_path)} if preset_path else {}), **options)
        return run_conform(edit, output_dir, settings, opts, progress)
