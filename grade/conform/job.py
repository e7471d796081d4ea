"""The job file (``conform-job.json``): each event's fingerprint and output, rewritten atomically after every event."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from grade.conform.edit import Event
from grade.errors import OutputError
from grade.io.atomic import atomic_output

JOB_FILE = "conform-job.json"


JOB_VERSION = 1


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
    assembled_fingerprint: str | None = None  # of the events and settings it was assembled from
    assembled_bytes: int | None = None
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


def output_suffix(media: Path) -> str:
    """The graded clip's container: the media's, or QuickTime where grade cannot write that one (MXF, MPEG-PS)."""
    from grade.io.video import OUTPUT_EXTENSIONS

    return media.suffix if media.suffix.lower() in OUTPUT_EXTENSIONS else ".mov"


def ensure_output_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output folder {folder}: {e.strerror}") from None
