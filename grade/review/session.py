"""What the review page shows and does, without any web code: the media the user named or uploaded
(each known by an id, never by a path a request carries), the shots of each clip, the look of each
shot (fitted once per shot, reference and mode, and cached: a strength change never refits), the
pictures and scopes, and the background jobs (learned training, renders).

Strength: a look at strength ``s`` is ``source + s * (graded - source)`` (fast mode blends its LUT
with the identity, which trilinear interpolation makes the same blend of the pictures; learned mode
blends its output so), so the full-strength picture of a frame is graded once and a strength change
is one weighted sum (:func:`blend`).
"""

from __future__ import annotations

import dataclasses
import itertools
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from grade.errors import GradeError, InputError
from grade.review import scopes
from grade.review.jobs import Cancelled, Job, JobProgress, Memo
from grade.review.pictures import blend, fit_display, wipe

ID_PATTERN = r"^[cr][0-9]{1,6}$"  # c0, c1, ... clips; r0, r1, ... references and looks


VIDEO_EXTENSIONS = {
    ".mp4",
    ".m4v",
    ".mov",
    ".qt",
    ".mkv",
    ".webm",
    ".avi",
    ".ts",
    ".mts",
    ".m2ts",
    ".nut",
    ".mxf",
}


LOOK_EXTENSIONS = {".cube"}


DEFAULT_MAX_UPLOAD = 2 * 1024**3  # bytes


DISPLAY_SIDE = 1920  # pictures on the page are at most this wide (a 1080p frame is shown whole)


Mode = Literal["fast", "learned"]


Kind = Literal["before", "after", "wipe"]


Which = Literal["before", "after", "reference"]


Scope = Literal["waveform", "parade", "vectorscope"]


class Choice(BaseModel):
    """A shot's settings on the page."""

    model_config = ConfigDict(extra="forbid")

    look: str = Field(pattern=ID_PATTERN)  # a reference or look id
    mode: Mode = "learned"
    strength: float = Field(1.0, ge=0.0, le=1.0)
    regional: float = Field(1.0, ge=0.0, le=1.0)


class Update(BaseModel):
    """What a request may change of a shot's settings (read from a form or JSON, validated)."""

    model_config = ConfigDict(extra="ignore")

    look: str | None = Field(None, pattern=ID_PATTERN)
    mode: Mode | None = None
    strength: float | None = Field(None, ge=0.0, le=1.0)
    regional: float | None = Field(None, ge=0.0, le=1.0)
    all_shots: bool = False


@dataclass
class Media:
    """A file the user named on the command line or uploaded."""

    id: str
    kind: Literal["clip", "reference", "look"]  # look: a fixed look (a .cube or a preset), nothing to fit
    path: Path | None  # None: a library preset (``look``)
    name: str  # as shown on the page
    uploaded: bool = False
    look: Any = None  # grade.api.Look for a fixed look
    picture: np.ndarray | None = None  # reference: RGB uint8, long side <= DISPLAY_SIDE / 2
    info: Any = None  # clip: grade.io.video.VideoInfo
    output: Path | None = None  # clip: where a render writes (None: grade's default beside the source)


def _message(e: BaseException, path: Path | None, name: str) -> str:
    """A library error about an uploaded file, naming the file as the user knows it (not our temp path)."""
    text = str(e)
    if path is not None:
        text = text.replace(str(path), name)
    return " ".join(text.split())


class ReviewSession:
    """The state behind one review page.

    Args:
        clips: videos named on the command line (checked: each must be a video).
        looks: reference stills (a look is fitted per shot) or ``.cube`` LUTs (applied as they are).
        preset: a library preset name or ``.gpreset`` file, applied as it is.
        mode, strength, regional: every shot's starting settings.
        fit: look settings for :func:`grade.api.fit_look` (``steps``, ``seed``, ``look_side``, ``device``).
        render: :class:`grade.options.GradeOptions` fields for renders (``codec``, ``crf``, ``force``, ...).
        output: where the first clip renders to (default ``<stem>.graded.<ext>`` beside it).
        library: the presets folder (default ``$GRADE_PRESETS`` or the platform's).
        workdir: the folder for uploads and downloads (default: a new temporary folder); removed by
            :meth:`close`.
        max_upload: the largest upload, bytes.
        colour: colour management as ``grade`` does it (:class:`grade.review.colour.ReviewColour`):
            ``input_space``, ``working_space``, ``output_space``, ``keep_log``, ``ocio_config``. With them
            (or a preset made in a working space, or a PQ / HLG clip) looks are fitted in the working space
            and the pictures are shown in the output space, as the render writes them.
    """

    def __init__(
        self,
        clips: Sequence[Path] = (),
        looks: Sequence[Path] = (),
        *,
        preset: str | None = None,
        mode: Mode = "learned",
        strength: float = 1.0,
        regional: float = 1.0,
        fit: dict[str, Any] | None = None,
        render: dict[str, Any] | None = None,
        output: Path | None = None,
        library: Path | None = None,
        workdir: Path | None = None,
        max_upload: int = DEFAULT_MAX_UPLOAD,
        colour: dict[str, Any] | None = None,
    ) -> None:
        from grade.review.colour import ReviewColour

        self.colour = ReviewColour(colour)  # an unknown colour-space name fails here, as one line
        self.defaults = {"mode": mode, "strength": strength, "regional": regional}
        Choice(look="r0", **self.defaults)  # an out-of-range start value fails here, as one line
        self.fit_settings = {k: v for k, v in (fit or {}).items() if v is not None}
        self.render_options = {k: v for k, v in (render or {}).items() if v is not None}
        self.library = library
        self.max_upload = int(max_upload)
        self.media: dict[str, Media] = {}
        self.choices: dict[tuple[str, int], Choice] = {}
        self.jobs: dict[str, Job] = {}
        self._ids = {"c": itertools.count(), "r": itertools.count(), "j": itertools.count()}
        self._lock = threading.RLock()
        self._shots = Memo(8)
        self._frames = Memo(12)
        self._looks = Memo(64)
        self._graded = Memo(12)
        self._pictures = Memo(6)
        self._training: dict[tuple, Job] = {}
        self._train_pool = ThreadPoolExecutor(1, thread_name_prefix="review-train")
        self._render_pool = ThreadPoolExecutor(1, thread_name_prefix="review-render")
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="grade-review-")) if workdir is None else Path(workdir)
        self.closed = False
        try:
            for path in clips:
                self._add_clip(Path(path), Path(path).name, uploaded=False)
            if output is not None and clips:
                self.media["c0"].output = Path(output)
            for path in looks:
                self._add_look(Path(path), Path(path).name, uploaded=False)
            if preset is not None:
                self._add_preset(preset)
        except BaseException:
            self.close()
            raise

    # --- media -------------------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}{next(self._ids[prefix])}"

    def _add_clip(self, path: Path, name: str, uploaded: bool) -> Media:
        from grade.io import image as image_io
        from grade.io.video import probe

        if image_io.is_image_path(path):
            raise InputError(f"review takes a video clip, not a still: {name}")
        try:
            info = probe(path)
        except GradeError as e:
            raise InputError(_message(e, path if uploaded else None, name)) from None
        media = Media(self._new_id("c"), "clip", path, name, uploaded, info=info)
        if uploaded:
            media.output = self.workdir / "renders" / f"{media.id}.graded{path.suffix.lower()}"
        self.media[media.id] = media
        return media

    def _add_look(self, path: Path, name: str, uploaded: bool) -> Media:
        from grade.io import image as image_io

        where = path if uploaded else None
        if path.suffix.lower() in LOOK_EXTENSIONS:
            from grade.api import Look
            from grade.library import read_look

            try:
                look = Look(read_look(path))
            except GradeError as e:
                raise InputError(_message(e, where, name)) from None
            media = Media(self._new_id("r"), "look", path, name, uploaded, look=look)
            media.picture = look.preset.reference
        else:
            if not image_io.is_image_path(path):
                raise InputError(f"a reference is a still image (.jpg, .png, .tif, ...) or a .cube LUT: {name}")
            try:
                still = image_io.read_image(path, what="reference")
            except GradeError as e:
                raise InputError(_message(e, where, name)) from None
            picture = fit_display(image_io.as_uint8(still.rgb), DISPLAY_SIDE // 2)
            media = Media(self._new_id("r"), "reference", path, name, uploaded, picture=picture)
        self.media[media.id] = media
        return media

    def _add_preset(self, name: str) -> Media:
        from grade.api import Look
        from grade.library import read_look

        look = Look(read_look(name, self.library))
        path = Path(name) if name.lower().endswith(".gpreset") else None
        media = Media(self._new_id("r"), "look", path, f"preset {look.name}", False, look=look)
        media.picture = look.preset.reference
        self.media[media.id] = media
        return media

    def add_upload(self, kind: Literal["clip", "reference"], path: Path, name: str) -> Media:
        """Take an uploaded file (already in :attr:`workdir`, under a name of ours): checked for its type
        (extension, then PyAV's probe or the image header) before anything decodes it; a refused file
        is deleted. Raises InputError naming the file as uploaded."""
        suffix = Path(name).suffix.lower()
        try:
            if kind == "clip":
                if suffix not in VIDEO_EXTENSIONS:
                    raise InputError(f"{name}: not a video file (use one of {', '.join(sorted(VIDEO_EXTENSIONS))})")
                return self._add_clip(path, name, uploaded=True)
            from grade.io import image as image_io

            if suffix not in image_io.IMAGE_EXTENSIONS | LOOK_EXTENSIONS:
                raise InputError(f"{name}: a reference is a still image (.jpg, .png, .tif, ...) or a .cube LUT")
            return self._add_look(path, name, uploaded=True)
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    def clips(self) -> list[Media]:
        return [m for m in self.media.values() if m.kind == "clip"]

    def looks(self) -> list[Media]:
        return [m for m in self.media.values() if m.kind != "clip"]

    def get(self, media_id: str, kind: Literal["clip", "look"]) -> Media:
        """The media of an id; KeyError for an unknown id or one of another kind."""
        m = self.media[media_id]
        if (kind == "clip") != (m.kind == "clip"):
            raise KeyError(media_id)
        return m

    # --- shots and settings ------------------------------------------------------------------------

    def shot_list(self, clip: str):
        """The clip's :class:`grade.shots.ShotList` (detected once)."""
        from grade.api import detect_shots

        media = self.get(clip, "clip")
        return self._shots.get(clip, lambda: detect_shots(media.path))

    def shot(self, clip: str, n: int):
        shots = self.shot_list(clip).shots
        if not 0 <= n < len(shots):
            raise KeyError(n)
        return shots[n]

    def choice(self, clip: str, n: int) -> Choice:
        self.shot(clip, n)
        with self._lock:
            if (clip, n) not in self.choices:
                looks = self.looks()
                if not looks:
                    raise InputError("no reference yet: upload a reference still")
                self.choices[(clip, n)] = Choice(look=looks[0].id, **self.defaults)
            return self.choices[(clip, n)]

    def update(self, clip: str, n: int, change: Update) -> Choice:
        """Change a shot's settings (or every shot's, with ``all_shots``); a learned look that is not
        trained yet starts training in the background."""
        if change.look is not None:
            self.get(change.look, "look")
        fields = change.model_dump(exclude_none=True, exclude={"all_shots"})
        targets = range(len(self.shot_list(clip).shots)) if change.all_shots else [n]
        with self._lock:
            for i in targets:
                self.choices[(clip, i)] = self.choice(clip, i).model_copy(update=fields)
        for i in targets:
            self.look(clip, i)  # starts the training where it is needed
        return self.choice(clip, n)

    def frame_range(self, clip: str, n: int) -> tuple[int, int]:
        s = self.shot(clip, n)
        return s.start, s.end

    # --- looks -------------------------------------------------------------------------------------

    def _fit_key(self, clip: str, n: int, c: Choice) -> tuple:
        look = self.get(c.look, "look")
        return (clip, n, c.look) if look.kind == "look" else (clip, n, c.look, c.mode)

    def look(self, clip: str, n: int):
        """The shot's look at full strength (``regional`` as chosen), and its state: ``ready``, or
        ``training`` (the fast look is shown meanwhile) or ``failed: ...`` for a learned look.

        Returns ``(look, state, job)``, job the training job or None."""
        from grade.api import Look

        c = self.choice(clip, n)
        media = self.get(c.look, "look")
        if media.kind == "look":
            return Look(media.look.preset, 1.0, c.regional), "ready", None
        key = self._fit_key(clip, n, c)
        if c.mode == "learned":
            trained = self._looks.peek(key)
            if trained is not None:
                return Look(trained.preset, 1.0, c.regional), "ready", None
            job = self._train(clip, n, c, key)
            fast = self._fitted(clip, n, c.model_copy(update={"mode": "fast"}))
            state = "failed: " + job.message if job.state == "failed" else "training"
            return Look(fast.preset, 1.0, c.regional), state, job
        return Look(self._fitted(clip, n, c).preset, 1.0, c.regional), "ready", None

    def _fitted(self, clip: str, n: int, c: Choice):
        key = self._fit_key(clip, n, c)
        return self._looks.get(key, lambda: self._fit(clip, n, c, c.mode, None))

    def _fit(self, clip: str, n: int, c: Choice, mode: Mode, progress: Any):
        """Fit the shot's look to its reference: in the working space where colour-managed."""
        from grade.api import fit_look

        ref = self.get(c.look, "look").path
        keyframe = self.shot_list(clip).keys[n]
        colour = self.pipeline(clip, c)
        if colour is None:
            return fit_look([keyframe], ref, mode, progress, **self.fit_settings)
        return self.colour.fit(colour, keyframe, ref, mode, progress, self.fit_settings)

    def pipeline(self, clip: str, c: Choice):
        """The clip's :class:`grade.colourspace.ColourPipeline` for the shot's look (None: display RGB as
        it is): the session's colour settings, the clip's tags and a preset's working space."""
        look = self.get(c.look, "look")
        working = look.look.preset.manifest.working_space if look.kind == "look" else None
        return self.colour.pipeline(self.get(clip, "clip").info, working)

    def _train(self, clip: str, n: int, c: Choice, key: tuple) -> Job:
        with self._lock:
            job = self._training.get(key)
            if job is not None and job.state not in ("failed", "cancelled"):
                return job
            if job is not None and job.state == "failed":
                return job  # shown on the page; a new choice of settings retries
            job = Job(self._new_id("j"), "train", f"train shot {n + 1}")
            self._training[key] = job
            self.jobs[job.id] = job

        def run() -> None:
            self._run(job, lambda p: self._looks.get(key, lambda: self._fit(clip, n, c, "learned", p)))

        self._train_pool.submit(run)
        return job

    def _run(self, job: Job, work: Callable[[JobProgress], Any]) -> Any:
        t = time.perf_counter()
        job.state = "running"
        try:
            if job.cancel.is_set():
                raise Cancelled("stopped")
            result = work(JobProgress(job))
            job.state = "done"
            return result
        except Cancelled:
            job.state, job.message = "cancelled", "stopped"
        except GradeError as e:
            job.state, job.message = "failed", str(e)
        except Exception as e:  # a bug: shown on the page in one line
            job.state, job.message = "failed", f"internal error: {type(e).__name__}: {' '.join(str(e).split())}"
        finally:
            job.seconds = time.perf_counter() - t
        return None

    # --- pictures ----------------------------------------------------------------------------------

    def frame(self, clip: str, index: int, deep: bool = False) -> np.ndarray:
        """Frame ``index`` of the clip, RGB ``(H, W, 3)`` at display size (long side <= 1920): uint8, or
        with ``deep`` uint16 for a clip of more than 8 bits (colour-managed pictures are graded from it)."""
        from grade.io.decode import decode_video, rgb_kwargs

        media = self.get(clip, "clip")
        deep = deep and media.info.bit_depth > 8

        def decode() -> np.ndarray:
            for _, f in decode_video(media.path, frames=(index, index + 1)):
                rgb = f.to_ndarray(format="rgb48le" if deep else "rgb24", **rgb_kwargs(media.info))
                return fit_display(np.ascontiguousarray(rgb), DISPLAY_SIDE)
            raise InputError(f"frame {index} of {media.name} does not decode")

        return self._frames.get((clip, index, deep), decode)

    def check_frame(self, clip: str, n: int, index: int | None) -> int:
        """The frame to show: ``index`` (within the shot) or the shot's key frame. KeyError outside."""
        s = self.shot(clip, n)
        if index is None:
            return s.key_frame
        if not s.start <= index < s.end:
            raise KeyError(index)
        return index

    def picture(self, clip: str, n: int, index: int | None, kind: Kind, position: float = 0.5) -> np.ndarray:
        """Before, after (at the shot's strength) or the wipe of the two at ``position``: RGB uint8."""
        index = self.check_frame(clip, n, index)
        c = self.choice(clip, n)
        colour = self.pipeline(clip, c)
        source = self.frame(clip, index, deep=colour is not None)
        before = source if colour is None else self._shown(colour, clip, index, source)
        if kind == "before":
            return before
        look, state, _ = self.look(clip, n)
        key = (clip, index, self._fit_key(clip, n, c), state == "ready", c.regional)
        if colour is None:
            full = self._graded.get(key, lambda: look.apply(source))
            after = blend(before, full, c.strength)
        else:  # the render's own path at the shot's strength: the blend is in the working space
            after = self._graded.get(
                (*key, c.strength, _spaces(colour)),
                lambda: self.colour.apply(colour, key[2:], look.preset, c.strength, c.regional, source),
            )
        return after if kind == "after" else wipe(before, after, position)

    def _shown(self, colour: Any, clip: str, index: int | str, source: np.ndarray) -> np.ndarray:
        """An input-space picture as the output space shows it, no look (cached)."""
        return self._graded.get(("before", clip, index, _spaces(colour)), lambda: self.colour.before(colour, source))

    def reference_picture(self, look_id: str) -> np.ndarray | None:
        return self.get(look_id, "look").picture

    def thumb(self, clip: str, n: int, width: int = 192) -> np.ndarray:
        key = self.shot_list(clip).keys[n]
        h, w = key.shape[:2]
        small = cv2.resize(key, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
        colour = self.pipeline(clip, self.choice(clip, n))
        return small if colour is None else self._shown(colour, clip, f"thumb{n}-{width}", small)

    def scope(self, clip: str, n: int, index: int | None, which: Which, kind: Scope) -> np.ndarray:
        """A scope picture (RGB uint8) of the shot's frame before or after, or of its reference."""
        if which == "reference":
            pic = self.reference_picture(self.choice(clip, n).look)
            if pic is None:
                raise KeyError("reference")
        else:
            pic = self.picture(clip, n, index, which)
        return {"waveform": scopes.waveform, "parade": scopes.parade, "vectorscope": scopes.vectorscope}[kind](pic)

    # --- render and presets ------------------------------------------------------------------------

    def start_render(self, clip: str, overwrite: bool = False) -> Job:
        """Render the whole clip in the background with :func:`grade.api.grade_file`.

        One render grades the clip with one setting (a reference fitted per shot, or one fixed look), so
        every shot must have the same look, mode, strength and regional balance (InputError otherwise).
        """
        media = self.get(clip, "clip")
        shots = self.shot_list(clip).shots
        picked = {self.choice(clip, i).model_dump_json() for i in range(len(shots))}
        if len(picked) > 1:
            raise InputError(
                "the shots have different settings, and a render grades the whole clip with one setting: "
                "tick 'all shots' and apply the settings to use"
            )
        c = self.choice(clip, 0)
        look = self.get(c.look, "look")
        options = {**self.render_options, **self.colour.settings}
        if overwrite:
            options["force"] = True
        if media.output is not None:
            media.output.parent.mkdir(parents=True, exist_ok=True)
        job = Job(self._new_id("j"), "render", f"render {media.name}")
        with self._lock:
            self.jobs[job.id] = job

        def run() -> None:
            from grade.api import Look, grade_file

            def work(progress: JobProgress):
                if look.kind == "look":
                    target = Look(look.look.preset, c.strength, c.regional)
                    return grade_file(media.path, target, media.output, progress, **options)
                fit = {k: v for k, v in self.fit_settings.items() if k != "working_side"}
                extra = {"mode": c.mode, "strength": c.strength, "regional": c.regional, **fit}
                return grade_file(media.path, look.path, media.output, progress, **options, **extra)

            report = self._run(job, work)
            if report is not None:
                job.output = Path(report.output)
                job.message = f"{report.frames} frames, {len(report.shots)} shots, mode {report.mode}"

        self._render_pool.submit(run)
        return job

    def output_file(self, job_id: str) -> Path:
        """The file a finished render wrote (KeyError for any other id)."""
        job = self.jobs[job_id]
        if job.kind != "render" or job.state != "done" or job.output is None or not job.output.is_file():
            raise KeyError(job_id)
        return job.output

    def _shot_look(self, clip: str, n: int):
        look, state, _ = self.look(clip, n)
        if state != "ready":
            raise InputError(f"shot {n + 1}'s learned look is not trained yet ({state})")
        return look

    def save_preset(self, clip: str, n: int, name: str, force: bool = False) -> Path:
        """Save the shot's look into the presets library as ``name``; returns its file. The preset is
        the full-strength look (the strength it was reviewed at goes into its notes)."""
        from grade.library import Library
        from grade.presets import validate_name

        validate_name(name)
        c = self.choice(clip, n)
        preset = self._shot_look(clip, n).preset
        notes = f"reviewed at strength {c.strength:g}, regional {c.regional:g} (apply with --strength)"
        manifest = preset.manifest.model_copy(update={"name": name, "notes": notes})
        return Library(self.library).save(dataclasses.replace(preset, manifest=manifest), force=force)

    def preset_file(self, clip: str, n: int) -> Path:
        """The shot's look as a ``.gpreset`` file in :attr:`workdir` (for download)."""
        look = self._shot_look(clip, n)
        folder = self.workdir / "presets"
        folder.mkdir(exist_ok=True)
        return look.save(folder / f"{clip}-shot{n + 1}.gpreset", force=True)

    def state(self, clip: str | None = None) -> dict[str, Any]:
        """What the page needs to know, as JSON-ready data."""
        out: dict[str, Any] = {
            "clips": [{"id": m.id, "name": m.name} for m in self.clips()],
            "looks": [{"id": m.id, "name": m.name, "kind": m.kind} for m in self.looks()],
            "jobs": [j.as_dict() for j in self.jobs.values()],
        }
        if clip is not None:
            shots = self.shot_list(clip).shots
            out["shots"] = [{**s.model_dump(), "choice": self.choice(clip, s.index).model_dump()} for s in shots]
        return out

    def close(self) -> None:
        """Stop the jobs (a render in progress leaves nothing behind) and remove :attr:`workdir`."""
        if self.closed:
            return
        self.closed = True
        for job in list(self.jobs.values()):
            job.cancel.set()
        self._train_pool.shutdown(wait=True, cancel_futures=True)
        self._render_pool.shutdown(wait=True, cancel_futures=True)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _spaces(colour: Any) -> tuple:
    """A colour pipeline as a cache key: its spaces and config (pipelines are cached, not kept)."""
    return (colour.input, colour.working, colour.output, colour.config_source)


__all__ = ["Choice", "Job", "Media", "ReviewSession", "Update", "blend", "wipe"]
