"""grade: photorealistic colour grading of video from a reference still.

The command line (``grade``) is a thin shell over this library API (:mod:`grade.api`)::

    import grade
    look = grade.fit_look([frame], "reference.jpg")      # or grade.load_look("dusk.cube" | "dusk.gpreset" | "dusk")
    graded = look.apply(frame)                           # numpy RGB: uint8, uint16 or float32 in [0, 1]
    look.save("dusk.gpreset"); look.to_cube("dusk.cube", size=33)
    report = grade.grade_file("shot.mov", look, "shot.graded.mov", strength=0.8)
    shots = grade.detect_shots("shot.mov")
    grade.conform("cut.edl", "footage/", "graded/", look="reference.jpg")
"""

__version__ = "0.1.0"

import os as _os

# OpenMP threads that spin long while they wait make torch's small ops 10-25x slower as soon as
# other threads want the same cores (measured: a 24-frame learned render 85 s -> 7 s on a busy
# 2-core machine, where the encoder's threads compete), while threads that never spin make
# training ~45 % slower on an idle machine (26 -> 38 s: every small op pays a wake-up). A short
# spin (GNU OpenMP, which torch's wheels use) keeps both. Set before torch is first imported; a
# user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
if "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ.setdefault("GOMP_SPINCOUNT", "20000")

from grade.errors import GradeError, InputError, OutputError  # noqa: E402  (light: no torch)

_API = ("Look", "conform", "detect_shots", "fit_look", "grade_file", "load_look")
__all__ = ["GradeError", "InputError", "OutputError", "__version__", *_API]


def __getattr__(name: str):
    """The API's names, imported on first use (``import grade`` stays light for the command line)."""
    if name in _API:
        from grade import api

        return getattr(api, name)
    raise AttributeError(f"module 'grade' has no attribute {name!r}")
