"""Progress reporting the library can call without knowing who listens (the CLI draws rich bars)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Protocol


class Task(Protocol):
    def advance(self, n: int = 1) -> None: ...

    def update(self, completed: int | None = None, total: int | None = None, info: str | None = None) -> None: ...


class Progress(Protocol):
    def stage(self, name: str, total: int | None) -> contextlib.AbstractContextManager[Task]: ...


class _NullTask:
    def advance(self, n: int = 1) -> None:
        pass

    def update(self, completed: int | None = None, total: int | None = None, info: str | None = None) -> None:
        pass


class NullProgress:
    """Reports nothing; records how long each stage took (``timings``)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str, total: int | None) -> Iterator[Task]:
        t0 = time.perf_counter()
        try:
            yield _NullTask()
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0
