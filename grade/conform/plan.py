"""Conform settings, reports, and the plan: each event relinked, with its look, scene and output."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from grade.conform.edit import Edit, Event
from grade.conform.looks import LooksFile, scene_of
from grade.conform.media import Media, MediaIndex
from grade.io.timecode import frames_timecode


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
    # render farms: only these events ("3,7-12"), or shard I of N (events dealt out by cost), and
    # --finish (write the edits and the programme once every event is there)
    events: str | None = None
    shard: tuple[int, int] | None = None
    finish: bool = False
    # where events render: this machine (--jobs N processes) or Ray tasks (a local instance, or the
    # cluster at ray_address); the output folder must then be shared storage every node sees
    engine: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    # --engine ray: GPUs each render task reserves (Ray's num_gpus; fractions share one), and how clips
    # and media travel: the shared output folder, or Ray's object store (no shared storage; media files
    # up to transfer_limit bytes each)
    gpus_per_task: float = Field(0, ge=0, le=64)
    transfer: Literal["shared", "object-store"] = "shared"
    transfer_limit: int = Field(2 * 1024**3, gt=0)

    @model_validator(mode="after")
    def _shard(self) -> ConformSettings:
        if self.shard is not None and not 1 <= self.shard[0] <= self.shard[1]:
            raise ValueError(f"--shard I/N needs 1 <= I <= N, not {self.shard[0]}/{self.shard[1]}")
        if sum(x is not None and x is not False for x in (self.events, self.shard, self.finish or None)) > 1:
            raise ValueError("give one of --events, --shard and --finish")
        return self

    @model_validator(mode="after")
    def _ray_only(self) -> ConformSettings:
        if self.engine != "ray" and (self.gpus_per_task or self.transfer != "shared"):
            raise ValueError("--gpus-per-task and --transfer object-store need --engine ray")
        return self

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
    status: str  # done, unchanged, skipped, other shard, failed (--engine ray: the event's task failed)
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
class Planned:
    event: Event
    media: Media | None = None
    first: int = 0  # media frame range to render, handles included
    end: int = 0
    scene: str = "default"
    problem: str | None = None
    fingerprint: str = ""
    output: Path | None = None
    input_space: str | None = None  # from the looks file's [[inputs]] (else the run's --input-space)


def plan_events(edit: Edit, index: MediaIndex, settings: ConformSettings, looks: LooksFile | None) -> list[Planned]:
    plans = []
    for ev in edit.events:
        p = Planned(ev, scene=scene_of(ev, looks) or "default")
        p.input_space = looks.input_space_of(ev) if looks is not None else None
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
                tc = [
                    frames_timecode(max(0, f), edit.rate) for f in (ev.src_in, ev.src_out, m.start, m.start + m.frames)
                ]
                p.problem = (
                    f"source {tc[0]}-{tc[1]} is outside {path.name} ({tc[2]}-{tc[3]}"
                    + ("" if m.timecoded else ": it has no timecode tag, so it is taken to start at 00:00:00:00")
                    + ")"
                )
            else:
                p.media, p.first, p.end = m, max(0, a - settings.handles), min(m.frames, b + settings.handles)
        plans.append(p)
    return plans
