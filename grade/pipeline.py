"""The library entry point: grade one video or still against a look.

The stages live in their own modules: :mod:`grade.options` (what is asked, what is reported),
:mod:`grade.shotgrade` (one shot's look, fitted or from a preset), :mod:`grade.render` (a still, or a video
streamed from decode to the encoder) and :mod:`grade.timeline` (exposure steps, fades, dissolves).

``grade_file`` runs decode/analysis -> shots and key frames -> fit a look per shot -> render, with
every output written to a temporary file and renamed into place only when complete.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from grade.colourspace import (
    colour_pipeline,
    is_display,
    linear_rec709,
    load_config,
    resolve,
    sequence_space,
    space_of_tags,
)
from grade.errors import GradeError, InputError, OutputError, setting
from grade.io import image as image_io
from grade.io import video as video_io
from grade.io.atomic import atomic_output, check_name, check_output_path
from grade.io.sequence import Sequence, find_sequence, is_sequence_path, output_sequence
from grade.library import Library, read_look
from grade.model.look import LearnedLook
from grade.options import GradeOptions, GradeReport
from grade.presets import KeyFrame, Preset, build_preset
from grade.preview import colour_ramp, contact_sheet
from grade.progress import NullProgress, Progress
from grade.render import (
    RenderJob,
    analyse_job,
    is_video_target,
    render_sequence_job,
    render_still_job,
    render_video_job,
    sequence_video_info,
    stream_video_job,
    video_frames_target,
)
from grade.shotgrade import REFINE_STEPS, ShotGrade, fit_shots, preset_grade, resolve_device
from grade.transfer import tone_lut

__all__ = [
    "REFINE_STEPS",
    "GradeOptions",
    "GradeReport",
    "ShotGrade",
    "default_output",
    "fit_shots",
    "grade_file",
    "grade_files",
    "preset_grade",
    "resolve_device",
]


def _sequence_output(seq: Sequence, folder: Path | None = None) -> Path:
    """``shot.%06d.exr`` -> ``shot.graded.%06d.exr`` (beside the frames, or in ``folder``).

    >>> from grade.io.sequence import Sequence
    >>> kw = dict(folder=Path("f"), digits=4, numbers=[1], width=1, height=1, channels=3, format="half", bits=16)
    >>> [_sequence_output(Sequence(prefix=p, suffix=".exr", **kw)).name for p in ("shot.", "plate_", "")]
    ['shot.graded.%04d.exr', 'plate_graded_%04d.exr', 'graded.%04d.exr']
    """
    p = seq.prefix
    if not p:
        prefix = "graded."
    elif p[-1] in "._-":
        prefix = f"{p[:-1]}{p[-1]}graded{p[-1]}"
    else:
        prefix = f"{p}.graded."
    return (folder or seq.folder) / (prefix + seq.pattern[len(p) :])


def _check_sequence_output(job: RenderJob, force: bool) -> None:
    """An image sequence is written as one: never over its own frames, never over another's without force."""
    target = output_sequence(job.sequence, job.out)
    if target.folder.resolve() == job.sequence.folder.resolve() and target.pattern == job.sequence.pattern:
        raise InputError(f"the output would overwrite the source frames: {job.out}")
    _refuse_existing([target.path(n) for n in job.sequence.numbers], force)


def _refuse_existing(frames: list[Path], force: bool) -> None:
    """Frames of an output sequence already on disk are not written over without force."""
    existing = [p for p in frames if p.exists()]
    if existing and not force:
        more = f" (+{len(existing) - 1} more)" if len(existing) > 1 else ""
        raise OutputError(f"output exists: {existing[0]}{more} (use {setting('force')})")


def default_output(source: Path, folder: Path | None = None) -> Path:
    """``<stem>.graded.<ext>`` next to the source (or in ``folder``)."""
    return (folder or source.parent) / f"{source.stem}.graded{source.suffix}"


def _write_preview(path: Path, reference: np.ndarray, rows, force: bool, sources: list[Path], label: str) -> str:
    check_output_path(path, sources, force=force)
    sheet = contact_sheet(reference, rows, ref_label=label)
    data = image_io.encode_image(path, sheet)
    with atomic_output(path, force=force) as tmp:
        image_io.write_bytes(tmp, data)
    return str(path)


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
        return _LookSource(label=str(look), kind="cube", lut=read_look(look).lut)
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
        if is_sequence_path(source):  # shot.%06d.exr, shot.######.dpx or a folder of frames
            stated = not options.input_space  # else --input-space says what the frames are
            seq = find_sequence(source, fps=options.fps, allow_gaps=options.allow_gaps, read_statement=stated)
            out = Path(outputs[n]) if outputs else _sequence_output(seq, options.output_dir)
            jobs.append(RenderJob(source, out, None, sequence=seq))
            continue
        if not source.exists():
            raise InputError(f"no such file: {source}")
        if source.is_dir():
            raise InputError(f"input is a directory, not a media file: {source}")
        info = None if image_io.is_image_path(source) else video_io.probe(source)
        out = Path(outputs[n]) if outputs else default_output(source, options.output_dir)
        jobs.append(RenderJob(source, out, info))
    guarded = [*paths, *([look] if isinstance(look, Path) else [])]
    for job in jobs:
        out = job.out
        if job.sequence is not None and is_video_target(out):  # plates graded into one video file
            check_name(out)
            video_io.choose_codec(out, options.codec, options.crf, sequence_video_info(job.sequence, None))
            check_output_path(out, guarded, force=options.force)
            continue
        if job.sequence is not None:
            _check_sequence_output(job, options.force)
            continue
        check_name(out)
        frames = video_frames_target(out, job.info) if job.info is not None else None
        if frames is not None:  # a video graded into an image sequence (a VFX pull)
            first = frames.numbers[0]
            _refuse_existing([frames.path(first + i) for i in range(max(1, job.info.frames))], options.force)
            continue
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
    preset_working = src.preset.manifest.working_space if src.preset is not None else None
    for job in jobs:
        tagged = space_of_tags(job.info.color_trc) if job.info is not None else None
        output_space = options.output_space
        seq = job.sequence
        if seq is not None and sequence_space(seq.suffix):  # an EXR: the space its files state, else linear
            if not options.input_space:
                tagged = sequence_space(seq.suffix, seq.statement, load_config(options.ocio_config))
            # EXR to EXR (a pattern, or a folder: the source's names in it) stays scene-referred
            written = job.out.suffix if is_video_target(job.out) else output_sequence(seq, job.out).suffix
            if written.lower().endswith(".exr") and output_space is None and not options.keep_log:
                output_space = options.input_space or tagged
        # a video pulled into EXR frames in a scene-referred space: frames leave the grade as float (linear
        # values above 1 and below 0 kept), not as 16-bit codes
        frames = video_frames_target(job.out, job.info) if job.info is not None else None
        exr = frames is not None and frames.suffix.lower().endswith(".exr")
        if exr and output_space is None and not options.keep_log and options.input_space:
            config = load_config(options.ocio_config)
            if not is_display(resolve(options.input_space, config)):  # log footage pulled into EXR: scene-linear
                output_space = linear_rec709(config)  # (what an unstated EXR is read as; None: the config has none)
        job.colour = colour_pipeline(
            options.input_space,
            options.working_space,
            output_space,
            options.keep_log,
            options.ocio_config,
            tagged,
            preset_working,
            float_frames=exr,
        )
        if frames is not None and job.colour is not None and job.colour.linear_output and not job.colour.float_frames:
            raise InputError(  # DPX / TIFF / PNG frames hold integer codes: [0, 1]
                f"{setting('output_space', job.colour.output)}: {frames.suffix.lstrip('.').upper()} frames hold "
                f"integer codes, which clip scene-linear values at 1.0; pull scene-linear frames as EXR "
                f"(-o {job.out.with_suffix('.exr')}) or a log space ({setting('output_space', 'acescct')})"
            )
    colour = next((j.colour for j in jobs if j.colour is not None), None)
    if colour is not None and src.reference is not None:  # the still's sRGB, seen through the display's view
        src.reference = colour.reference(src.reference)
    timings["look"] = time.perf_counter() - t

    joint = options.joint or options.save_preset is not None
    if len(jobs) == 1 and jobs[0].info is not None and src.kind == "reference" and options.mode == "fast" and not joint:
        # one video, a fitted look per shot: analysis and fitting run while earlier shots render
        fields, shared = stream_video_job(jobs[0], src.reference, options, progress, timings)
        if jobs[0].colour is not None:
            c = jobs[0].colour
            fields["colour"] = {"input": c.input, "working": c.working, "output": c.output}
        reports = [_report(jobs[0].source, jobs[0].out, src, options, device, dict(timings), **fields)]
        return _finish(jobs, src, shared, reports, options, library, guarded, look)

    t = time.perf_counter()
    for job in jobs:
        analyse_job(job, options, progress)
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
        render = (
            render_sequence_job
            if job.sequence is not None
            else (render_still_job if job.info is None else render_video_job)
        )
        fields = render(job, options, progress)
        if job.colour is not None:
            fields["colour"] = {"input": job.colour.input, "working": job.colour.working, "output": job.colour.output}
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
                j.colour.frame_out(k) if j.colour is not None else k,
                j.colour.frame_out(g.thumb(k)) if j.colour is not None else g.thumb(k),
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
        working_space=jobs[0].colour.working if jobs[0].colour is not None else None,
    )
    return library.save(preset, force=options.force_preset)


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
