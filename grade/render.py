"""Rendering a job: a still, or a video streamed from decode through analysis (shots found while
frames are graded) to the encoder, with exposure steps, fades and dissolves handled per frame."""

from __future__ import annotations

import bisect
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from grade.colourgrade import ManagedGrade, managed, yuv420_ok
from grade.colourspace import ColourPipeline
from grade.errors import InputError, OutputError, setting
from grade.io import image as image_io
from grade.io import video as video_io
from grade.io.atomic import atomic_output
from grade.io.sequence import Sequence, SequenceWriter, output_sequence, read_frame
from grade.options import GradeOptions, damage_of
from grade.progress import Progress
from grade.shotgrade import ShotGrade, stabiliser_stats
from grade.shots import Shot, ShotList, ShotSettings, detect_picture_shots, detect_shots
from grade.timeline import Timeline, cross_fade, regain, ungain
from grade.train import TrainSettings
from grade.transfer import TransferSettings, fast_lut, tone_lut


def video_frames_target(out: Path, info: video_io.VideoInfo) -> Sequence | None:
    """The image sequence a video is graded into when ``out`` names one (``graded/frame.%06d.exr``), else
    None: numbered from the source's timecode as a frame count (relinkable; 0 without one)."""
    from grade.io.sequence import SEQUENCE_EXTENSIONS, is_sequence_path, video_sequence
    from grade.io.timecode import timecode_frames

    if out.is_dir() or not (is_sequence_path(out) or out.suffix.lower() in SEQUENCE_EXTENSIONS):
        return None  # a folder is refused as a video's output (it needs a file name or a frame pattern)
    first = timecode_frames(info.timecode, info.fps) if info.timecode else 0
    return video_sequence(out, info.width, info.height, info.is_high_bit_depth, info.fps, first)


def stating(target: Sequence, colour: ColourPipeline | None) -> Sequence:
    """``target`` (a sequence to write) stating the output's colour space in its EXR files
    (:func:`grade.colourspace.exr_tags`), not the source's; without colour management, Rec.709 video's
    (the frames hold its display code values)."""
    from grade.colourspace import ALIASES, exr_tags, load_config

    stated = (
        exr_tags(ALIASES["rec709"]) if colour is None else exr_tags(colour.output, load_config(colour.config_source))
    )
    return target.model_copy(update={"statement": stated, "check_statement": False})


def is_video_target(out: Path) -> bool:
    """Whether an image sequence's output ``out`` names a video file (``graded.mov``), not frames or a folder."""
    return out.suffix.lower() in video_io.OUTPUT_EXTENSIONS and not out.is_dir() and "%" not in out.name


@dataclass
class RenderJob:
    """One input of a run: where it goes, and (after analysis) its shots and key frames."""

    source: Path
    out: Path
    info: video_io.VideoInfo | None  # None: a still
    shots: list[Shot] = field(default_factory=list)
    keys: list[np.ndarray] = field(default_factory=list)
    neighbours: list[np.ndarray | None] = field(default_factory=list)  # the frame after each key frame
    still: image_io.Still | None = None
    grades: list[ShotGrade] = field(default_factory=list)
    timeline: Timeline | None = None  # per-frame gains (fades) and dissolves
    colour: ColourPipeline | None = None  # colour-managed: frames and key frames go through the working space
    sequence: Sequence | None = None  # an image sequence (then ``info`` is None and ``out`` its pattern)


def _sequence_working(seq: Sequence, colour: ColourPipeline | None, number: int, clip: bool = True) -> np.ndarray:
    """A sequence frame in the working space as float32 ``(H, W, 3)``, clipped to [0, 1] (or not)."""
    rgb = read_frame(seq, number)
    if colour is not None:
        rgb = colour.float_in(rgb)
    return np.clip(rgb, 0.0, 1.0) if clip else np.asarray(rgb, np.float32)


FADE_POWER = 2.2  # a scene-linear sequence is analysed through x ** (1 / this): a fade stays a multiply


def fade_powers(colour: ColourPipeline | None) -> tuple[float, float]:
    """How a sequence's fade gain ``g`` (measured on its analysis codes) scales the input's values and the
    output's: ``g ** p`` for a scene-linear end (the analysis saw it through a power), ``g`` for code
    values (display or log, as a video's fades are taken)."""
    if colour is None:
        return 1.0, 1.0
    return (FADE_POWER if colour.linear_input else 1.0), (FADE_POWER if colour.linear_output else 1.0)


def _analysis_picture(seq: Sequence, colour: ColourPipeline | None, number: int) -> np.ndarray:
    """A sequence frame as the shot analysis sees it, RGB uint8: its own code values (as a video's are
    analysed), a scene-linear one through ``x ** (1 / FADE_POWER)`` so that it reads as a picture."""
    rgb = np.clip(np.nan_to_num(read_frame(seq, number)), 0.0, 1.0)
    if fade_powers(colour)[0] != 1.0:
        rgb = rgb ** (1.0 / FADE_POWER)
    return (rgb * 255 + 0.5).astype(np.uint8)


def sequence_shots(
    seq: Sequence,
    colour: ColourPipeline | None,
    settings: ShotSettings | None = None,
    on_frame: Callable[[int], None] | None = None,
    keep_next: bool = False,
) -> ShotList:
    """The shots of an image sequence, found as a video's are (:func:`grade.shots.detect_picture_shots`:
    cuts, dissolves, fades, black and title shots, key frames) on its code values
    (:func:`_analysis_picture`). The key frames (and the frames after them) are then read again in the
    working space, where looks are fitted."""
    settings = settings or ShotSettings()
    pictures = (_analysis_picture(seq, colour, number) for number in seq.numbers)
    shots = detect_picture_shots(pictures, seq.width, seq.height, seq.fps, settings, on_frame, keep_next)

    def working(index: int) -> np.ndarray:
        rgb = (_sequence_working(seq, colour, seq.numbers[index]) * 255 + 0.5).astype(np.uint8)
        return image_io.thumbnail(rgb, settings.key_side)

    for s in shots.shots:
        s.start_number, s.end_number, s.key_number = (seq.numbers[i] for i in (s.start, s.end - 1, s.key_frame))
    shots.keys = [working(s.key_frame) for s in shots.shots]
    shots.neighbours = [None if n is None else working(s.key_frame + 1) for s, n in zip(shots.shots, shots.neighbours)]
    return shots


def analyse_job(job: RenderJob, options: GradeOptions, progress: Progress) -> None:
    """Shots, key frames and transitions (fades, dissolves: ``job.timeline``) of a video or an image
    sequence, or the still."""
    keep_next = options.mode == "learned" and TrainSettings().weights.temporal > 0
    if job.sequence is not None:  # the video's analysis over the pictures (key frames in the working space)
        with progress.stage("analyse", job.sequence.frames) as task:
            settings = ShotSettings(key_side=options.working_side)
            shots = sequence_shots(job.sequence, job.colour, settings, lambda i: task.update(completed=i), keep_next)
        job.shots, job.keys, job.neighbours = shots.shots, shots.keys, shots.neighbours
        job.timeline = Timeline([(0, shots.gains)], shots.transitions)
        return
    if job.info is None:
        job.still = image_io.read_image(job.source, what="input")
        job.keys = [image_io.thumbnail(job.still.rgb, options.working_side)]
        if job.colour is not None:
            job.keys = [job.colour.frame_in(k) for k in job.keys]
        job.shots = [Shot(index=0, start=0, end=1, start_time=0, end_time=0, key_frame=0, key_time=0)]
        return
    with progress.stage("analyse", job.info.frames) as task:
        # the frame after each key frame only feeds the training's temporal term (off by default)
        shots = detect_shots(job.source, job.info, on_frame=lambda i: task.update(completed=i), keep_next=keep_next)
    job.shots, job.keys, job.neighbours = shots.shots, shots.keys, shots.neighbours
    if job.colour is not None:  # fitted in the working space
        job.keys = [job.colour.frame_in(k) for k in job.keys]
        job.neighbours = [job.colour.frame_in(n) if n is not None else None for n in job.neighbours]
    job.timeline = Timeline([(0, shots.gains)], shots.transitions)


def _sequence_grades(job: RenderJob, timeline: Timeline, index: int, shot: int) -> list[tuple[ShotGrade, float]]:
    """The looks frame ``index`` of a sequence goes through, with their weights: its shot's, and inside a
    dissolve the other side's too, cross-faded as a video's frames are."""
    grades = job.grades
    grade, mix = grades[shot], timeline.dissolve(index)
    other = None if mix is None else grades[min(max(shot + (1 if index < mix[0] else -1), 0), len(grades) - 1)]
    if other is None or other is grade:
        return [(grade, 1.0)]
    a, b = (grade, other) if index < mix[0] else (other, grade)
    return [(a, 1.0 - mix[1]), (b, mix[1])]


def _sequence_black(job: RenderJob, grades: list[tuple[ShotGrade, float]]) -> np.ndarray:
    """What the looks make of the input's black, in the output space ``(3,)``: where a fade to black ends."""
    colour = job.colour
    at = None if colour is None else np.clip(colour.float_in(np.zeros((1, 1, 3), np.float32))[0, 0], 0.0, 1.0)
    black = sum(w * g.black(at) for g, w in grades)
    return black if colour is None else colour.float_out(np.asarray(black, np.float32)[None, None])[0, 0]


def _sequence_frame(job: RenderJob, timeline: Timeline, index: int, shot: int, number: int) -> np.ndarray:
    """Frame ``index`` (file ``number``) of a sequence graded, float RGB in the output space: its shot's look
    (cross-faded with the other side's inside a dissolve), a faded frame graded as the undarkened frame
    and faded again toward the looks' black (:func:`fade_powers`: in code values, as a video's fades)."""
    seq, colour = job.sequence, job.colour
    grades = _sequence_grades(job, timeline, index, shot)
    gain = timeline.gain(index)
    p_in, p_out = fade_powers(colour)
    black = _sequence_black(job, grades) if gain != 1.0 else None
    if gain <= 1e-3:  # black: the looks' black level
        return np.broadcast_to(black.astype(np.float32), (seq.height, seq.width, 3)).copy()
    rgb = read_frame(seq, number)
    if gain != 1.0:
        rgb = rgb / np.float32(gain**p_in)
    full = rgb if colour is None else colour.float_in(rgb)
    full = np.nan_to_num(np.asarray(full, np.float32), nan=0.0, posinf=65504.0, neginf=-65504.0)
    work = np.clip(full, 0.0, 1.0)
    deep = (work * 65535.0 + 0.5).astype(np.uint16)
    if len(grades) == 1:  # no dissolve: no weighting pass over the frame
        graded = grades[0][0].grade(deep, seq.height, seq.width).astype(np.float32) / 65535.0
    else:
        graded = sum(w * g.grade(deep, seq.height, seq.width).astype(np.float32) for g, w in grades) / 65535.0
    # what the look's [0, 1] domain cannot hold (negative ACEScct of saturated wide-gamut colours, or above
    # 1) passes through, so that the output space gets it back
    graded = graded + (full - work)
    out = graded if colour is None else colour.float_out(graded)
    if gain != 1.0:
        out = black + np.float32(gain**p_out) * (out - black)
    return np.asarray(out, np.float32)


def render_still_job(job: RenderJob, options: GradeOptions, progress: Progress) -> dict:
    with progress.stage("render", 1) as task:
        rgb = job.still.rgb if job.colour is None else job.colour.frame_in(job.still.rgb)
        graded = job.grades[0].grade_still(rgb)
        if job.colour is not None:
            graded = job.colour.frame_out(graded)
        data = image_io.encode_image(job.out, graded, job.still.alpha)
        with atomic_output(job.out, force=options.force) as tmp:
            image_io.write_bytes(tmp, data)
        task.advance()
    h, w = job.still.rgb.shape[:2]
    return {"kind": "still", "width": w, "height": h, "frames": 1}


def _graded_sequence(job: RenderJob) -> Iterator[tuple[int, np.ndarray]]:
    """Each frame of ``job``'s sequence graded (:func:`_sequence_frame`), in order: ``(file number, float RGB
    (H, W, 3) in the output space)``; a learned look's stabiliser is reset at each cut."""
    seq, timeline = job.sequence, job.timeline or Timeline()
    shot_of = np.searchsorted([s.end for s in job.shots], np.arange(seq.frames), side="right")
    for i, number in enumerate(seq.numbers):
        grade = job.grades[int(shot_of[i])]
        if grade.stabiliser is not None and (i == 0 or shot_of[i] != shot_of[i - 1]):
            grade.stabiliser.reset()  # a learned look's field is carried within a shot, not across a cut
        yield number, _sequence_frame(job, timeline, i, int(shot_of[i]), number)


def sequence_video_info(seq: Sequence, colour: ColourPipeline | None) -> video_io.VideoInfo:
    """What a video made of ``seq``'s graded frames holds: its size and rate, RGB at the frames' depth (16
    bits above 8), the output space's colour tags (unspecified for a log or linear output)."""
    from fractions import Fraction

    rate = Fraction(seq.fps).limit_denominator(1001)
    tags = (colour.output_tags if colour is not None else None) or {}
    return video_io.VideoInfo(
        path=str(seq.path(seq.numbers[0])),
        container="image2",
        codec=seq.suffix.lstrip(".").lower(),
        width=seq.width,
        height=seq.height,
        pix_fmt="rgb48le" if seq.bits > 8 else "rgb24",
        bit_depth=16 if seq.bits > 8 else 8,
        fps=float(rate),
        rate=str(rate),
        time_base=str(1 / rate),
        frames=seq.frames,
        duration=seq.frames / float(rate),
        **tags,
    )


def _sequence_to_video(job: RenderJob, options: GradeOptions, progress: Progress) -> str:
    """Encode ``job``'s graded sequence as the video ``job.out`` (16-bit RGB into the encoder; the finishing
    codecs, ProRes 4444 say, keep 10-12 bits); written to a temporary file and renamed when complete.
    Returns the encoder's name."""
    import av

    from grade.io.codecs import choose_codec, muxer_of
    from grade.io.encode import FrameEncoder

    seq = job.sequence
    info = sequence_video_info(seq, job.colour)
    encoder, opts, pix_fmt = choose_codec(job.out, options.codec, options.crf, info)
    with atomic_output(job.out, force=options.force) as tmp, progress.stage("render", seq.frames) as task:
        box = av.open(str(tmp), "w", format=muxer_of(job.out))
        try:
            video = FrameEncoder(box, info, encoder, opts, pix_fmt, "rgb48le", time_base=1 / info.frame_rate)
            for i, (_, graded) in enumerate(_graded_sequence(job)):
                video.encode((np.clip(graded, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16), i)
                task.advance()
            video.flush()
        finally:
            box.close()
    return encoder


def render_sequence_job(job: RenderJob, options: GradeOptions, progress: Progress) -> dict:
    """Grade every frame of an image sequence into ``job.out``'s sequence (same frame numbers), or into the
    video ``job.out`` where it names one (:func:`is_video_target`): float frames into the working space
    (exactly, values above 1 included), graded at 16 bits, out to the output space. Frames are written into
    a temporary folder beside the target and moved into place when all are done."""
    seq = job.sequence
    encoder = None
    if is_video_target(job.out):
        encoder = _sequence_to_video(job, options, progress)
    else:
        writer = SequenceWriter(stating(output_sequence(seq, job.out), job.colour))
        try:
            with progress.stage("render", seq.frames) as task:
                for number, graded in _graded_sequence(job):
                    writer.write(number, graded)  # the target keeps the source's depth (EXR float, PNG bits)
                    task.advance()
            writer.publish()  # every frame is complete
        finally:
            writer.discard()
    stab = stabiliser_stats(job.grades)
    return {
        "kind": "sequence",
        **({"encoder": encoder} if encoder else {}),
        "width": seq.width,
        "height": seq.height,
        "frames": seq.frames,
        "fps": seq.fps,
        "duration": round(seq.frames / seq.fps, 4),
        "stabiliser_ms_per_frame": round(1000 * stab[0] / max(1, seq.frames), 2) if stab is not None else None,
        "network_frames": seq.frames - stab[1] if stab is not None else None,
    }


@contextlib.contextmanager
def render_threads() -> Iterator[None]:
    """torch's intra-op threads while a video renders: a quarter of the cores (at least 1). The encoder's
    threads already keep the cores busy, and an op split across threads waits for the busiest one: on 2
    cores a learned render was ~5 % faster and spent 3 CPU-s less (of 22) with one torch thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 4))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class FixedShots:
    """The grade of each frame when every shot is known before the render."""

    def __init__(self, job: RenderJob) -> None:
        self.ends, self.grades = [s.end for s in job.shots], job.grades

    def grade_for(self, index: int) -> tuple[int, ShotGrade]:
        shot = min(bisect.bisect_right(self.ends, index), len(self.ends) - 1)
        return shot, self.grades[shot]

    def grade_of(self, shot: int) -> ShotGrade:
        return self.grades[min(max(shot, 0), len(self.grades) - 1)]


class Stopped(Exception):
    """The render ended (or failed): the background analysis stops."""


class ShotFeed:
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
        self.timeline = Timeline()

    def check(self) -> None:
        """Raise in the background thread once the render has stopped."""
        if self.stopped:
            raise Stopped

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


def stream_video_job(
    job: RenderJob, reference: torch.Tensor, options: GradeOptions, progress: Progress, timings: dict[str, float]
) -> tuple[dict, list[ShotGrade]]:
    """Analyse, fit (fast mode) and render one video in one go: a background thread finds the shots
    and fits each one's look while the render grades the shots already fitted. Same result as
    analysing first, then fitting, then rendering; the analysis pass hides behind the encoder."""
    info = job.info
    matrix, full_range = video_io.yuv_matrix(info), video_io.range_of(info) == 2
    native = _native(job, options, matrix, composed=True)
    feed = ShotFeed()
    found: dict = {}
    fit_seconds = [0.0]

    def on_shot(start: int, end: int, key_frame: int, key: np.ndarray, flat: bool, gains: np.ndarray) -> None:
        t = time.perf_counter()
        if job.colour is not None:
            key = job.colour.frame_in(key)
        if flat:  # black, flat, a title card: the global tone mapping only
            lut = tone_lut(reference, TransferSettings(seed=options.seed))
        else:
            lut = fast_lut([image_io.to_tensor(key)], reference, TransferSettings(seed=options.seed))
        fit_seconds[0] += time.perf_counter() - t
        feed.timeline.add(start, gains)  # before the grade is published: the render reads it at once
        feed.add(
            end, ShotGrade(lut, options.strength), lambda g: managed(job.colour, g).prepare(native, matrix, full_range)
        )

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
        except Stopped:
            feed.close()
        except BaseException as e:  # handed to the render thread, which raises it
            feed.close(e)
        finally:
            found["seconds"] = time.perf_counter() - t
            analysed.set()

    analysed = threading.Event()  # waited on, not join(): an interrupted join() marks a running thread stopped

    worker = threading.Thread(target=analyse, name="grade-analyse", daemon=True)
    t = time.perf_counter()
    worker.start()
    ok = False
    try:
        fields = render_video_job(job, options, progress, feed)
        ok = True
    finally:
        feed.end_render(ok)
        again = None
        while not analysed.is_set():  # it stops at its next frame; an interruption does not cut this wait short
            try:
                analysed.wait(0.1)
            except KeyboardInterrupt as e:
                again = e
        for g in feed.grades:
            managed(job.colour, g).release()  # a table the analysis prepared after the render had ended
        if again is not None:
            raise again
    if feed.error is not None:
        raise feed.error
    shots = found["shots"]
    job.shots, job.keys, job.grades = shots.shots, shots.keys, feed.grades
    if job.colour is not None:
        job.keys = [job.colour.frame_in(k) for k in job.keys]
    timings["analyse"] = found["seconds"]
    timings["fit"] = fit_seconds[0]
    timings["render"] = time.perf_counter() - t  # overlaps the analysis and the fitting
    return {**fields, "shots": job.shots}, feed.grades


def _native(job: RenderJob, options: GradeOptions, matrix: int, composed: bool) -> bool:
    """Whether frames are graded in their own 8-bit 4:2:0 YCbCr (:func:`grade.colourgrade.yuv420_ok`)."""
    if video_frames_target(job.out, job.info) is not None:  # an image sequence is written from RGB
        return False
    return video_io.native_yuv420(job.info, job.out, options.codec, options.crf) and yuv420_ok(
        job.colour, matrix, composed
    )


def render_video_job(job: RenderJob, options: GradeOptions, progress: Progress, shots: ShotFeed | None = None) -> dict:
    info = job.info
    pick = shots or FixedShots(job)
    current: dict = {"shot": -1}
    matrix, full_range = video_io.yuv_matrix(info), video_io.range_of(info) == 2
    native = _native(job, options, matrix, composed=shots is not None or all(g.learned is None for g in job.grades))
    floats = job.colour is not None and job.colour.float_frames  # a scene-linear pull: float frames out
    used: dict[int, ShotGrade | ManagedGrade] = {}  # the grades frames went through (colour: managed)

    def chosen(grade: ShotGrade) -> ShotGrade | ManagedGrade:
        g = managed(job.colour, grade)
        used[id(grade)] = g
        return g

    timeline = getattr(pick, "timeline", None) or job.timeline or Timeline()
    prepared: dict[int, ShotGrade] = {}  # grades holding a lookup table

    def run(grade: ShotGrade, pixels: np.ndarray, gain: float) -> np.ndarray | Callable[[], np.ndarray]:
        """``grade`` on a frame of exposure ``gain`` (a fade): graded as the undarkened frame, then
        faded again toward the grade's black."""
        if gain == 1.0:
            return grade.grade(pixels, info.height, info.width, defer=True)
        black = grade.black()
        if gain <= 1e-3:  # black: the reference's black level
            if floats:
                return np.broadcast_to(black.astype(np.float32), (info.height, info.width, 3)).copy()
            return regain(pixels, 0.0, black, native, info.height, matrix, full_range)
        lifted = ungain(pixels, gain, native, info.height, full_range)
        out = grade.grade(lifted, info.height, info.width, defer=True)

        # float frames of a scene-linear pull are faded in linear light as a sequence's are (fade_powers)
        out_gain = gain ** fade_powers(job.colour)[1] if floats else gain

        def finish() -> np.ndarray:
            graded = out() if callable(out) else out
            return regain(graded, out_gain, black, native, info.height, matrix, full_range)

        return finish

    def grade_frame(index: int, pixels: np.ndarray) -> np.ndarray | Callable[[], np.ndarray]:
        shot, grade = pick.grade_for(index)
        grade = chosen(grade)
        mix = timeline.dissolve(index)
        other = None
        if mix is not None:  # the other side of the dissolve, its look cross-faded in
            other = chosen(pick.grade_of(shot + 1) if index < mix[0] else pick.grade_of(shot - 1))
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
            return cross_fade(ra() if callable(ra) else ra, rb() if callable(rb) else rb, w)

        return finish

    def on_frame(i: int) -> None:
        task.advance()
        if i % 12 == 11:
            stab = stabiliser_stats(list(used.values()))
            if stab is not None:
                network = 100 * (1 - stab[1] / (i + 1))
                task.update(info=f"stabiliser {1000 * stab[0] / (i + 1):.1f} ms/frame, network on {network:.0f} %")

    frames_out = video_frames_target(job.out, info)  # a video graded into an image sequence, or None
    sink = SequenceWriter(stating(frames_out, job.colour)) if frames_out is not None else None
    try:
        with (
            progress.stage("render", max(info.frames, job.shots[-1].end if job.shots else 0)) as task,
            atomic_output(job.out, force=options.force) if sink is None else contextlib.nullcontext(job.out) as tmp,
            render_threads(),
        ):
            stats = video_io.render_video(
                job.source,
                tmp,
                info,
                grade_frame,
                codec=options.codec,
                crf=options.crf,
                on_frame=on_frame,
                # frames are written from 16-bit codes whatever the clip's depth (a DPX is 10-bit, a TIFF 16)
                pixel_format="rgb48le" if sink is not None else "yuv420p" if native else None,
                workers=max(1, min(4, (os.cpu_count() or 1) // 2)),
                output_tags=job.colour.output_tags if job.colour is not None else None,
                sink=sink,
            )
            damage = damage_of(info, stats.frames, stats.decode_error)
            if damage is not None and options.strict:  # before the output is published: nothing is written
                raise InputError(f"{damage.message(job.source)}; {setting('strict')}: nothing written")
            if sink is not None:
                there = sink.existing()
                if there and not options.force:
                    raise OutputError(f"output exists: {there[0]} (use {setting('force')})")
                sink.publish()
    finally:
        if sink is not None:
            sink.discard()
    for g in [*pick.grades, *used.values()]:
        g.release()
    stab = stabiliser_stats(list(used.values()))
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
