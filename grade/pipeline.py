"""The library entry point: grade one video or still against a look.

``grade_file`` runs decode/analysis -> shots and key frames -> fit a look per shot -> render, with
every output written to a temporary file and renamed into place only when complete.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from grade import __version__
from grade.errors import GradeError, InputError, OutputError, setting
from grade.io import image as image_io
from grade.io import video as video_io
from grade.io.atomic import atomic_output, check_name, check_output_path
from grade.lut import PackedTable, YuvTable, apply_lut, apply_lut_u16, blend_strength, rgb_to_yuv
from grade.model.look import LearnedLook, LookSettings
from grade.presets import KeyFrame, Library, Preset, build_preset
from grade.preview import colour_ramp, contact_sheet
from grade.progress import NullProgress, Progress
from grade.shots import Shot, Transition, detect_shots
from grade.temporal import Stabiliser
from grade.train import TrainSettings, train_look
from grade.transfer import TransferSettings, fast_lut, tone_lut

Mode = Literal["fast", "learned"]


Role = Literal["training", "look", "picture", "encode", "run"]


def _role(role: Role, default=None, **kw):
    """A field with its role: what it changes (see :meth:`GradeOptions.settings_of`)."""
    return Field(default, json_schema_extra={"role": role}, **kw)


class GradeOptions(BaseModel):
    """Everything a user can set for one grade (validated: these come from the command line or a caller).

    Each field says what it is (:meth:`settings_of`): ``training`` shapes a fitted or trained look,
    ``look`` picks the look, ``picture`` changes pixels given the look, ``encode`` the output's
    encoding, ``run`` only how the run goes (overwriting, previews, where presets live). A conform's
    fingerprints hash the roles that change a clip, not the run policy.
    """

    model_config = ConfigDict(extra="forbid")

    mode: Mode = _role("training", "learned")
    seed: int = _role("training", 0)
    steps: int | None = _role("training", None, ge=1, le=100_000)  # learned: training steps per shot
    working_side: int = _role("training", 512, ge=64, le=4096)  # key frames and reference are fitted this size
    look_side: int = _role("training", LookSettings().working_side, ge=32, le=1024)  # learned: the look's long side
    preset: str | None = _role("look")  # grade with a saved preset (library name or file path)
    refine: bool = _role("look", False)  # fine-tune the preset on this input's key frames
    joint: bool = _role("look", False)  # one look for all shots of all inputs (a scene)
    strength: float = _role("picture", 1.0, ge=0.0, le=1.0)
    # learned looks: how much of the regional (per-material) grade goes on top of the global one
    # (0: the global look of fast mode, 1: the full regional look)
    regional: float = _role("picture", 1.0, ge=0.0, le=1.0)
    stabilise: bool = _role("picture", True)  # learned looks: motion-compensated temporal stabilisation
    device: Literal["auto", "cpu", "cuda"] = _role("picture", "auto")
    codec: str | None = _role("encode")
    crf: int | None = _role("encode", None, ge=0, le=63)
    force: bool = _role("run", False)
    preview: Path | None = _role("run")
    output_dir: Path | None = _role("run")  # default outputs go here instead of beside each input
    save_preset: str | None = _role("run")  # save the look as a preset of this name (implies joint)
    force_preset: bool = _role("run", False)  # replace an existing preset of that name
    scene: str | None = _role("run")  # scene name stored in a saved preset
    notes: str = _role("run", "")
    library: Path | None = _role("run")  # presets directory (default: $GRADE_PRESETS or the platform's)
    jobs: int = _role("run", 1, ge=1, le=64)  # conform: events rendered in parallel processes
    strict: bool = _role("run", False)  # a damaged input (decoding ends early) is an error, not a warning

    @classmethod
    def fields_of(cls, *roles: Role) -> list[str]:
        """The names of the fields of these roles.

        >>> GradeOptions.fields_of("encode")
        ['codec', 'crf']
        """
        return [n for n, f in cls.model_fields.items() if (f.json_schema_extra or {}).get("role") in roles]

    def settings_of(self, *roles: Role) -> dict:
        """These roles' settings, as a JSON-ready dict (what a fingerprint hashes).

        >>> GradeOptions(strength=0.5, force=True).settings_of("picture")["strength"]
        0.5
        """
        data = self.model_dump(mode="json")
        return {n: data[n] for n in self.fields_of(*roles)}


class Damage(BaseModel):
    """A video that ends before its header says it does (a truncated or cut file)."""

    frames_graded: int
    frames_expected: int
    broke_at: float  # seconds into the source where decoding stopped
    timecode: str  # the same as HH:MM:SS:FF of the source's clock
    error: str | None = None  # the decoder's words, when it failed rather than ran out

    def message(self, source: Path | str) -> str:
        why = f" ({self.error})" if self.error else ""
        return (
            f"{source} is damaged: it breaks at {self.timecode} (frame {self.frames_graded}){why}; "
            f"graded {self.frames_graded} of {self.frames_expected} frames"
        )


def damage_of(info: video_io.VideoInfo, frames: int, error: str | None) -> Damage | None:
    """Whether a decode that gave ``frames`` frames (and stopped on ``error``, if any) ended early: on a
    decoder error, or more than 2 % (at least 2 frames) short of the frames the container declares."""
    short = info.frames - frames
    if error is None and short <= max(2, 0.02 * info.frames):
        return None
    at = frames / info.fps if info.fps else 0.0
    return Damage(
        frames_graded=frames,
        frames_expected=max(info.frames, frames),
        broke_at=round(at, 3),
        timecode=video_io.shift_timecode(info.timecode, frames, info.fps)
        if info.timecode
        else video_io.frames_timecode(frames, info.fps or 1),
        error=error,
    )


class GradeReport(BaseModel):
    """What was done (the CLI's ``--json`` output)."""

    grade_version: str = __version__
    input: str
    output: str
    reference: str
    kind: Literal["video", "still"]
    mode: str
    device: str
    strength: float
    width: int
    height: int
    frames: int
    fps: float | None = None
    duration: float | None = None
    shots: list[Shot] = []
    encoder: str | None = None
    pix_fmt: str | None = None
    streams_copied: list[str] = []
    streams_reencoded: list[str] = []
    streams_dropped: list[str] = []
    preview: str | None = None
    look_kind: Literal["reference", "cube", "preset"] = "reference"
    stabiliser_ms_per_frame: float | None = None  # learned looks: cost of the temporal stabiliser
    network_frames: int | None = None  # stabilised learned looks: frames the network ran on (the rest carried)
    preset_saved: str | None = None
    damaged: Damage | None = None  # the input broke off: what was graded, and where it broke
    warnings: list[str] = []
    seconds: dict[str, float] = {}


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is a user error."""
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"{setting('device', 'cuda')}: no CUDA device is available (use {setting('device', 'cpu')} or auto)"
        )
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def default_output(source: Path, folder: Path | None = None) -> Path:
    """``<stem>.graded.<ext>`` next to the source (or in ``folder``)."""
    return (folder or source.parent) / f"{source.stem}.graded{source.suffix}"


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

    def prepare(self, native: bool, matrix: int, full_range: bool, reset: bool = True) -> None:
        """Start a shot: build the lookup table (~0.3 s, 16-64 MiB; :meth:`release` frees it) and reset
        the stabiliser (nothing is carried across a cut; ``reset=False`` keeps it: the other side of a
        dissolve)."""
        if self.stabiliser is not None and reset:
            self.stabiliser.reset()
        if isinstance(self._table, YuvTable if native else PackedTable) and self._yuv == (matrix, full_range):
            return
        self._yuv = (matrix, full_range)
        if native:
            self._table = YuvTable(self.lut, matrix, full_range)
        else:
            self._table = PackedTable(self.lut)

    def release(self) -> None:
        self._table = None

    def black(self) -> np.ndarray:
        """What this grade makes of black, R'G'B' ``(3,)`` in [0, 1] (the reference's black level, at the
        grade's strength): where a fade to black ends."""
        if self.learned is None:  # fast: the strength is baked into self.lut
            return self.lut[:, 0, 0, 0].double().numpy()
        return self.full_lut[:, 0, 0, 0].double().numpy() * self.learned.strength

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


def _write_preview(path: Path, reference: np.ndarray, rows, force: bool, sources: list[Path], label: str) -> str:
    check_output_path(path, sources, force=force)
    sheet = contact_sheet(reference, rows, ref_label=label)
    data = image_io.encode_image(path, sheet)
    with atomic_output(path, force=force) as tmp:
        image_io.write_bytes(tmp, data)
    return str(path)


@dataclass
class _Job:
    """One input of a run: where it goes, and (after analysis) its shots and key frames."""

    source: Path
    out: Path
    info: video_io.VideoInfo | None  # None: a still
    shots: list[Shot] = field(default_factory=list)
    keys: list[np.ndarray] = field(default_factory=list)
    neighbours: list[np.ndarray | None] = field(default_factory=list)  # the frame after each key frame
    still: image_io.Still | None = None
    grades: list[ShotGrade] = field(default_factory=list)
    timeline: _Timeline | None = None  # per-frame gains (fades) and dissolves


@dataclass
class _LookSource:
    """What the grade comes from: a reference still, a ``.cube`` LUT or a preset."""

    label: str
    kind: Literal["reference", "cube", "preset"]
    reference: torch.Tensor | None = None  # (3, h, w) at working resolution
    thumb: np.ndarray | None = None  # RGB uint8 for the preview
    lut: torch.Tensor | None = None
    preset: Preset | None = None


def _look_source(look: Path | np.ndarray | Preset | None, options: GradeOptions) -> _LookSource:
    if isinstance(look, Preset):  # a look object of the library API
        src = _LookSource(label=f"look {look.name}", kind="preset", preset=look, thumb=look.reference)
        if look.reference is not None:
            src.reference = image_io.to_tensor(look.reference)
        return src
    if isinstance(look, np.ndarray):  # a reference still given as pixels
        ref, thumb = image_io.load_reference(look, options.working_side)
        return _LookSource(label="reference (array)", kind="reference", reference=ref, thumb=thumb)
    if options.preset is not None:
        preset = Library(options.library).load(options.preset)
        if options.refine and preset.manifest.mode == "lut" and look is None:
            raise InputError(f"preset {preset.name!r} is a plain LUT: there is no trained look to refine")
        src = _LookSource(label=f"preset {preset.name}", kind="preset", preset=preset, thumb=preset.reference)
        if look is not None:  # --refine toward a new reference
            src.reference, src.thumb = image_io.load_reference(look, options.working_side)
            src.label += f" + {look}"
        elif preset.reference is not None:
            src.reference = image_io.to_tensor(preset.reference)
        return src
    if look is None:
        raise InputError(
            f"no look given: use {setting('look', 'REFERENCE')} (a still or a .cube LUT) or {setting('preset', 'NAME')}"
        )
    if look.suffix.lower() == ".cube":
        from grade.cube import read_cube

        return _LookSource(label=str(look), kind="cube", lut=read_cube(look))
    ref, thumb = image_io.load_reference(look, options.working_side)
    return _LookSource(label=str(look), kind="reference", reference=ref, thumb=thumb)


def _look_tile(src: _LookSource, grade: ShotGrade) -> np.ndarray:
    """The preview's left tile: the reference, or for a LUT a ramp of hues and tones through it."""
    if src.thumb is not None:
        return src.thumb
    return grade.thumb(colour_ramp())


def grade_file(
    source: str | Path,
    look: str | Path | None,
    options: GradeOptions | None = None,
    output: str | Path | None = None,
    progress: Progress | None = None,
) -> GradeReport:
    """Grade a video or a still so that it takes on a look.

    Args:
        source: video (anything FFmpeg reads) or still (PNG, JPEG, TIFF, ...). Never modified.
        look: the reference still, or a ``.cube`` 3D LUT; ``None`` with ``options.preset``.
        output: where to write; default ``<stem>.graded.<ext>`` beside the source.
    Raises:
        GradeError: any problem the user can fix, as one line.
    """
    return grade_files([source], look, options, [output] if output else None, progress)[0]


def grade_files(
    sources: list[str | Path],
    look: str | Path | np.ndarray | Preset | None,
    options: GradeOptions | None = None,
    outputs: list[str | Path] | None = None,
    progress: Progress | None = None,
) -> list[GradeReport]:
    """Grade several inputs; with ``options.scene`` or ``options.save_preset`` they share one look
    trained on all their key frames together (a scene preset), else each shot gets its own.

    Everything is checked before any work (inputs, outputs, preset name); outputs are written
    atomically, and a preset is saved only after every output was written.
    """
    options = options or GradeOptions()
    progress = progress or NullProgress()
    if look is not None and not isinstance(look, np.ndarray | Preset):
        look = Path(look)
    paths = [Path(s) for s in sources]
    if not paths:
        raise InputError("no input given")
    if outputs is not None and len(outputs) != len(paths):
        raise InputError("one output per input")
    jobs = []
    for n, source in enumerate(paths):
        if not source.exists():
            raise InputError(f"no such file: {source}")
        if source.is_dir():
            raise InputError(f"input is a directory, not a media file: {source}")
        info = None if image_io.is_image_path(source) else video_io.probe(source)
        out = Path(outputs[n]) if outputs else default_output(source, options.output_dir)
        jobs.append(_Job(source, out, info))
    guarded = [*paths, *([look] if isinstance(look, Path) else [])]
    for job in jobs:
        out = job.out
        check_name(out)
        if out.is_dir():
            raise OutputError(
                f"output path is a folder: {out} (-o takes a file name, e.g. {out / default_output(job.source).name})"
            )
        if out.suffix == "":
            raise InputError(f"output needs a file extension (e.g. .mp4, .mov, .png): {out}")
        if job.info is not None:
            if out.suffix.lower() not in video_io.OUTPUT_EXTENSIONS:
                exts = ", ".join(sorted(video_io.OUTPUT_EXTENSIONS))
                raise InputError(f"cannot write video as {out.suffix}: use one of {exts}")
            video_io.choose_codec(out, options.codec, options.crf, job.info)  # unknown codec: fail before work
        elif image_io.is_image_path(out) is False:
            raise InputError(f"a still must be written as an image, not {out.suffix}: {out}")
        check_output_path(out, guarded, force=options.force)
    if len({j.out.resolve() for j in jobs}) != len(jobs):
        raise InputError("two inputs would be written to the same output")
    if options.preview:
        if not image_io.is_image_path(options.preview):
            raise InputError(
                f"{setting('preview', 'FILE')} writes an image: give it a .png or .jpg name, not {options.preview}"
            )
        check_output_path(options.preview, [*guarded, *(j.out for j in jobs)], force=options.force)
    library = Library(options.library)
    if options.save_preset:
        library.check_free(options.save_preset, options.force_preset)
    if options.refine and options.preset is None:
        raise InputError(f"{setting('refine')} needs {setting('preset', 'NAME')} (the preset to fine-tune)")
    device = resolve_device(options.device)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    src = _look_source(look, options)
    timings["look"] = time.perf_counter() - t

    joint = options.joint or options.save_preset is not None
    if len(jobs) == 1 and jobs[0].info is not None and src.kind == "reference" and options.mode == "fast" and not joint:
        # one video, a fitted look per shot: analysis and fitting run while earlier shots render
        fields, shared = _stream_video(jobs[0], src.reference, options, progress, timings)
        reports = [_report(jobs[0].source, jobs[0].out, src, options, device, dict(timings), **fields)]
        return _finish(jobs, src, shared, reports, options, library, guarded, look)

    t = time.perf_counter()
    for job in jobs:
        _analyse(job, options, progress)
    timings["analyse"] = time.perf_counter() - t

    t = time.perf_counter()
    all_keys = [k for job in jobs for k in job.keys]
    all_next = [n for job in jobs for n in (job.neighbours or [None] * len(job.keys))]
    if src.kind == "cube":
        shared = [ShotGrade(src.lut, options.strength)]
        per_shot = shared * len(all_keys)
    elif src.kind == "preset" and not options.refine:
        shared = [preset_grade(src.preset, options.strength, options.stabilise, options.regional)]
        per_shot = shared * len(all_keys)
    else:
        # black, flat and title shots get the global tone mapping only and never enter a scene look
        flat = [s.flat for job in jobs for s in job.shots] if src.reference is not None else [False] * len(all_keys)
        real = [i for i, f in enumerate(flat) if not f]
        if not real and options.save_preset:
            raise InputError("nothing to learn a look from: every shot is black, flat or a title card")
        together = joint or src.kind == "preset"
        fitted = []
        if real:
            keys, nexts = [all_keys[i] for i in real], [all_next[i] for i in real]
            fitted = fit_shots(keys, src.reference, options, device, progress, together, src.preset, nexts)
        tone = ShotGrade(tone_lut(src.reference), options.strength) if len(real) < len(flat) else None
        it = iter(fitted)
        per_shot = [tone if f else (fitted[0] if together else next(it)) for f in flat]
        shared = fitted[:1] if together and fitted else per_shot
    it = iter(per_shot)
    for job in jobs:
        job.grades = [next(it) for _ in job.keys]
    timings["fit"] = time.perf_counter() - t

    reports = []
    for job in jobs:
        t = time.perf_counter()
        render = _render_still if job.info is None else _render_video
        fields = render(job, options, progress)
        timings["render"] = timings.get("render", 0.0) + time.perf_counter() - t
        reports.append(_report(job.source, job.out, src, options, device, dict(timings), shots=job.shots, **fields))
    return _finish(jobs, src, shared, reports, options, library, guarded, look)


def _finish(jobs, src: _LookSource, shared, reports, options: GradeOptions, library, guarded, look) -> list:
    """After every output is written: the preview and the preset, named in the reports."""
    preview = None
    if options.preview:
        rows = [
            (
                f"{j.source.stem[:12]} {s.index + 1} @{s.key_tc}"
                if len(jobs) > 1
                else f"shot {s.index + 1} @{s.key_tc}",
                k,
                g.thumb(k),
            )
            for j in jobs
            for s, k, g in zip(j.shots, j.keys, j.grades)
        ]
        label = "reference" if src.kind == "reference" else src.kind
        try:
            preview = _write_preview(options.preview, _look_tile(src, shared[0]), rows, options.force, guarded, label)
        except GradeError as e:  # the graded outputs are complete and in place: say so
            done = ", ".join(str(j.out) for j in jobs)
            raise OutputError(f"{e} (the graded output is complete: {done}; only the preview is missing)") from None
    saved = None
    if options.save_preset:
        saved = str(_save_preset(library, src, shared[0], jobs, options, look))
    for r in reports:
        r.preview, r.preset_saved = preview, saved
    return reports


REFINE_STEPS = 40  # --refine: a third of a cold training


def preset_grade(preset: Preset, strength: float, stabilise: bool = True, regional: float = 1.0) -> ShotGrade:
    if preset.learned is not None:
        learned = LearnedLook(preset.learned.lut, preset.learned.net, preset.learned.settings, strength, regional)
        return ShotGrade(preset.lut, strength, learned, stabilise)
    return ShotGrade(preset.lut, strength)


def _save_preset(library: Library, src: _LookSource, grade: ShotGrade, jobs, options: GradeOptions, look) -> Path:
    keys = [k for j in jobs for k in j.keys]
    frames = [KeyFrame(source=j.source.name, frame=s.key_frame, time=s.key_time) for j in jobs for s in j.shots]
    learned = grade.learned
    if learned is not None:
        learned = LearnedLook(learned.lut, learned.net, learned.settings, 1.0)
    reference = src.preset.reference if src.kind == "preset" and look is None else src.thumb
    mode = "learned" if learned is not None else ("lut" if src.kind == "cube" else "fast")
    train = {"steps": options.steps, "seed": options.seed, "refined_from": src.preset.name if src.preset else None}
    preset = build_preset(
        options.save_preset,
        mode=mode,
        lut=grade.full_lut,  # full strength: --strength applies when the preset is used
        learned=learned,
        reference=reference,
        reference_name=look.name if isinstance(look, Path) else (src.preset.manifest.reference if src.preset else None),
        keys=keys,
        key_frames=frames,
        scene=options.scene,
        notes=options.notes,
        train_settings=train,
    )
    return library.save(preset, force=options.force_preset)


def _analyse(job: _Job, options: GradeOptions, progress: Progress) -> None:
    """Shots and key frames of a video, or the still itself."""
    if job.info is None:
        job.still = image_io.read_image(job.source, what="input")
        job.keys = [image_io.thumbnail(job.still.rgb, options.working_side)]
        job.shots = [Shot(index=0, start=0, end=1, start_time=0, end_time=0, key_frame=0, key_time=0)]
        return
    with progress.stage("analyse", job.info.frames) as task:
        # the frame after each key frame only feeds the training's temporal term (off by default)
        keep_next = options.mode == "learned" and TrainSettings().weights.temporal > 0
        shots = detect_shots(job.source, job.info, on_frame=lambda i: task.update(completed=i), keep_next=keep_next)
    job.shots, job.keys, job.neighbours = shots.shots, shots.keys, shots.neighbours
    job.timeline = _Timeline([(0, shots.gains)], shots.transitions)


def _render_still(job: _Job, options: GradeOptions, progress: Progress) -> dict:
    with progress.stage("render", 1) as task:
        graded = job.grades[0].grade_still(job.still.rgb)
        data = image_io.encode_image(job.out, graded, job.still.alpha)
        with atomic_output(job.out, force=options.force) as tmp:
            image_io.write_bytes(tmp, data)
        task.advance()
    h, w = job.still.rgb.shape[:2]
    return {"kind": "still", "width": w, "height": h, "frames": 1}


def _report(source, out, src: _LookSource, options, device, timings, **fields) -> GradeReport:
    """The fields every report has, plus the kind-specific ``fields``."""
    return GradeReport(
        input=str(source),
        output=str(out),
        reference=src.label,
        look_kind=src.kind,
        mode=_mode_label(src, options),
        device=str(device),
        strength=options.strength,
        seconds={k: round(v, 3) for k, v in timings.items()},
        **fields,
    )


def _mode_label(src: _LookSource, options: GradeOptions) -> str:
    if src.kind == "cube":
        return "lut"
    if src.kind == "preset":
        return f"preset:{src.preset.manifest.mode}" + (" refined" if options.refine else "")
    return options.mode


def _stabiliser_stats(grades: list[ShotGrade]) -> tuple[float, int] | None:
    """Seconds spent stabilising so far and frames whose field was carried by the flow (the network not
    run), each distinct grade's stabiliser counted once; None without a stabiliser."""
    stabs = {id(g.stabiliser): g.stabiliser for g in grades if g.stabiliser is not None}
    if not stabs:
        return None
    return sum(s.seconds for s in stabs.values()), sum(s.carried for s in stabs.values())


@contextlib.contextmanager
def _render_threads() -> Iterator[None]:
    """torch's intra-op threads while a video renders: a quarter of the cores (at least 1). The encoder's
    threads already keep the cores busy, and an op split across threads waits for the busiest one: on 2
    cores a learned render was ~5 % faster and spent 3 CPU-s less (of 22) with one torch thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 4))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Timeline:
    """What the analysis found between and inside shots, frame by frame: exposure gains (fades, flashes)
    and dissolves. Filled while the analysis runs (streamed renders) or all at once."""

    def __init__(self, gains: list[tuple[int, np.ndarray]] | None = None, transitions=None) -> None:
        self.parts: list[tuple[int, np.ndarray]] = list(gains or [])  # (first frame, gains), in order
        self.transitions: list[Transition] = [t for t in (transitions or []) if t.kind == "dissolve"]

    def add(self, start: int, gains: np.ndarray) -> None:
        self.parts.append((start, gains))

    def gain(self, index: int) -> float:
        for start, g in reversed(self.parts):
            if start <= index:
                return float(g[index - start]) if index - start < len(g) else 1.0
        return 1.0

    def dissolve(self, index: int) -> tuple[int, float] | None:
        """``(middle, w)`` for a frame inside a dissolve: the frame where the next shot starts and how far
        through the dissolve this frame is (0..1); None elsewhere."""
        for t in self.transitions:
            if t.start <= index < t.end:
                fitted = len(t.weights) == t.end - t.start
                w = t.weights[index - t.start] if fitted else (index - t.start + 0.5) / (t.end - t.start)
                return (t.start + t.end) // 2, w
        return None


def _ungain(pixels: np.ndarray, gain: float, native: bool, height: int, full_range: bool) -> np.ndarray:
    """A faded frame brought back to the exposure of its shot's key frame: code values ÷ ``gain`` (RGB
    from 0, 4:2:0 luma from its black level and chroma from its centre); alpha kept."""
    x = pixels.astype(np.float32)
    top = 65535.0 if pixels.dtype == np.uint16 else 255.0
    if native:
        black = 0.0 if full_range else 16.0
        x[:height] = black + (x[:height] - black) / gain
        x[height:] = 128 + (x[height:] - 128) / gain
    else:
        x[..., :3] /= gain
    return np.clip(x + 0.5, 0, top).astype(pixels.dtype)


def _regain(
    graded: np.ndarray, gain: float, black: np.ndarray, native: bool, height: int, matrix: int, full_range: bool
) -> np.ndarray:
    """The grade of the brought-back frame faded again: ``black + gain · (graded - black)``, ``black`` the
    grade's black level (R'G'B' in [0, 1]): a fade to black ends at the reference's black."""
    x = graded.astype(np.float32)
    top = 65535.0 if graded.dtype == np.uint16 else 255.0
    if native:
        y, cb, cr = (float(v) for v in rgb_to_yuv(torch.from_numpy(black), matrix, full_range))
        quarter = (x.shape[0] - height) // 2
        for rows, level in (
            (slice(0, height), y),
            (slice(height, height + quarter), cb),
            (slice(height + quarter, None), cr),
        ):
            x[rows] = level + gain * (x[rows] - level)
    else:
        b = (black * top).astype(np.float32)
        x[..., :3] = b + gain * (x[..., :3] - b)
    return np.clip(x + 0.5, 0, top).astype(graded.dtype)


def _mix(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    """``(1 - w) · a + w · b`` in the frames' own layout (alpha of ``a``)."""
    out = a.astype(np.float32) * (1 - w) + b.astype(np.float32) * w
    top = 65535.0 if a.dtype == np.uint16 else 255.0
    mixed = np.clip(out + 0.5, 0, top).astype(a.dtype)
    if a.ndim == 3 and a.shape[-1] == 4:
        mixed[..., 3] = a[..., 3]
    return mixed


class _FixedShots:
    """The grade of each frame when every shot is known before the render."""

    def __init__(self, job: _Job) -> None:
        self.ends, self.grades = [s.end for s in job.shots], job.grades

    def grade_for(self, index: int) -> tuple[int, ShotGrade]:
        shot = min(bisect.bisect_right(self.ends, index), len(self.ends) - 1)
        return shot, self.grades[shot]

    def grade_of(self, shot: int) -> ShotGrade:
        return self.grades[min(max(shot, 0), len(self.grades) - 1)]


class _Stopped(Exception):
    """The render ended (or failed): the background analysis stops."""


class _ShotFeed:
    """Shots and their grades as a background analysis finds and fits them, while the render runs.

    The analysis prepares at most ``ahead`` shots beyond the one being rendered (each holds a
    48 MiB lookup table), so memory stays bounded however many shots the clip has; the render
    waits only when it reaches a shot whose end the analysis has not seen yet.
    """

    def __init__(self, ahead: int = 1) -> None:
        self.cond = threading.Condition()
        self.ends: list[int] = []
        self.grades: list[ShotGrade] = []
        self.rendering = 0
        self.ahead = ahead
        self.done = False
        self.stopped = False  # the render failed: the analysis stops
        self.rendered = False  # the render is complete: the analysis finishes without preparing tables
        self.error: BaseException | None = None
        self.timeline = _Timeline()

    def check(self) -> None:
        """Raise in the background thread once the render has stopped."""
        if self.stopped:
            raise _Stopped

    def add(self, end: int, grade: ShotGrade, prepare) -> None:
        """Background: publish the next shot's grade, after waiting for room to prepare it."""
        with self.cond:
            while not self.rendered and len(self.grades) > self.rendering + self.ahead:
                self.check()
                self.cond.wait(0.1)
        self.check()
        if not self.rendered:
            prepare(grade)
        with self.cond:
            self.ends.append(end)
            self.grades.append(grade)
            self.cond.notify_all()

    def end_render(self, ok: bool) -> None:
        """Render thread, when it is done: on success let the analysis finish (it may still be
        reading the last frames), else stop it."""
        with self.cond:
            self.rendered, self.stopped = ok, not ok
            self.cond.notify_all()

    def close(self, error: BaseException | None = None) -> None:
        with self.cond:
            self.done, self.error = True, error
            self.cond.notify_all()

    def grade_of(self, shot: int) -> ShotGrade:
        """Render thread: the grade of shot number ``shot`` (the other side of a dissolve; waits for it)."""
        with self.cond:
            while shot >= len(self.grades) and not self.done and self.error is None:
                self.cond.wait(0.1)
            if self.error is not None:
                raise self.error
            return self.grades[min(max(shot, 0), len(self.grades) - 1)]

    def grade_for(self, index: int) -> tuple[int, ShotGrade]:
        """Render thread: the shot of frame ``index`` and its grade (waits for the analysis)."""
        with self.cond:
            while True:
                if self.error is not None:
                    raise self.error
                shot = bisect.bisect_right(self.ends, index)
                if shot < len(self.ends):
                    break
                if self.done:
                    if not self.ends:
                        raise InputError("no decodable video frame")
                    shot = len(self.ends) - 1  # frames the analysis did not count: the last shot's grade
                    break
                self.cond.wait(0.1)
            if shot != self.rendering:
                self.rendering = shot
                self.cond.notify_all()
            return shot, self.grades[shot]


def _stream_video(
    job: _Job, reference: torch.Tensor, options: GradeOptions, progress: Progress, timings: dict[str, float]
) -> tuple[dict, list[ShotGrade]]:
    """Analyse, fit (fast mode) and render one video in one go: a background thread finds the shots
    and fits each one's look while the render grades the shots already fitted. Same result as
    analysing first, then fitting, then rendering; the analysis pass hides behind the encoder."""
    info = job.info
    native = video_io.native_yuv420(info, job.out, options.codec, options.crf)
    matrix, full_range = video_io.yuv_matrix(info), video_io.range_of(info) == 2
    feed = _ShotFeed()
    found: dict = {}
    fit_seconds = [0.0]

    def on_shot(start: int, end: int, key_frame: int, key: np.ndarray, flat: bool, gains: np.ndarray) -> None:
        t = time.perf_counter()
        if flat:  # black, flat, a title card: the global tone mapping only
            lut = tone_lut(reference, TransferSettings(seed=options.seed))
        else:
            lut = fast_lut([image_io.to_tensor(key)], reference, TransferSettings(seed=options.seed))
        fit_seconds[0] += time.perf_counter() - t
        feed.timeline.add(start, gains)  # before the grade is published: the render reads it at once
        feed.add(end, ShotGrade(lut, options.strength), lambda g: g.prepare(native, matrix, full_range))

    def analyse() -> None:
        t = time.perf_counter()
        try:
            with progress.stage("analyse", info.frames) as task:

                def on_frame(i: int) -> None:
                    feed.check()
                    task.update(completed=i)

                found["shots"] = detect_shots(
                    job.source, info, on_frame=on_frame, on_shot=on_shot, on_transition=feed.timeline.transitions.append
                )
            feed.close()
        except _Stopped:
            feed.close()
        except BaseException as e:  # handed to the render thread, which raises it
            feed.close(e)
        found["seconds"] = time.perf_counter() - t

    worker = threading.Thread(target=analyse, name="grade-analyse", daemon=True)
    t = time.perf_counter()
    worker.start()
    ok = False
    try:
        fields = _render_video(job, options, progress, feed)
        ok = True
    finally:
        feed.end_render(ok)
        worker.join()
        for g in feed.grades:
            g.release()  # a table the analysis prepared after the render had ended
    if feed.error is not None:
        raise feed.error
    shots = found["shots"]
    job.shots, job.keys, job.grades = shots.shots, shots.keys, feed.grades
    timings["analyse"] = found["seconds"]
    timings["fit"] = fit_seconds[0]
    timings["render"] = time.perf_counter() - t  # overlaps the analysis and the fitting
    return {**fields, "shots": job.shots}, feed.grades


def _render_video(job: _Job, options: GradeOptions, progress: Progress, shots: _ShotFeed | None = None) -> dict:
    info = job.info
    pick = shots or _FixedShots(job)
    current: dict = {"shot": -1}
    native = video_io.native_yuv420(info, job.out, options.codec, options.crf)
    matrix, full_range = video_io.yuv_matrix(info), video_io.range_of(info) == 2

    timeline = getattr(pick, "timeline", None) or job.timeline or _Timeline()
    prepared: dict[int, ShotGrade] = {}  # grades holding a lookup table

    def run(grade: ShotGrade, pixels: np.ndarray, gain: float) -> np.ndarray | Callable[[], np.ndarray]:
        """``grade`` on a frame of exposure ``gain`` (a fade): graded as the undarkened frame, then
        faded again toward the grade's black."""
        if gain == 1.0:
            return grade.grade(pixels, info.height, info.width, defer=True)
        black = grade.black()
        if gain <= 1e-3:  # black: the reference's black level
            return _regain(pixels, 0.0, black, native, info.height, matrix, full_range)
        lifted = _ungain(pixels, gain, native, info.height, full_range)
        out = grade.grade(lifted, info.height, info.width, defer=True)

        def finish() -> np.ndarray:
            graded = out() if callable(out) else out
            return _regain(graded, gain, black, native, info.height, matrix, full_range)

        return finish

    def grade_frame(index: int, pixels: np.ndarray) -> np.ndarray | Callable[[], np.ndarray]:
        shot, grade = pick.grade_for(index)
        mix = timeline.dissolve(index)
        other = None
        if mix is not None:  # the other side of the dissolve, its look cross-faded in
            other = pick.grade_of(shot + 1) if index < mix[0] else pick.grade_of(shot - 1)
            other = None if other is grade else other
        if current["shot"] != shot:
            for g in list(prepared.values()):
                if g is not grade and g is not other:
                    g.release()  # free the previous shot's table before building the next
                    prepared.pop(id(g))
            grade.prepare(native, matrix, full_range)
            prepared[id(grade)] = grade
            current["shot"] = shot
        gain = timeline.gain(index)
        if other is None:
            return run(grade, pixels, gain)
        if id(other) not in prepared:
            other.prepare(native, matrix, full_range, reset=False)
            prepared[id(other)] = other
        a, b = (grade, other) if index < mix[0] else (other, grade)
        ra, rb = run(a, pixels, gain), run(b, pixels, gain)
        w = mix[1]

        def finish() -> np.ndarray:
            return _mix(ra() if callable(ra) else ra, rb() if callable(rb) else rb, w)

        return finish

    def on_frame(i: int) -> None:
        task.advance()
        if i % 12 == 11:
            stab = _stabiliser_stats(pick.grades)
            if stab is not None:
                network = 100 * (1 - stab[1] / (i + 1))
                task.update(info=f"stabiliser {1000 * stab[0] / (i + 1):.1f} ms/frame, network on {network:.0f} %")

    with (
        progress.stage("render", max(info.frames, job.shots[-1].end if job.shots else 0)) as task,
        atomic_output(job.out, force=options.force) as tmp,
        _render_threads(),
    ):
        stats = video_io.render_video(
            job.source,
            tmp,
            info,
            grade_frame,
            codec=options.codec,
            crf=options.crf,
            on_frame=on_frame,
            pixel_format="yuv420p" if native else None,
            workers=max(1, min(4, (os.cpu_count() or 1) // 2)),
        )
        damage = damage_of(info, stats.frames, stats.decode_error)
        if damage is not None and options.strict:  # before the output is published: nothing is written
            raise InputError(f"{damage.message(job.source)}; {setting('strict')}: nothing written")
    for g in pick.grades:
        g.release()
    stab = _stabiliser_stats(pick.grades)
    return {
        "stabiliser_ms_per_frame": round(1000 * stab[0] / max(1, stats.frames), 2) if stab is not None else None,
        "network_frames": stats.frames - stab[1] if stab is not None else None,
        "kind": "video",
        "width": info.width,
        "height": info.height,
        "frames": stats.frames,
        "fps": round(info.fps, 4),
        "duration": round(info.duration, 4),
        "encoder": stats.encoder,
        "pix_fmt": stats.pix_fmt,
        "streams_copied": stats.copied_streams,
        "streams_reencoded": stats.reencoded_streams,
        "streams_dropped": stats.dropped_streams,
        "damaged": damage,
        "warnings": [damage.message(job.source)] if damage is not None else [],
    }
