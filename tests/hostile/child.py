"""``python tests/hostile/child.py MARKERS SECONDS grade-args...``: the real command line in a child process,
slowed down and observable so that a test can signal it at a known stage.

Before each graded frame and each training step it touches ``MARKERS/render`` or ``MARKERS/train`` and
sleeps ``SECONDS``: the run is the real one (same code, same files), only slower.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main() -> int:
    markers, seconds, args = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
    import grade.shotgrade as shotgrade
    from grade.cli import main as grade_main

    grade_frame = shotgrade.ShotGrade.grade
    train_look = shotgrade.train_look

    def slow_grade(self, pixels, height, width, **kw):
        (markers / "render").touch()
        time.sleep(seconds)
        return grade_frame(self, pixels, height, width, **kw)

    def slow_train(*a, **kw):
        a = list(a)
        inner = a[6] if len(a) > 6 else kw.get("on_step")

        def step(*s):
            (markers / "train").touch()
            time.sleep(seconds)
            if inner is not None:
                inner(*s)

        if len(a) > 6:
            a[6] = step
        else:
            kw["on_step"] = step
        return train_look(*a, **kw)

    shotgrade.ShotGrade.grade = slow_grade
    shotgrade.train_look = slow_train
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the clips helpers
    from clips import cli_args

    return grade_main(cli_args(args))


if __name__ == "__main__":
    raise SystemExit(main())
