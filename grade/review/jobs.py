"""Background work of the review page: a job (training, rendering) with its progress, polled by the page,
and a memo of finished results (a look per shot, its full-strength pictures)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


class Cancelled(Exception):
    """A job was stopped (the server is shutting down)."""


@dataclass
class Job:
    """A background job: training a learned look, or rendering a clip."""

    id: str
    kind: Literal["train", "render"]
    label: str
    state: Literal["queued", "running", "done", "failed", "cancelled"] = "queued"
    stage: str = ""
    completed: int = 0
    total: int | None = None
    message: str = ""
    output: Path | None = None
    started: float = field(default_factory=time.time)
    seconds: float = 0.0
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def fraction(self) -> float:
        """0..1: of the training steps (train), or of the current stage (render)."""
        if self.state == "done":
            return 1.0
        if not self.total:
            return 0.0
        part = min(1.0, self.completed / self.total)
        if self.kind == "train":
            return part if self.stage == "train" else 0.0
        return part

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "label": self.label,
            "state": self.state,
            "stage": self.stage,
            "fraction": round(self.fraction, 4),
            "message": self.message,
            "output": f"/output?id={self.id}" if self.output is not None and self.state == "done" else None,
            "output_name": self.output.name if self.output is not None else None,
            "seconds": round(self.seconds, 2),
        }


class Task:
    def __init__(self, job: Job) -> None:
        self.job = job

    def _check(self) -> None:
        if self.job.cancel.is_set():
            raise Cancelled("stopped")

    def advance(self, n: int = 1) -> None:
        self._check()
        self.job.completed += n

    def update(self, completed: int | None = None, total: int | None = None, info: str | None = None) -> None:
        self._check()
        if completed is not None:
            self.job.completed = completed
        if total is not None:
            self.job.total = total


class JobProgress:
    """A :class:`grade.progress.Progress` that records a job's stage and count, and stops it when cancelled."""

    def __init__(self, job: Job) -> None:
        self.job = job

    @contextlib.contextmanager
    def stage(self, name: str, total: int | None) -> Iterator[Task]:
        task = Task(self.job)
        task._check()
        self.job.stage, self.job.total, self.job.completed = name, total, 0
        yield task


class Memo:
    """A small LRU cache whose values are computed once even when several threads ask at the same time."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: dict[Hashable, threading.Lock] = {}

    def peek(self, key: Hashable) -> Any:
        with self._lock:
            return self._items.get(key)

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            lock = self._pending.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            try:
                value = make()
            finally:
                with self._lock:
                    self._pending.pop(key, None)
            with self._lock:
                self._items[key] = value
                while len(self._items) > self.capacity:
                    self._items.popitem(last=False)
            return value
