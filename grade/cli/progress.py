"""Progress for the command line: rich bars with ETA on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator


class RichProgress:
    """Draws one rich progress bar per stage (with ETA) on stderr."""

    def __init__(self, console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )

        self._started = False

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(self, *exc) -> None:
        if self._started:  # started on the first stage: an early error stays a single line
            self._progress.stop()

    @contextlib.contextmanager
    def stage(self, name: str, total: int | None) -> Iterator:
        progress = self._progress
        if not self._started:
            progress.start()
            self._started = True
        task_id = progress.add_task(name, total=total, info="")

        class _Task:
            def advance(self, n: int = 1) -> None:
                progress.advance(task_id, n)

            def update(self, completed=None, total=None, info=None) -> None:
                kw = {k: v for k, v in (("completed", completed), ("total", total), ("info", info)) if v is not None}
                progress.update(task_id, **kw)

        try:
            yield _Task()
        finally:
            t = next((t for t in progress.tasks if t.id == task_id), None)  # stages may overlap
            if t is not None and t.total is not None and t.completed < t.total:
                progress.update(task_id, total=t.completed)  # estimates were high: show it done


class LineProgress:
    """Progress without a terminal (a log file, CI, a pipe): plain lines on stderr, at most one every
    ``every`` seconds per stage, and one when a stage ends: ``render 120/720 17% 0:12 ETA 1:00``."""

    def __init__(self, stream=None, every: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.every = every

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        pass

    @contextlib.contextmanager
    def stage(self, name: str, total: int | None) -> Iterator:
        state = {"done": 0, "total": total, "info": "", "shown": 0.0}
        t0 = time.monotonic()
        out = self.stream

        def clock(seconds: float) -> str:
            m, s = divmod(int(seconds), 60)
            return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"

        def show(force: bool = False) -> None:
            now = time.monotonic()
            if not force and now - state["shown"] < self.every:
                return
            state["shown"] = now
            done, tot, spent = state["done"], state["total"], now - t0
            line = f"{name} {done}" + (f"/{tot} {100 * done // max(1, tot)}%" if tot else "") + f" {clock(spent)}"
            if tot and 0 < done < tot:
                line += f" ETA {clock(spent / done * (tot - done))}"
            if state["info"]:
                line += f"  {state['info']}"
            print(line, file=out, flush=True)

        class _Task:
            def advance(self, n: int = 1) -> None:
                state["done"] += n
                show()

            def update(self, completed=None, total=None, info=None) -> None:
                if completed is not None:
                    state["done"] = completed
                if total is not None:
                    state["total"] = total
                if info is not None:
                    state["info"] = info
                show()

        state["shown"] = time.monotonic()  # the first line after `every` seconds, or at the end
        yield _Task()  # a stage that fails prints no last line: the error is the one line to read
        if state["total"] is not None and state["done"] < state["total"]:
            state["total"] = state["done"]
        show(force=True)


def make_progress(console) -> RichProgress | LineProgress:
    """Bars on a terminal, plain periodic lines otherwise."""
    return RichProgress(console) if console.is_terminal else LineProgress()
