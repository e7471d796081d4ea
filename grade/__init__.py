"""grade: photorealistic colour grading of video from a reference still.

The command line (``grade``) is a thin shell over this library API::

    from grade.pipeline import grade_file, GradeOptions
    report = grade_file("shot.mov", "reference.jpg", GradeOptions(mode="fast"))
"""

__version__ = "0.1.0"
