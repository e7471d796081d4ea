"""The edit model at the centre of a conform: the events of an EDL / FCP XML / OTIO timeline, read with OTIO."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from grade.cdl import CDL
from grade.errors import InputError, setting
from grade.io.timecode import timecode_frames

EDIT_SUFFIXES = {".edl", ".xml", ".otio", ".fcpxml", ".aaf"}


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
    warnings: list[str] = field(default_factory=list)  # odd events read leniently, once each
    # audio track name (EDL: A1, A2, ...) -> its clips in record order, numbered from 1 within the track
    # (an AA event is on A1 and on A2); --assemble's sound (grade.conform.audio)
    audio_tracks: dict[str, list[Event]] = field(default_factory=dict)


def _first_record_in(path: Path, rate: float) -> int | None:
    """The first event's record-in timecode of a CMX EDL (OTIO's adapter does not keep it)."""
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 8 and parts[0].isdigit() and re.fullmatch(r"\d\d[:;]\d\d[:;]\d\d[:;.]\d\d", parts[-2]):
            return timecode_frames(parts[-2], rate)
    return None


def edl_event_numbers(path: Path) -> list[int]:
    r"""The event numbers of a CMX EDL's video events, in order (the two lines of a dissolve or wipe are
    one event): OTIO's adapter renumbers events 1, 2, 3..., an editor's list may run 010, 020, ...

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = Path(d) / "x.edl"
    ...     _ = p.write_text("001  A V C 01:00:00:00 01:00:01:00 01:00:00:00 01:00:01:00\n"
    ...                      "060  B V C 01:00:00:00 01:00:00:00 01:00:01:00 01:00:01:00\n"
    ...                      "060  C V D 012 01:00:00:00 01:00:01:00 01:00:01:00 01:00:02:00\n")
    ...     edl_event_numbers(p)
    [1, 60]
    """
    out: list[int] = []
    last = None
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) < 8 or not parts[0].isdigit() or not _has_picture(parts[2]):
            continue
        if parts[0] != last:
            out.append(int(parts[0]))
            last = parts[0]
    return out


def _has_picture(channels: str) -> bool:
    """Whether a CMX channel field carries picture: ``V``, ``AA/V``, ``A2/V``, or ``B`` (picture and A1)."""
    return "V" in channels.upper() or channels.upper() == "B"


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
        raise InputError(f"not an edit file (use .edl, .xml, .fcpxml, .aaf or .otio): {path}")
    kwargs = {}
    if path.suffix.lower() == ".edl":
        kwargs["rate"] = rate or 24
        text = path.read_bytes()
        if b"\x00" in text[:4096]:
            raise InputError(f"not an EDL (binary file): {path}")
    lenient: list[str] = []
    try:
        try:
            timeline = otio.adapters.read_from_file(str(path), **kwargs)
        except Exception as e:
            if path.suffix.lower() != ".edl" or "duration don't match" not in str(e):
                raise
            # an editor's list with events the strict adapter rejects: read them leniently, say so once each
            text, lenient = normalise_edl(path.read_text(errors="replace"), kwargs["rate"])
            if not lenient:
                raise
            timeline = otio.adapters.read_from_string(text, "cmx_3600", **kwargs)
    except Exception as e:  # the adapters raise many types; all mean "cannot read this edit"
        why = " ".join(str(e).split())[:300] or type(e).__name__
        if path.suffix.lower() == ".edl":
            why = _edl_diagnosis(path) or why
            m = re.search(r"frames beyond (\d+)", why)
            if m and rate is None:  # read at the default 24 fps: say which rate the list needs
                hint = _rate_hint(path)
                why += f" (the EDL is not 24 fps: give {setting('rate', str(hint) if hint else 'FPS')})"
        raise InputError(f"cannot read edit {path}{_line_of(path, why)}: {why}") from None
    if isinstance(timeline, otio.schema.SerializableCollection):
        timelines = list(timeline.find_children(descended_from_type=otio.schema.Timeline))
        if not timelines:
            raise InputError(f"no timeline in {path}")
        timeline = timelines[0]
    if not isinstance(timeline, otio.schema.Timeline):
        raise InputError(f"no timeline in {path} (it holds a {type(timeline).__name__})")
    try:
        edit = _edit_of(path, timeline, rate)
        edit.warnings += lenient
        if path.suffix.lower() == ".edl":
            edit.warnings += _audio_only(path)
        return edit
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


_EVENT_LINE = re.compile(
    r"^(?P<num>\d+)\s+(?P<reel>\S+)\s+(?P<track>\S+)\s+(?P<kind>\S+)(?:\s+(?P<dur>\d+))?\s+"
    r"(?P<si>\d\d[:;]\d\d[:;]\d\d[:;.]\d\d)\s+(?P<so>\d\d[:;]\d\d[:;]\d\d[:;.]\d\d)\s+"
    r"(?P<ri>\d\d[:;]\d\d[:;]\d\d[:;.]\d\d)\s+(?P<ro>\d\d[:;]\d\d[:;]\d\d[:;.]\d\d)\s*$"
)


def normalise_edl(text: str, rate: float) -> tuple[str, list[str]]:
    r"""An EDL with the events that OpenTimelineIO's strict reader refuses ("Source and record duration
    don't match") made readable, and one warning per event changed.

    A cut whose source and record durations differ without an ``M2`` line (a speed change the list does
    not describe, a trimmed source, a zero-length source) keeps its record length and takes that many
    source frames from its source in-point. Everything else is left exactly as it is.

    >>> edl = "001  A V C 01:00:00:00 01:00:00:10 10:00:00:00 10:00:00:20\n"
    >>> fixed, notes = normalise_edl(edl, 24)
    >>> fixed.split()[5], notes[0].split(":")[0]
    ('01:00:00:20', 'event 001')
    """
    lines = text.splitlines()
    speed = {ln.split()[1] for ln in lines if ln.startswith("M2") and len(ln.split()) > 1}
    out, notes = [], []
    for i, line in enumerate(lines):
        m = _EVENT_LINE.match(line.strip())
        if m:
            src = timecode_frames(m["so"], rate) - timecode_frames(m["si"], rate)
            rec = timecode_frames(m["ro"], rate) - timecode_frames(m["ri"], rate)
            follows_m2 = any(ln.startswith("M2") for ln in lines[i + 1 : i + 3]) and m["reel"] in speed
            if src != rec and src >= 0 and not follows_m2:  # a source running backwards stays an error
                from grade.io.timecode import frames_timecode

                new_out = frames_timecode(timecode_frames(m["si"], rate) + rec, rate, ";" in m["si"])
                what = "a zero-length source" if src == 0 else f"source {src} frames, record {rec}"
                notes.append(
                    f"event {m['num']}: {what}: read leniently, {rec} frames from source {m['si']} (line {i + 1})"
                )
                bare = line.strip()
                line = bare[: m.start("so")] + new_out + bare[m.end("so") :]
        out.append(line)
    return "\n".join(out) + "\n", notes


def _audio_only(path: Path) -> list[str]:
    """One warning per EDL event that has no video line (audio only: nothing to grade; its sound is kept
    in ``Edit.audio_tracks`` for ``--assemble``)."""
    tracks: dict[str, set[bool]] = {}
    for line in path.read_text(errors="replace").splitlines():
        m = _EVENT_LINE.match(line.strip())
        if m:
            tracks.setdefault(m["num"], set()).add(_has_picture(m["track"]))
    return [
        f"event {n}: audio only: not graded (its sound goes into --assemble)" for n, v in tracks.items() if v == {False}
    ]


def _rate_hint(path: Path) -> int | None:
    """The frame rate an EDL's timecodes imply: the smallest common rate above its largest frame field."""
    top = 0
    for tc in re.findall(r"\b\d\d[:;]\d\d[:;]\d\d[:;.](\d\d)\b", path.read_text(errors="replace")):
        top = max(top, int(tc))
    return next((r for r in (24, 25, 30, 48, 50, 60) if top < r), None)


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
    if rec0 is None and path.suffix.lower() == ".edl":  # the video track's first record-in (kept by the
        # adapter as the track's negative source start; the list's first line may be an audio event's)
        rec0 = _track_offset(track, edit_rate) if track.source_range is not None else None
        rec0 = rec0 if rec0 is not None else _first_record_in(path, edit_rate)
    rec0 = rec0 or 0
    numbers = edl_event_numbers(path) if path.suffix.lower() == ".edl" else []
    if len(numbers) != len(clips) or len(set(numbers)) != len(numbers):
        numbers = list(range(1, len(clips) + 1))  # cannot tell which line is which clip: count them
    events = _track_events(track, numbers, edit_rate, rec0)
    # the sound: every audio track's clips on the same record timeline (an EDL's tracks each start at
    # their first event's record-in: the adapter keeps it as the track's negative source start)
    base = rec0 - _track_offset(track, edit_rate)
    audio = {}
    for n, t in enumerate(t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Audio):
        count = sum(isinstance(c, otio.schema.Clip) for c in t)
        sound = _track_events(t, list(range(1, count + 1)), edit_rate, base + _track_offset(t, edit_rate))
        if sound:
            audio[t.name or f"A{n + 1}"] = sound
    return Edit(path, float(edit_rate), timeline.name or path.stem, events, timeline, audio_tracks=audio)


def _track_offset(track, rate: float) -> int:
    """Record frames a track's children start after its parent's start (an EDL's track: its first record-in)."""
    rng = track.source_range
    return -round(rng.start_time.rescaled_to(rate).value) if rng is not None else 0


def _track_events(track, numbers: list[int], rate: float, rec0: int) -> list[Event]:
    """The clips of one track as Events (``numbers[i]`` for the i-th clip), transitions as ``dissolve_in``."""
    import opentimelineio as otio

    events: list[Event] = []
    previous_transition, offsets = None, None
    for item in track:
        if isinstance(item, otio.schema.Transition):
            before = round(item.in_offset.rescaled_to(rate).value)
            after = round(item.out_offset.rescaled_to(rate).value)
            previous_transition, offsets = f"{item.transition_type} {before + after}", (before, after)
            continue
        if not isinstance(item, otio.schema.Clip):
            previous_transition, offsets = None, None
            continue  # gaps
        ev = _event(item, numbers[len(events)], rate, rec0, previous_transition)
        ev.dissolve_in = offsets
        events.append(ev)
        previous_transition, offsets = None, None
    return events


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
