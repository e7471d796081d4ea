"""Writing the graded edits: the same format as the source edit, and ``.otio``, pointing at the graded clips."""

from __future__ import annotations

from pathlib import Path

from grade.conform.edit import Edit
from grade.conform.plan import Planned
from grade.errors import OutputError
from grade.io.atomic import atomic_output


def write_edits(edit: Edit, plans: list[Planned], out_dir: Path) -> list[str]:
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
