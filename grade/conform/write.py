"""Writing the graded edits: the same format as the source edit, and ``.otio``, pointing at the graded clips."""

from __future__ import annotations

from pathlib import Path

from grade.conform.edit import Edit
from grade.conform.plan import Planned
from grade.errors import OutputError
from grade.io.atomic import atomic_output

# the graded edit is written in the source's own format (and always as .otio)
_ADAPTERS = {".otio": "otio_json", ".edl": "cmx_3600", ".xml": "fcp_xml", ".fcpxml": "fcpx_xml", ".aaf": "AAF"}


def _number_width(path: Path) -> int:
    """How many digits the source EDL's event numbers have (3 in CMX 3600, 6 in some exports)."""
    for line in path.read_text(errors="replace").splitlines():
        head = line.split(None, 1)
        if head and head[0].isdigit() and len(line.split()) >= 8:
            return len(head[0])
    return 3


def _restore_numbers(text: str, numbers: list[int], width: int) -> str:
    """OTIO's CMX writer numbers events 001, 002, ...: give each its number from the source edit back (the
    two lines of a dissolve keep one number), in the source's width; a repeated comment line once."""
    out, k, last, prev_line = [], -1, None, None
    for line in text.splitlines():
        parts = line.split(None, 1)
        if parts and parts[0].isdigit() and len(parts) > 1 and len(line.split()) >= 8:
            if parts[0] != last:
                k, last = k + 1, parts[0]
            if 0 <= k < len(numbers):
                line = f"{numbers[k]:0{width}d}" + line[len(parts[0]) :]
        if line.startswith("*") and line == prev_line:
            continue  # "* BLEND, DISSOLVE" written twice
        out.append(line)
        prev_line = line
    return "\n".join(out) + "\n"


def write_edits(edit: Edit, plans: list[Planned], out_dir: Path, cdl_applied: bool = False) -> list[str]:
    """The edit again, each event pointing at its graded clip (same record timeline): input format and .otio.

    Event numbers are the source edit's; reel names are the event's (``E060``: CMX 3600 allows 8
    characters), the clip name and file stay in the comments; with ``cdl_applied`` the events' ASC CDL
    is left out (it is in the pictures now: applied again downstream it would count twice)."""
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
        cmx["reel"] = f"E{p.event.number:03d}"[:8]
        clip.metadata["cmx_3600"] = cmx
        if cdl_applied and p.event.cdl is not None:
            clip.metadata.pop("cdl", None)
    written = []
    suffix = edit.path.suffix.lower()
    targets = [out_dir / f"{edit.path.stem}.graded.otio"]
    if suffix in _ADAPTERS:
        targets.append(out_dir / f"{edit.path.stem}.graded{suffix}")
    for target in targets:
        if target.suffix == ".aaf":  # binary: the adapter writes the file itself (new mob IDs: new media)
            try:
                with atomic_output(target, force=True) as tmp:
                    otio.adapters.write_to_file(timeline, str(tmp), adapter_name="AAF", use_empty_mob_ids=True)
            except Exception as e:
                raise OutputError(f"cannot write {target.name}: {' '.join(str(e).split())[:200]}") from None
            written.append(str(target))
            continue
        try:
            text = otio.adapters.write_to_string(timeline, _ADAPTERS[target.suffix])
        except Exception as e:  # an adapter that cannot express something: say so, keep the rest
            raise OutputError(f"cannot write {target.name}: {' '.join(str(e).split())[:200]}") from None
        if target.suffix == ".edl":
            numbers = [ev.number for ev in edit.events]
            width = max(3, *(len(str(n)) for n in numbers), _number_width(edit.path))
            text = _restore_numbers(text, numbers, width)
        with atomic_output(target, force=True) as tmp:
            Path(tmp).write_text(text)
        written.append(str(target))
    return written
