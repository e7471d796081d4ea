"""grade: photorealistic colour grading of video from a reference still.

The command line (``grade``) is a thin shell over this library API::

    from grade.pipeline import grade_file, GradeOptions
    report = grade_file("shot.mov", "reference.jpg", GradeOptions(mode="fast"))
"""

__version__ = "0.1.0"

import os as _os

# OpenMP threads that spin while they wait make torch's small ops 10-25x slower as soon as another
# process wants the same cores (measured: a 24-frame learned render 85 s -> 7 s on a busy 2-core
# machine). Passive waiting costs nothing measurable when the machine is idle. It must be set
# before torch is first imported; a user's own setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
