"""grade: photorealistic colour grading of video from a reference still.

The command line (``grade``) is a thin shell over this library API::

    from grade.pipeline import grade_file, GradeOptions
    report = grade_file("shot.mov", "reference.jpg", GradeOptions(mode="fast"))
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
