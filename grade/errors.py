"""User-facing errors: one line, no traceback, non-zero exit."""

from __future__ import annotations


class GradeError(Exception):
    """A problem the user can fix (bad input, existing output, ...).

    The CLI prints ``grade: error: <message>`` on one line and exits with ``exit_code``.
    """

    exit_code = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(" ".join(str(message).split()))  # always one line
        if exit_code is not None:
            self.exit_code = exit_code


class InputError(GradeError):
    """The input media, reference or option cannot be used."""


class OutputError(GradeError):
    """The output cannot be written (exists, not writable, disk full...)."""

    exit_code = 3


class Interrupted(GradeError):
    """The run was interrupted (SIGINT/SIGTERM); nothing was left at the output path."""

    exit_code = 130
