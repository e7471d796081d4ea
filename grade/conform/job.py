"""The job file (``conform-job.json``): each event's fingerprint and output, rewritten atomically after every event."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator
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


@contextlib.contextmanager
def folder_lock(folder: Path, name: str) -> Iterator[None]:
    """An exclusive lock on ``folder/.name.lock`` (``flock``): shards started together on one output
    folder take turns for the job file, and the first to train a scene's look trains it for all."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f".{name}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def record_event(folder: Path, edit: Path, status: EventStatus, job: Job | None = None) -> Job:
    """Add one finished event to the job file under the folder's lock (re-read first: another shard
    may have recorded its own events meanwhile); returns the job as it is now on disk."""
    with folder_lock(folder, "job"):
        current = load_job(folder, edit)
        if job is not None:
            current.assembled, current.assembled_fingerprint = job.assembled, job.assembled_fingerprint
            current.assembled_bytes = job.assembled_bytes
        current.events[str(status.number)] = status
        save_job(folder, current)
    return current


def deal_shards(costs: dict[int, float], count: int) -> list[list[int]]:
    """Events dealt out to ``count`` shards by estimated cost: the costliest first, each to the shard with
    the least so far (ties: the lower shard). Deterministic, so every shard computes the same deal.

    >>> deal_shards({1: 10, 2: 30, 3: 20, 4: 5}, 2)
    [[2, 4], [1, 3]]
    """
    shards: list[list[int]] = [[] for _ in range(count)]
    load = [0.0] * count
    for number, cost in sorted(costs.items(), key=lambda kv: (-kv[1], kv[0])):
        i = min(range(count), key=lambda k: (load[k], k))
        shards[i].append(number)
        load[i] += cost
    return [sorted(s) for s in shards]


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
