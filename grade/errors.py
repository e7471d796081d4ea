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


def setting(name: str, value: object = True) -> str:
    """How a library message names a setting: `` `force=True` ``, `` `device=cpu` `` (keyword and value,
    as a Python caller passes them); the command line shows them as its flags (:func:`as_flags`).

    >>> f"output exists (pass {setting('force')} to overwrite)"
    'output exists (pass `force=True` to overwrite)'
    """
    return f"`{name}={value}`"


def as_flags(message: str) -> str:
    """A library message with its settings as command-line flags: `` `force=True` `` → ``--force``,
    `` `skip_missing=True` `` → ``--skip-missing``, `` `device=cpu` `` → ``--device cpu``.

    >>> as_flags("no CUDA device (use `device=cpu`); `force=True` replaces it")
    'no CUDA device (use --device cpu); --force replaces it'
    """
    import re

    def flag(m: re.Match) -> str:
        name, value = "--" + m.group(1).replace("_", "-"), m.group(2)
        return name if value == "True" else f"{name} {value}"

    return re.sub(r"`(\w+)=([^`]*)`", flag, message)
