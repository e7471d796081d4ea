"""Conform an edit: every event of an EDL / FCP XML / OTIO timeline graded in one resumable job.

read_edit -> events (OpenTimelineIO and its CMX 3600 / FCP adapters) -> relink each event to media
in the ``--media`` folders (by source file, clip or reel name; source in/out located with the
media's own start timecode) -> a look per event (looks file rules, ``LOOK:`` comments, or the
default look) -> one look per scene, trained once on the key frames of its events and kept as a
preset in the output folder -> each event rendered as its own graded clip with handles -> a new
edit (same format, and ``.otio``) pointing at the graded clips with the same record timeline.

A job file (``conform-job.json``) in the output folder records each event's fingerprint and
output; a re-run skips events already done with the same inputs. Every output is written to a
temporary file and renamed when complete, and the job file is rewritten atomically after each
event, so an interrupted conform never leaves a half-written clip or an inconsistent job.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import math
import os
import re
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from grade.cdl import CDL
from grade.errors import InputError, OutputError, setting
from grade.io.atomic import atomic_output

EDIT_SUFFIXES = {".edl", ".xml", ".otio", ".fcpxml"}
MEDIA_SUFFIXES = {".mov", ".mp4", ".mxf", ".mkv", ".avi", ".m4v", ".webm", ".ts", ".mts", ".mpg"}
JOB_FILE = "conform-job.json"
JOB_VERSION = 1


@dataclass
class Event:
    """One clip of the edit's first video track, in frames at the edit's rate."""

    number: int  # position in the edit, from 1
    name: str  # clip name (EDL: * FROM CLIP NAME, else the event's name)
    reel: str | None
    source_file: str | None  # EDL * SOURCE FILE, or the media reference's file name
    src_in: int  # source timecode in frames, inclusive (visible range, transitions included)
    src_out: int  # exclusive
    rec_in: int  # record timecode in frames
    rec_out: int
    markers: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    cdl: CDL | None = None
    transition_in: str | None = None  # e.g. "SMPTE_Dissolve 35"
    speed_effect: str | None = None  # M2 / time warps: not supported, reported
    trim_in: int = 0  # source frame shown at rec_in (the visible range may start earlier, for a dissolve)
    dissolve_in: tuple[int, int] | None = None  # (frames before, after) the cut of a transition into this event

    @property
    def look_comment(self) -> str | None:
        for text in [*self.comments, *self.markers]:
            m = re.search(r"\bLOOK:\s*(\S+)", text)
            if m:
                return m.group(1)
        return None


@dataclass
class Edit:
    path: Path
    rate: float
    name: str
    events: list[Event]
    timeline: object  # opentimelineio.schema.Timeline


def _tc_frames(tc: str, rate: float) -> int:
    from grade.io.video import timecode_frames

    return timecode_frames(tc, rate)


def _first_record_in(path: Path, rate: float) -> int | None:
    """The first event's record-in timecode of a CMX EDL (OTIO's adapter does not keep it)."""
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 8 and parts[0].isdigit() and re.fullmatch(r"\d\d[:;]\d\d[:;]\d\d[:;.]\d\d", parts[-2]):
            return _tc_frames(parts[-2], rate)
    return None


def _line_of(path: Path, why: str) -> str:
    """`` (line N)`` for an EDL error that names an event ("... for clip 003"), else ``""``."""
    m = re.search(r"\bclip (\S+)", why)
    if not m or path.suffix.lower() != ".edl":
        return ""
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if line.split()[:1] == [m.group(1)]:
            return f" (line {n})"
    return ""


def read_edit(path: str | Path, rate: float | None = None) -> Edit:
    """Read an edit with OpenTimelineIO (EDL, FCP 7 XML, .otio, FCP X XML where the adapter reads it).

    Raises:
        InputError: missing, unknown format, or malformed (the adapter's message, naming the line
            or clip where it does).
    """
    import opentimelineio as otio

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such edit file: {path}")
    if path.suffix.lower() not in EDIT_SUFFIXES:
        raise InputError(f"not an edit file (use .edl, .xml, .fcpxml or .otio): {path}")
    kwargs = {}
    if path.suffix.lower() == ".edl":
        kwargs["rate"] = rate or 24
        text = path.read_bytes()
        if b"\x00" in text[:4096]:
            raise InputError(f"not an EDL (binary file): {path}")
    try:
        timeline = otio.adapters.read_from_file(str(path), **kwargs)
    except Exception as e:  # the adapters raise many types; all mean "cannot read this edit"
        why = " ".join(str(e).split())[:300] or type(e).__name__
        if path.suffix.lower() == ".edl":
            why = _edl_diagnosis(path) or why
        raise InputError(f"cannot read edit {path}{_line_of(path, why)}: {why}") from None
    if isinstance(timeline, otio.schema.SerializableCollection):
        timelines = list(timeline.find_children(descended_from_type=otio.schema.Timeline))
        if not timelines:
            raise InputError(f"no timeline in {path}")
        timeline = timelines[0]
    if not isinstance(timeline, otio.schema.Timeline):
        raise InputError(f"no timeline in {path} (it holds a {type(timeline).__name__})")
    try:
        return _edit_of(path, timeline, rate)
    except InputError as e:
        if str(path) in str(e):
            raise
        raise InputError(f"cannot read edit {path}: {e}") from None
    except (AttributeError, TypeError, ValueError, KeyError, IndexError, ZeroDivisionError, OverflowError) as e:
        # a timeline the adapter accepted but that does not hold together (no ranges, rate 0, ...)
        why = " ".join(str(e).split())[:200] or type(e).__name__
        raise InputError(f"cannot read edit {path}: malformed timeline ({why})") from None
    except otio.exceptions.OTIOError as e:
        why = " ".join(str(e).split())[:200] or type(e).__name__
        raise InputError(f"cannot read edit {path}: {why}") from None


_TRANSITION = re.compile(r"^(D|W\d{3}|K[BO]?)$", re.IGNORECASE)


def _edl_diagnosis(path: Path) -> str | None:
    """A clear reason for an EDL the adapter refused obscurely: an event number used twice without a
    transition between the two lines (the adapter then fails on an internal attribute)."""
    seen: dict[str, int] = {}
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        parts = line.split()
        if len(parts) < 6 or not parts[0].isdigit():
            continue
        number = parts[0]
        if number in seen and not (len(parts) > 3 and _TRANSITION.match(parts[3])):
            return f"event number {number} on line {n} repeats line {seen[number]} (only a dissolve or wipe may)"
        seen.setdefault(number, n)
    return None


def _edit_of(path: Path, timeline, rate: float | None) -> Edit:
    import opentimelineio as otio

    video = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Video]
    if not video:
        raise InputError(f"no video track in {path}")
    track = video[0]
    clips = [c for c in track if isinstance(c, otio.schema.Clip)]
    if not clips:
        raise InputError(f"no events in {path}")
    edit_rate = rate or clips[0].source_range.duration.rate
    if not (math.isfinite(edit_rate) and 0 < edit_rate <= 1000):
        raise InputError(f"edit {path} has no usable frame rate ({edit_rate}): give {setting('rate', 'FPS')}")
    start = timeline.global_start_time
    rec0 = round(start.rescaled_to(edit_rate).value) if start is not None else None
    if rec0 is None and path.suffix.lower() == ".edl":
        rec0 = _first_record_in(path, edit_rate)
    rec0 = rec0 or 0
    events = []
    previous_transition, offsets = None, None
    for item in track:
        if isinstance(item, otio.schema.Transition):
            before = round(item.in_offset.rescaled_to(edit_rate).value)
            after = round(item.out_offset.rescaled_to(edit_rate).value)
            previous_transition, offsets = f"{item.transition_type} {before + after}", (before, after)
            continue
        if not isinstance(item, otio.schema.Clip):
            previous_transition, offsets = None, None
            continue  # gaps
        ev = _event(item, len(events) + 1, edit_rate, rec0, previous_transition)
        ev.dissolve_in = offsets
        events.append(ev)
        previous_transition, offsets = None, None
    return Edit(path, float(edit_rate), timeline.name or path.stem, events, timeline)


def _event(clip, number: int, rate: float, rec0: int, transition: str | None) -> Event:
    import opentimelineio as otio

    meta = dict(clip.metadata)
    cmx = dict(meta.get("cmx_3600", {}) or {})
    visible = clip.visible_range()
    src_in = round(visible.start_time.rescaled_to(rate).value)
    src_out = src_in + round(visible.duration.rescaled_to(rate).value)
    rng = clip.range_in_parent()
    rec_in = rec0 + round(rng.start_time.rescaled_to(rate).value)
    rec_out = rec_in + round(rng.duration.rescaled_to(rate).value)
    source_file = None
    ref = clip.media_reference
    if isinstance(ref, otio.schema.ExternalReference) and ref.target_url:
        source_file = Path(ref.target_url.replace("file://", "")).name
    source_file = cmx.get("source_file") or meta.get("source_file") or source_file
    cdl = None
    raw = meta.get("cdl")
    if raw:
        cdl = _cdl_of(raw, clip.name or f"event {number}")
    speed = None
    for eff in clip.effects:
        if isinstance(eff, otio.schema.LinearTimeWarp) or "TimeWarp" in (eff.effect_name or ""):
            speed = eff.effect_name or "time warp"
    return Event(
        number=number,
        name=clip.name or f"event {number}",
        reel=cmx.get("reel"),
        source_file=source_file,
        src_in=src_in,
        src_out=src_out,
        rec_in=rec_in,
        rec_out=rec_out,
        trim_in=round(clip.source_range.start_time.rescaled_to(rate).value),
        markers=[m.name for m in clip.markers if m.name],
        comments=[str(c) for c in cmx.get("comments", []) or []],
        cdl=cdl,
        transition_in=transition,
        speed_effect=speed,
    )


def _cdl_of(raw, name: str) -> CDL:
    """An event's ASC CDL from the adapter's metadata; malformed values are the edit's fault."""
    try:
        sop = dict(raw.get("asc_sop", {}) or {})
        parts = [tuple(float(v) for v in sop.get(k, d)) for k, d in (("slope", (1,) * 3), ("offset", (0,) * 3))]
        parts.append(tuple(float(v) for v in sop.get("power", (1, 1, 1))))
        sat = float(raw.get("asc_sat", 1.0))
    except (AttributeError, TypeError, ValueError) as e:
        raise InputError(f"event {name}: malformed ASC CDL ({' '.join(str(e).split())[:100]})") from None
    values = [v for p in parts for v in p] + [sat]
    if any(len(p) != 3 for p in parts) or not all(np.isfinite(values)) or min(parts[2]) < 0:
        raise InputError(f"event {name}: malformed ASC CDL (three finite slope, offset, power values; power >= 0)")
    return CDL(*parts, sat)


# --- media --------------------------------------------------------------------------------------


@dataclass
class Media:
    path: Path
    start: int  # start timecode in frames at the edit's rate
    frames: int
    fps: float


class MediaIndex:
    """Video files under the ``--media`` folders (recursive), found by file name, stem, or reel."""

    def __init__(self, folders: list[Path]) -> None:
        self.files: list[Path] = []
        for folder in folders:
            if not folder.is_dir():
                raise InputError(f"{setting('media', folder)}: not a folder")
            for root, _dirs, names in os.walk(folder):
                for n in sorted(names):
                    if Path(n).suffix.lower() in MEDIA_SUFFIXES and not n.startswith("."):
                        self.files.append(Path(root) / n)
        self._by_key: dict[str, list[Path]] = {}
        for p in self.files:
            for key in {p.name.lower(), p.stem.lower()}:
                self._by_key.setdefault(key, []).append(p)
        self._probed: dict[Path, Media] = {}

    def find(self, event: Event, order: list[str]) -> Path | None:
        """The media of an event: the first key in ``order`` (``file``, ``clip``, ``reel``) that matches."""
        for how in order:
            key = {"file": event.source_file, "clip": event.name, "reel": event.reel}[how]
            if not key:
                continue
            key = key.strip().lower()
            for candidate in (key, Path(key).stem, key.rstrip(".")):
                hits = self._by_key.get(candidate)
                if hits:
                    return hits[0]
        return None

    def media(self, path: Path, rate: float) -> Media:
        if path not in self._probed:
            from grade.io.video import probe

            info = probe(path)
            try:
                start = _tc_frames(info.timecode, rate) if info.timecode else 0
            except ValueError:
                raise InputError(f"media {path} has a malformed timecode tag {info.timecode!r}") from None
            self._probed[path] = Media(path, start, info.frames, info.fps)
        return self._probed[path]


# --- looks --------------------------------------------------------------------------------------


class SceneLook(BaseModel):
    """A scene's look: exactly one of a reference still, a preset, or a .cube LUT."""

    model_config = ConfigDict(extra="forbid")

    reference: str | None = None
    preset: str | None = None
    cube: str | None = None

    @model_validator(mode="after")
    def _one(self) -> SceneLook:
        if sum(x is not None for x in (self.reference, self.preset, self.cube)) != 1:
            raise ValueError("give exactly one of reference, preset or cube")
        return self


class Rule(BaseModel):
    """Events that match every given condition take ``scene``."""

    model_config = ConfigDict(extra="forbid")

    scene: str
    reel: str | None = None  # glob, case-insensitive
    clip: str | None = None  # glob on the clip name, case-insensitive
    marker: str | None = None  # text contained in a marker/locator or comment, case-insensitive
    events: str | None = None  # "3", "1-5", "2,4,7-9"

    def matches(self, e: Event) -> bool:
        if self.reel is not None and not fnmatch.fnmatch((e.reel or "").lower(), self.reel.lower()):
            return False
        if self.clip is not None and not fnmatch.fnmatch(e.name.lower(), self.clip.lower()):
            return False
        if self.marker is not None and not any(self.marker.lower() in t.lower() for t in [*e.markers, *e.comments]):
            return False
        return not (self.events is not None and not any(a <= e.number <= b for a, b in _number_ranges(self.events)))


def _number_ranges(text: str) -> list[tuple[int, int]]:
    """``"2,4,7-9"`` -> ``[(2, 2), (4, 4), (7, 9)]`` (ranges, not sets: ``1-99999999999`` costs nothing)."""
    out: list[tuple[int, int]] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        a, _, b = part.partition("-")
        if not (a.isascii() and a.isdigit()) or (b and not (b.isascii() and b.isdigit())):
            raise ValueError(f"bad event range {text!r} (use 3, 1-5 or 2,4,7-9)")
        lo, hi = int(a), int(b or a)
        if hi < lo:
            raise ValueError(f"bad event range {part!r} in {text!r}: it runs backwards")
        out.append((lo, hi))
    return out


class LooksFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: str | None = None  # name of a scene
    scenes: dict[str, SceneLook] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names(self) -> LooksFile:
        for r in self.rules:
            if r.events is not None:
                _number_ranges(r.events)
            if r.scene not in self.scenes:
                raise ValueError(f"rule names unknown scene {r.scene!r}")
        if self.default is not None and self.default not in self.scenes:
            raise ValueError(f"default names unknown scene {self.default!r}")
        return self


def read_looks(path: Path) -> LooksFile:
    """Read and validate a looks file; relative paths are resolved against its folder."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"no such looks file: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"looks file {path} is not valid TOML: {' '.join(str(e).split())}") from None
    except OSError as e:
        raise InputError(f"cannot read looks file {path}: {e.strerror or e}") from None
    try:
        looks = LooksFile.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "file"
        raise InputError(f"looks file {path}: {where}: {first.get('msg')}") from None
    for name, scene in looks.scenes.items():
        for attr in ("reference", "cube", "preset"):
            v = getattr(scene, attr)
            if v is not None and ("\x00" in v or not v.strip()):
                raise InputError(f"looks file {path}: scenes.{name}.{attr}: not a usable file name: {v!r}")
            if v is not None and attr != "preset" and not Path(v).is_absolute():
                setattr(scene, attr, str(path.parent / v))
    return looks


def scene_of(event: Event, looks: LooksFile | None) -> str | None:
    """The event's scene: a ``LOOK:`` comment, else the first matching rule, else the default."""
    if looks is None:
        return None
    tag = event.look_comment
    if tag and tag in looks.scenes:
        return tag
    for rule in looks.rules:
        if rule.matches(event):
            return rule.scene
    return looks.default


# --- job file -----------------------------------------------------------------------------------


class EventStatus(BaseModel):
    number: int
    status: str  # "done", "skipped", "failed"
    fingerprint: str = ""
    output: str | None = None
    output_bytes: int | None = None
    scene: str | None = None
    frames: int | None = None
    seconds: float | None = None
    message: str | None = None


class Job(BaseModel):
    version: int = JOB_VERSION
    edit: str
    assembled: str | None = None  # the --assemble file this job wrote last
    events: dict[str, EventStatus] = Field(default_factory=dict)


def load_job(folder: Path, edit: Path) -> Job:
    path = folder / JOB_FILE
    if not path.exists():
        return Job(edit=str(edit))
    try:
        job = Job.model_validate_json(path.read_text())
    except (ValidationError, ValueError, OSError):
        return Job(edit=str(edit))  # unreadable: start over (outputs are re-verified anyway)
    return job if job.version == JOB_VERSION else Job(edit=str(edit))


def save_job(folder: Path, job: Job) -> None:
    data = job.model_dump_json(indent=1).encode()
    with atomic_output(folder / JOB_FILE, force=True) as tmp:
        Path(tmp).write_bytes(data)


def file_fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def output_name(event: Event, suffix: str) -> str:
    """Deterministic, filesystem-safe: ``E003_REEL_clip.ext``."""

    def clean(s: str | None) -> str:
        return re.sub(r"[^A-Za-z0-9_.+-]+", "_", s or "").strip("._")[:40]

    parts = [f"E{event.number:03d}", clean(event.reel), clean(event.name)]
    return "_".join(p for p in parts if p) + suffix


def _output_suffix(media: Path) -> str:
    """The graded clip's container: the media's, or QuickTime where grade cannot write that one (MXF, MPEG-PS)."""
    from grade.io.video import OUTPUT_EXTENSIONS

    return media.suffix if media.suffix.lower() in OUTPUT_EXTENSIONS else ".mov"


def ensure_output_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output folder {folder}: {e.strerror}") from None


# --- the job ------------------------------------------------------------------------------------


class ConformSettings(BaseModel):
    """What ``grade conform`` is asked to do (beyond the grading options)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    media: list[Path]
    looks: Path | None = None
    look: Path | None = None  # default look: reference still or .cube (or GradeOptions.preset)
    handles: int = Field(12, ge=0, le=10_000)
    match: list[str] = Field(default_factory=lambda: ["file", "clip", "reel"])
    skip_missing: bool = False
    apply_cdl: bool = False
    rate: float | None = Field(None, gt=0)
    assemble: Path | None = None  # render the whole timeline (cuts, dissolves) into this file

    @model_validator(mode="after")
    def _match(self) -> ConformSettings:
        bad = [m for m in self.match if m not in ("file", "clip", "reel")]
        if bad or not self.match:
            raise ValueError(f"--match takes file, clip and reel (comma-separated), not {','.join(bad)}")
        return self


class EventReport(BaseModel):
    number: int
    name: str
    reel: str | None
    scene: str | None
    status: str  # done, unchanged, skipped
    media: str | None = None
    source_range: tuple[int, int] | None = None  # frames of the media rendered (handles included)
    frames: int = 0
    seconds: float = 0.0
    output: str | None = None
    message: str | None = None


class ConformReport(BaseModel):
    edit: str
    output_dir: str
    rate: float
    events: list[EventReport]
    edits_written: list[str] = []
    scenes_trained: list[str] = []
    warnings: list[str] = []


@dataclass
class _Planned:
    event: Event
    media: Media | None = None
    first: int = 0  # media frame range to render, handles included
    end: int = 0
    scene: str = "default"
    problem: str | None = None
    fingerprint: str = ""
    output: Path | None = None


def _plan(edit: Edit, index: MediaIndex, settings: ConformSettings, looks: LooksFile | None) -> list[_Planned]:
    plans = []
    for ev in edit.events:
        p = _Planned(ev, scene=scene_of(ev, looks) or "default")
        path = index.find(ev, settings.match)
        if path is None:
            p.problem = (
                "no media found (looked for "
                + ", ".join(
                    f"{how} {v!r}" for how, v in (("file", ev.source_file), ("clip", ev.name), ("reel", ev.reel)) if v
                )
                + ")"
            )
        else:
            m = index.media(path, edit.rate)
            a, b = ev.src_in - m.start, ev.src_out - m.start
            if a < 0 or b > m.frames or b <= a:
                p.problem = f"source range {a}..{b} is outside {path.name} ({m.frames} frames from its timecode)"
            else:
                p.media, p.first, p.end = m, max(0, a - settings.handles), min(m.frames, b + settings.handles)
        plans.append(p)
    return plans


def run_conform(edit_path: str | Path, out_dir: str | Path, settings: ConformSettings, options, progress=None):
    """Conform an edit into ``out_dir``; see the module docstring. ``options`` is a GradeOptions."""
    import time

    from grade.pipeline import resolve_device
    from grade.progress import NullProgress

    progress = progress or NullProgress()
    out_dir = Path(out_dir)
    edit = read_edit(edit_path, settings.rate)
    looks = read_looks(settings.looks) if settings.looks else None
    if looks is None and settings.look is None and options.preset is None:
        raise InputError(
            f"no look: give {setting('looks', 'FILE.toml')}, {setting('look', 'REF|FILE.cube')} "
            f"or {setting('preset', 'NAME')}"
        )
    index = MediaIndex(settings.media)
    plans = _plan(edit, index, settings, looks)
    missing = [p for p in plans if p.problem]
    if missing and not settings.skip_missing:
        first = "; ".join(f"event {p.event.number} {p.event.name}: {p.problem}" for p in missing[:3])
        more = f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
        raise InputError(
            f"{len(missing)} of {len(plans)} events cannot be relinked: {first}{more} ({setting('skip_missing')})"
        )
    ensure_output_folder(out_dir)
    warnings = [
        f"event {p.event.number} {p.event.name}: {p.event.speed_effect} not supported (graded at normal speed)"
        for p in plans
        if p.event.speed_effect
    ]
    device = resolve_device(options.device)
    job = load_job(out_dir, edit.path)
    todo = [p for p in plans if p.problem is None]

    # the look of each scene: the key frames of its events, trained/fitted once (kept as a preset)
    sources = _scene_sources(looks, settings, options)
    grading = options.settings_of("training", "look", "picture", "encode")  # what changes a clip, not run policy
    for p in todo:
        src_fp = sources[p.scene][1] if p.scene in sources else None
        if src_fp is None:
            raise InputError(f"event {p.event.number} {p.event.name}: no look for scene {p.scene!r} (no default)")
        cdl = p.event.cdl.__dict__ if settings.apply_cdl and p.event.cdl else None
        p.fingerprint = fingerprint(file_fingerprint(p.media.path), p.first, p.end, src_fp, grading, cdl)
        p.output = out_dir / output_name(p.event, _output_suffix(p.media.path))

    def done(p: _Planned) -> bool:
        st = job.events.get(str(p.event.number))
        return bool(
            st
            and st.status == "done"
            and st.fingerprint == p.fingerprint
            and p.output.exists()
            and st.output_bytes == p.output.stat().st_size
        )

    pending = [p for p in todo if not done(p)]
    if not options.force:  # never replace a file this job did not write
        ours = {st.output for st in job.events.values() if st.output}
        foreign = [p.output for p in pending if p.output.exists() and str(p.output) not in ours]
        if settings.assemble is not None and settings.assemble.exists() and str(settings.assemble) != job.assembled:
            foreign.append(settings.assemble)
        if foreign:
            more = f" (+{len(foreign) - 1} more)" if len(foreign) > 1 else ""
            raise OutputError(
                f"output exists and was not written by this conform: {foreign[0]}{more} (use {setting('force')})"
            )
    grades, specs, trained = {}, {}, []
    for scene in sorted({p.scene for p in pending}):
        grades[scene], specs[scene], was_trained = _scene_grade(
            scene, sources[scene], [p for p in todo if p.scene == scene], out_dir, settings, options, device, progress
        )
        if was_trained:
            trained.append(scene)

    jobs = options.jobs if options.jobs > 1 and len(pending) > 1 else None

    def finish(p: _Planned, rep: EventReport, frames: int, seconds: float) -> None:
        rep.status, rep.frames, rep.seconds = "done", frames, round(seconds, 3)
        if frames < p.end - p.first:  # the media broke off inside the event's range
            rep.message = f"{p.media.path} is damaged: graded {frames} of {p.end - p.first} frames"
            warnings.append(f"event {p.event.number} {p.event.name}: {rep.message}")
        job.events[str(p.event.number)] = EventStatus(
            number=p.event.number,
            status="done",
            fingerprint=p.fingerprint,
            output=str(p.output),
            output_bytes=p.output.stat().st_size,
            scene=p.scene,
            frames=frames,
            seconds=rep.seconds,
        )
        save_job(out_dir, job)  # after the clip is in place: an interruption redoes only this event

    reports = []
    with progress.stage("conform", len(todo)) as task:
        for p in plans:
            ev = p.event
            rep = EventReport(
                number=ev.number,
                name=ev.name,
                reel=ev.reel,
                scene=p.scene if not p.problem else None,
                status="skipped",
                message=p.problem,
            )
            if p.problem is None:
                rep.media, rep.source_range, rep.output = str(p.media.path), (p.first, p.end), str(p.output)
                if p in pending:
                    if jobs is None:
                        t = time.perf_counter()
                        frames = _render_event(
                            grades[p.scene],
                            p.media.path,
                            p.output,
                            p.first,
                            p.end,
                            ev.cdl if settings.apply_cdl else None,
                            options,
                        )
                        finish(p, rep, frames, time.perf_counter() - t)
                    else:
                        rep.status = "queued"
                else:
                    st = job.events[str(ev.number)]
                    rep.status, rep.frames = "unchanged", st.frames or 0
                if rep.status != "queued":
                    task.advance()
            reports.append(rep)
        if jobs is not None:
            _render_parallel(jobs, [p for p in pending], specs, reports, settings, options, finish, task)
    for g in grades.values():
        g.release()
    written = _write_edits(edit, plans, out_dir)
    if settings.assemble is not None:
        with progress.stage("assemble", max(1, plans[-1].event.rec_out - plans[0].event.rec_in)) as task:
            assemble(plans, settings.assemble, options, on_frame=lambda: task.advance())
        written.append(str(settings.assemble))
        job.assembled = str(settings.assemble)
        save_job(out_dir, job)
    return ConformReport(
        edit=str(edit.path),
        output_dir=str(out_dir),
        rate=edit.rate,
        events=reports,
        edits_written=written,
        scenes_trained=trained,
        warnings=warnings,
    )


def _scene_sources(looks: LooksFile | None, settings: ConformSettings, options) -> dict[str, tuple[dict, str]]:
    """Scene name -> (look description, fingerprint of the look's inputs)."""
    out: dict[str, tuple[dict, str]] = {}

    def describe(kind: str, value: str) -> tuple[dict, str]:
        if kind in ("reference", "cube"):
            p = Path(value)
            if not p.is_file():
                raise InputError(f"no such {kind} file: {p}")
            return {kind: str(p)}, fingerprint(kind, file_fingerprint(p))
        from grade.presets import Library

        path, _ = Library(options.library).locate(value)
        return {"preset": str(path)}, fingerprint("preset", file_fingerprint(path))

    if looks is not None:
        for name, scene in looks.scenes.items():
            kind = "reference" if scene.reference else ("cube" if scene.cube else "preset")
            out[name] = describe(kind, getattr(scene, kind))
    if "default" not in out or (looks is not None and looks.default is None):
        if settings.look is not None:
            out["default"] = describe(
                "cube" if settings.look.suffix.lower() == ".cube" else "reference", str(settings.look)
            )
        elif options.preset is not None:
            out["default"] = describe("preset", options.preset)
    return out


def _scene_grade(
    scene: str, source: tuple[dict, str], plans: list[_Planned], out_dir: Path, settings, options, device, progress
):
    """The scene's ShotGrade: loaded from a preset or cube, or fitted/trained on the key frames of its
    events once and cached in ``out_dir/.looks`` (a re-run reuses it)."""
    import torch

    from grade.cdl import apply_cdl
    from grade.cube import read_cube
    from grade.io import image as image_io
    from grade.pipeline import ShotGrade, fit_shots, preset_grade
    from grade.presets import SUFFIX, build_preset, read_preset, write_preset
    from grade.shots import detect_shots

    desc, fp = source
    if "cube" in desc:
        return ShotGrade(read_cube(desc["cube"]), options.strength), ("cube", desc["cube"]), False
    if "preset" in desc:
        preset = read_preset(desc["preset"])
        grade = preset_grade(preset, options.strength, options.stabilise, options.regional)
        return grade, ("preset", desc["preset"]), False
    grading = options.settings_of("training")
    cdls = [p.event.cdl.__dict__ if settings.apply_cdl and p.event.cdl else None for p in plans]
    key_fp = fingerprint(fp, grading, [(file_fingerprint(p.media.path), p.first, p.end) for p in plans], cdls)
    cache = out_dir / ".looks" / f"{re.sub(r'[^A-Za-z0-9_.+-]', '_', scene)[:40]}-{key_fp[:12]}{SUFFIX}"
    if cache.exists():
        with contextlib.suppress(InputError):  # a damaged cache is trained again
            grade = preset_grade(read_preset(cache), options.strength, options.stabilise, options.regional)
            return grade, ("preset", str(cache)), False
    keys, blank = [], []
    for p in plans:
        shots = detect_shots(p.media.path, frames=(p.first, p.end))
        for shot, k in zip(shots.shots, shots.keys):
            if shot.flat:  # black, flat, a title card: never part of the scene's look
                blank.append(k)
                continue
            if settings.apply_cdl and p.event.cdl and not p.event.cdl.is_identity:
                k = (apply_cdl(p.event.cdl, torch.from_numpy(k).float() / 255).numpy() * 255 + 0.5).astype(np.uint8)
            keys.append(np.ascontiguousarray(k))
    keys = keys or blank  # a scene of black and titles only: fitted on them (the tone mapping is all there is)
    ref, thumb = image_io.load_reference(desc["reference"], options.working_side)
    grade = fit_shots(keys, ref, options, device, progress, joint=True)[0]
    learned = grade.learned
    mode = "learned" if learned is not None else "fast"
    preset = build_preset(
        f"scene-{key_fp[:12]}",
        mode=mode,
        lut=grade.full_lut,
        learned=learned,
        reference=thumb,
        reference_name=Path(desc["reference"]).name,
        keys=keys,
        scene=scene,
    )
    cache.parent.mkdir(exist_ok=True)
    write_preset(preset, cache, force=True)
    return grade, ("preset", str(cache)), True


_CDL_TABLES: dict = {}


def _render_event(grade, media: Path, output: Path, first: int, end: int, cdl: CDL | None, options) -> int:
    """Render one event's frames ``[first, end)`` of ``media`` through ``grade`` (CDL first) to ``output``."""
    from grade.io import video as video_io

    info = video_io.probe(media)
    pre = None
    if cdl is not None and not cdl.is_identity:
        if cdl not in _CDL_TABLES:
            _CDL_TABLES.clear()  # one at a time: 64 MiB each
            _CDL_TABLES[cdl] = _cdl_table(cdl)
        pre = _CDL_TABLES[cdl]
    grade.prepare(False, video_io.yuv_matrix(info), video_io.range_of(info) == 2)  # kept across events

    def grade_frame(i: int, pixels: np.ndarray) -> np.ndarray:
        if pre is not None:
            pixels = _apply_pre(pre, pixels)
        return grade.grade(pixels, info.height, info.width)

    with atomic_output(output, force=True) as tmp:
        stats = video_io.render_video(
            media,
            tmp,
            info,
            grade_frame,
            codec=options.codec or video_io.same_family_codec(output, info),
            crf=options.crf,
            frames=(first, end),
        )
    return stats.frames


_WORKER_GRADES: dict = {}


def _worker_render(
    spec: tuple[str, str],
    strength: float,
    stabilise: bool,
    media: str,
    output: str,
    first: int,
    end: int,
    cdl: CDL | None,
    options_json: str,
) -> tuple[int, float]:
    """Process-pool entry: rebuild the scene grade once per worker (from its preset or .cube) and render."""
    import signal
    import time

    from grade.cube import read_cube
    from grade.pipeline import GradeOptions, ShotGrade, preset_grade
    from grade.presets import read_preset

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; atomic outputs clean up on exit
    t = time.perf_counter()
    options = GradeOptions.model_validate_json(options_json)
    if spec not in _WORKER_GRADES:
        for g in _WORKER_GRADES.values():
            g.release()
        _WORKER_GRADES.clear()
        kind, path = spec
        grade = (
            ShotGrade(read_cube(path), strength)
            if kind == "cube"
            else preset_grade(read_preset(path), strength, stabilise, options.regional)
        )
        _WORKER_GRADES[spec] = grade
    frames = _render_event(_WORKER_GRADES[spec], Path(media), Path(output), first, end, cdl, options)
    return frames, time.perf_counter() - t


def _render_parallel(jobs: int, pending: list[_Planned], specs, reports, settings, options, finish, task) -> None:
    """``--jobs N``: events rendered by N worker processes; the job file is written by this process only."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    by_number = {r.number: r for r in reports}
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"))
    try:
        futures = {
            pool.submit(
                _worker_render,
                specs[p.scene],
                options.strength,
                options.stabilise,
                str(p.media.path),
                str(p.output),
                p.first,
                p.end,
                p.event.cdl if settings.apply_cdl else None,
                options.model_dump_json(),
            ): p
            for p in pending
        }
        for fut in as_completed(futures):
            p = futures[fut]
            frames, seconds = fut.result()
            finish(p, by_number[p.event.number], frames, seconds)
            task.advance()
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # running events finish or clean up; none half-written
        raise
    pool.shutdown(wait=True)


def _cdl_table(cdl: CDL):
    from grade.cdl import apply_cdl
    from grade.lut import PackedTable, grid_points

    n = 33
    lut = apply_cdl(cdl, grid_points(n)).T.reshape(3, n, n, n).contiguous()
    return PackedTable(lut), lut


def _apply_pre(pre, pixels):
    from grade.lut import apply_lut_u16

    table, lut = pre
    if pixels.dtype == np.uint16:
        return apply_lut_u16(lut, pixels)
    return table.apply_rgba(pixels)


def _write_edits(edit: Edit, plans: list[_Planned], out_dir: Path) -> list[str]:
    """The edit again, each event pointing at its graded clip (same record timeline): input format and .otio."""
    import copy

    import opentimelineio as otio

    timeline = copy.deepcopy(edit.timeline)
    track = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Video][0]
    clips = [c for c in track if isinstance(c, otio.schema.Clip)]
    for clip, p in zip(clips, plans):
        if p.problem is not None or p.output is None:
            continue
        rate = edit.rate
        start = otio.opentime.RationalTime(p.media.start + p.first, rate)
        clip.media_reference = otio.schema.ExternalReference(
            target_url=p.output.resolve().as_uri(),
            available_range=otio.opentime.TimeRange(start, otio.opentime.RationalTime(p.end - p.first, rate)),
        )
        clip.name = p.output.stem
        cmx = dict(clip.metadata.get("cmx_3600", {}) or {})
        cmx["reel"] = p.output.stem
        clip.metadata["cmx_3600"] = cmx
    written = []
    suffix = edit.path.suffix.lower()
    targets = [out_dir / f"{edit.path.stem}.graded.otio"]
    if suffix in (".edl", ".xml"):
        targets.append(out_dir / f"{edit.path.stem}.graded{suffix}")
    for target in targets:
        try:
            text = otio.adapters.write_to_string(
                timeline, {".otio": "otio_json", ".edl": "cmx_3600", ".xml": "fcp_xml"}[target.suffix]
            )
        except Exception as e:  # an adapter that cannot express something: say so, keep the rest
            raise OutputError(f"cannot write {target.name}: {' '.join(str(e).split())[:200]}") from None
        with atomic_output(target, force=True) as tmp:
            Path(tmp).write_text(text)
        written.append(str(target))
    return written


class _ClipReader:
    """Frames of one graded clip, read forward on demand (a dissolve needs two at once)."""

    def __init__(self, path: Path, size: tuple[int, int]) -> None:
        import av

        self.box = av.open(str(path))
        self.frames = self.box.decode(video=0)
        self.index, self.last, self.size = -1, None, size

    def get(self, k: int) -> np.ndarray | None:
        while self.index < k:
            f = next(self.frames, None)
            if f is None:
                return self.last
            self.index += 1
            self.last = f.to_ndarray(format="rgb24", width=self.size[0], height=self.size[1])
        return self.last

    def close(self) -> None:
        self.box.close()


def assemble(plans: list[_Planned], target: Path, options, on_frame=None) -> int:
    """Render the programme: each record frame from its graded clip, dissolves as real cross-fades,
    gaps and unresolved events black. Picture only; written atomically. Returns the frame count."""
    from fractions import Fraction

    import av

    from grade.io.video import choose_codec, probe

    placed = [p for p in plans if p.output is not None and p.output.exists()]
    if not placed:
        raise OutputError(f"{setting('assemble', 'FILE')}: no graded event to assemble")
    with av.open(str(placed[0].output)) as box:
        vs = box.streams.video[0]
        size = (vs.codec_context.width, vs.codec_context.height)
        rate = Fraction(vs.average_rate or vs.guessed_rate or 24).limit_denominator(1001)
    start, end = plans[0].event.rec_in, max(p.event.rec_out for p in plans)
    readers: dict[int, _ClipReader] = {}

    def frame_of(p: _Planned, r: int) -> np.ndarray | None:
        if p.output is None or not p.output.exists():
            return None
        if p.event.number not in readers:
            readers[p.event.number] = _ClipReader(p.output, size)
        k = p.event.trim_in + (r - p.event.rec_in) - p.media.start - p.first
        return readers[p.event.number].get(k) if k >= 0 else None

    black = np.zeros((size[1], size[0], 3), np.uint8)
    encoder, opts, pix_fmt = choose_codec(target, options.codec, options.crf, probe(placed[0].output))
    count = 0
    with atomic_output(target, force=True) as tmp, av.open(str(tmp), "w") as out:
        s = out.add_stream(encoder, rate=rate)
        s.width, s.height, s.pix_fmt = size[0] + size[0] % 2, size[1] + size[1] % 2, pix_fmt
        s.options = opts
        for r in range(start, end):
            img = None
            for i, p in enumerate(plans):  # inside a dissolve: a real cross-fade of both events
                d = p.event.dissolve_in
                if d and i > 0 and p.event.rec_in - d[0] <= r < p.event.rec_in + d[1]:
                    alpha = (r - (p.event.rec_in - d[0]) + 0.5) / max(1, d[0] + d[1])
                    x, y = frame_of(plans[i - 1], r), frame_of(p, r)
                    x = (x if x is not None else black).astype(np.float32)
                    y = (y if y is not None else black).astype(np.float32)
                    img = np.clip(x * (1 - alpha) + y * alpha + 0.5, 0, 255).astype(np.uint8)
                    break
            else:
                cur = next((p for p in plans if p.event.rec_in <= r < p.event.rec_out), None)
                img = frame_of(cur, r) if cur is not None else None
            img = img if img is not None else black
            if img.shape[:2] != (s.height, s.width):
                img = np.pad(img, ((0, s.height - img.shape[0]), (0, s.width - img.shape[1]), (0, 0)), mode="edge")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = count
            for pkt in s.encode(frame.reformat(format=pix_fmt)):
                out.mux(pkt)
            count += 1
            if on_frame:
                on_frame()
        for pkt in s.encode():
            out.mux(pkt)
    for rd in readers.values():
        rd.close()
    return count


class _CallableModule(types.ModuleType):
    """``grade.conform`` is both this module and the API's :func:`grade.api.conform`: importing the module
    makes it the package's attribute ``conform``, so calling it must conform an edit."""

    def __call__(self, *args, **kwargs):
        from grade.api import conform

        return conform(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
