"""The library entry point: grade one video or still against a look.

``grade_file`` runs decode/analysis -> shots and key frames -> fit a look per shot -> render, with
every output written to a temporary file and renamed into place only when complete.
"""

from __future__ import annotations

import bisect
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from grade import __version__
from grade.errors import InputError
from grade.io import image as image_io
from grade.io import video as video_io
from grade.io.atomic import atomic_output, check_output_path
from grade.lut import PackedTable, YuvTable, apply_lut, apply_lut_u16, blend_strength
from grade.model.look import LearnedLook, LookSettings
from grade.preview import contact_sheet
from grade.progress import NullProgress, Progress
from grade.shots import Shot, detect_shots
from grade.train import TrainSettings, train_look
from grade.transfer import TransferSettings, fast_lut

Mode = Literal["fast", "learned"]


class GradeOptions(BaseModel):
    """Everything a user can set for one grade (validated: these come from the command line)."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode = "fast"
    strength: float = Field(1.0, ge=0.0, le=1.0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    codec: str | None = None
    crf: int | None = Field(None, ge=0, le=63)
    force: bool = False
    preview: Path | None = None
    working_side: int = Field(512, ge=64, le=4096)
    seed: int = 0
    steps: int | None = Field(None, ge=1, le=100_000)  # learned mode: training steps per shot (default: trainer's)


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
    seconds: dict[str, float] = {}


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is a user error."""
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def default_output(source: Path) -> Path:
    """``<stem>.graded.<ext>`` next to the source."""
    return source.with_name(f"{source.stem}.graded{source.suffix}")


class ShotGrade:
    """The grade of one shot: the fast mode's global LUT and, in learned mode, the trained look on top."""

    def __init__(self, lut: torch.Tensor, strength: float, learned: LearnedLook | None = None) -> None:
        self.learned = learned
        # fast mode bakes the strength into the LUT; the learned look blends its whole output instead
        self.lut = lut if learned is not None else blend_strength(lut, strength)
        self._table: PackedTable | YuvTable | None = None

    def prepare(self, native: bool, matrix: int, full_range: bool) -> None:
        """Build this shot's lookup table (~0.3 s, 16-64 MiB); :meth:`release` frees it."""
        if self.learned is None and native:
            self._table = YuvTable(self.lut, matrix, full_range)
        else:
            self._table = PackedTable(self.lut)

    def release(self) -> None:
        self._table = None

    def grade(self, pixels: np.ndarray, height: int, width: int) -> np.ndarray:
        """Grade one decoded frame (layouts of :mod:`grade.io.video`)."""
        if self.learned is not None:
            return self.learned.apply_pixels(pixels, self._table if pixels.dtype == np.uint8 else None)
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
    keys: list[np.ndarray], reference: torch.Tensor, options: GradeOptions, device: torch.device, progress: Progress
) -> list[ShotGrade]:
    """Fit (fast) or train (learned) one grade per key frame (RGB uint8, long side <= 512)."""
    luts = []
    with progress.stage("fit", len(keys)) as task:
        for key in keys:
            luts.append(fast_lut(image_io.to_tensor(key), reference, TransferSettings(seed=options.seed)))
            task.advance()
    if options.mode == "fast":
        return [ShotGrade(lut, options.strength) for lut in luts]
    settings = TrainSettings(seed=options.seed, steps=options.steps or TrainSettings().steps)
    grades = []
    with progress.stage("train", len(keys) * settings.steps) as task:
        for n, (key, lut) in enumerate(zip(keys, luts)):

            def on_step(step: int, total: int, loss: float, n: int = n) -> None:
                task.update(completed=n * settings.steps + step, info=f"shot {n + 1} loss {loss:.3f}")

            look, _ = train_look(image_io.to_tensor(key), reference, lut, LookSettings(), settings, device, on_step)
            look.strength = options.strength
            grades.append(ShotGrade(lut, options.strength, look))
            task.update(completed=(n + 1) * settings.steps)
    return grades


def _write_preview(path: Path, reference: np.ndarray, rows, force: bool, sources: list[Path]) -> str:
    check_output_path(path, sources, force=force)
    sheet = contact_sheet(reference, rows)
    data = image_io.encode_image(Path("preview.png"), sheet)
    with atomic_output(path, force=force) as tmp:
        image_io.write_bytes(tmp, data)
    return str(path)


def grade_file(
    source: str | Path,
    look: str | Path,
    options: GradeOptions | None = None,
    output: str | Path | None = None,
    progress: Progress | None = None,
) -> GradeReport:
    """Grade a video or a still so that it takes on the look of a reference still.

    Args:
        source: video (anything FFmpeg reads) or still (PNG, JPEG, TIFF, ...). Never modified.
        look: the reference still.
        output: where to write; default ``<stem>.graded.<ext>`` beside the source.
    Raises:
        GradeError: any problem the user can fix, as one line.
    """
    options = options or GradeOptions()
    progress = progress or NullProgress()
    source, look = Path(source), Path(look)
    if not source.exists():
        raise InputError(f"no such file: {source}")
    if source.is_dir():
        raise InputError(f"input is a directory, not a media file: {source}")
    info = None if image_io.is_image_path(source) else video_io.probe(source)
    out = Path(output) if output else default_output(source)
    if out.suffix == "":
        raise InputError(f"output needs a file extension (e.g. .mp4, .mov, .png): {out}")
    if info is not None:
        video_io.choose_codec(out, options.codec, options.crf, info)  # unknown codec: fail before any work
    check_output_path(out, [source, look], force=options.force)
    if options.preview:
        check_output_path(options.preview, [source, look, out], force=options.force)
    device = resolve_device(options.device)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    ref_t, ref_thumb = image_io.load_reference(look, options.working_side)
    timings["reference"] = time.perf_counter() - t0
    if info is not None and out.suffix.lower() not in video_io.OUTPUT_EXTENSIONS:
        raise InputError(
            f"cannot write video as {out.suffix}: use one of {', '.join(sorted(video_io.OUTPUT_EXTENSIONS))}"
        )
    if info is None:
        return _grade_still(source, look, out, ref_t, ref_thumb, options, device, progress, timings)
    return _grade_video(source, info, look, out, ref_t, ref_thumb, options, device, progress, timings)


def _grade_still(source, look, out, ref_t, ref_thumb, options, device, progress, timings) -> GradeReport:
    t = time.perf_counter()
    still = image_io.read_image(source, what="input")
    if image_io.is_image_path(out) is False:
        raise InputError(f"a still must be written as an image, not {out.suffix}: {out}")
    small = image_io.fit_side(still.rgb, options.working_side)
    small = small if small.dtype == np.uint8 else (small >> 8).astype(np.uint8)
    shot_grade = fit_shots([small], ref_t, options, device, progress)[0]
    timings["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    with progress.stage("render", 1) as task:
        graded = shot_grade.grade_still(still.rgb)
        data = image_io.encode_image(out, graded, still.alpha)
        with atomic_output(out, force=options.force) as tmp:
            image_io.write_bytes(tmp, data)
        task.advance()
    timings["render"] = time.perf_counter() - t
    preview = None
    if options.preview:
        rows = [("still", small, shot_grade.thumb(small))]
        preview = _write_preview(options.preview, ref_thumb, rows, options.force, [source, look])
    h, w = still.rgb.shape[:2]
    shot = Shot(index=0, start=0, end=1, start_time=0, end_time=0, key_frame=0, key_time=0)
    return _report(
        source,
        out,
        look,
        options,
        device,
        timings,
        kind="still",
        width=w,
        height=h,
        frames=1,
        shots=[shot],
        preview=preview,
    )


def _report(source, out, look, options, device, timings, **fields) -> GradeReport:
    """The fields every report has, plus the kind-specific ``fields``."""
    return GradeReport(
        input=str(source),
        output=str(out),
        reference=str(look),
        mode=options.mode,
        device=str(device),
        strength=options.strength,
        seconds={k: round(v, 3) for k, v in timings.items()},
        **fields,
    )


def _grade_video(source, info, look, out, ref_t, ref_thumb, options, device, progress, timings) -> GradeReport:
    t = time.perf_counter()
    with progress.stage("analyse", info.frames) as task:
        shots = detect_shots(source, info, on_frame=lambda i: task.update(completed=i))
    timings["analyse"] = time.perf_counter() - t
    t = time.perf_counter()
    grades = fit_shots(shots.keys, ref_t, options, device, progress)
    timings["fit"] = time.perf_counter() - t

    current = {"shot": -1}
    ends = [s.end for s in shots.shots]
    native = options.mode == "fast" and video_io.native_yuv420(info, out, options.codec, options.crf)
    matrix, full_range = video_io.yuv_matrix(info), video_io.range_of(info) == 2

    def grade_frame(index: int, pixels: np.ndarray) -> np.ndarray:
        shot = min(bisect.bisect_right(ends, index), len(ends) - 1)
        if current["shot"] != shot:
            if current["shot"] >= 0:
                grades[current["shot"]].release()  # free the previous shot's table before building the next
            grades[shot].prepare(native, matrix, full_range)
            current["shot"] = shot
        return grades[shot].grade(pixels, info.height, info.width)

    t = time.perf_counter()
    with (
        progress.stage("render", max(info.frames, shots.frames)) as task,
        atomic_output(out, force=options.force) as tmp,
    ):
        stats = video_io.render_video(
            source,
            tmp,
            info,
            grade_frame,
            codec=options.codec,
            crf=options.crf,
            on_frame=lambda i: task.advance(),
            pixel_format="yuv420p" if native else None,
        )
    timings["render"] = time.perf_counter() - t
    preview = None
    if options.preview:
        rows = [(f"shot {s.index + 1} @{s.key_tc}", k, g.thumb(k)) for s, k, g in zip(shots.shots, shots.keys, grades)]
        preview = _write_preview(options.preview, ref_thumb, rows, options.force, [source, look])
    return _report(
        source,
        out,
        look,
        options,
        device,
        timings,
        kind="video",
        width=info.width,
        height=info.height,
        frames=stats.frames,
        fps=round(info.fps, 4),
        duration=round(info.duration, 4),
        shots=shots.shots,
        encoder=stats.encoder,
        pix_fmt=stats.pix_fmt,
        streams_copied=stats.copied_streams,
        streams_reencoded=stats.reencoded_streams,
        streams_dropped=stats.dropped_streams,
        preview=preview,
    )
