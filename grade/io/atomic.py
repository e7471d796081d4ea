"""Write-to-temporary-then-rename, so that an output path only ever holds a complete file."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from grade.errors import OutputError

TMP_MARK = ".grade-tmp-"


def check_output_path(output: Path, sources: list[Path], *, force: bool) -> None:
    """Refuse outputs that would clobber a file (without ``force``) or a source.

    Raises:
        OutputError: the output exists (and not ``force``), equals a source, or its folder is missing.
    """
    out_res = output.resolve()
    for src in sources:
        try:
            same = out_res == src.resolve() or (output.exists() and os.path.samefile(output, src))
        except OSError:
            same = False
        if same:
            raise OutputError(f"output path is the input file itself: {output} (sources are never modified)")
    if output.is_dir():
        raise OutputError(f"output path is a directory: {output}")
    if output.exists() and not force:
        raise OutputError(f"output exists: {output} (use --force to overwrite)")
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output folder is not writable: {parent}")


def temp_path_for(output: Path) -> Path:
    """A hidden temporary name in the output's folder, keeping the extension (muxers guess from it)."""
    return output.with_name(f".{output.stem}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}{output.suffix}")


def publish(tmp: Path, output: Path, *, force: bool) -> None:
    """Move a complete temporary file to its final path, atomically.

    Without ``force`` the move never replaces a file that appeared meanwhile (another run).
    """
    if force:
        os.replace(tmp, output)
        return
    try:
        os.link(tmp, output)  # atomic and fails if output exists
    except FileExistsError:
        raise OutputError(f"output exists: {output} (another run wrote it meanwhile; use --force)") from None
    except OSError as e:  # filesystems without hard links
        if e.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EMLINK):
            raise
        if output.exists():
            raise OutputError(f"output exists: {output} (use --force to overwrite)") from None
        os.replace(tmp, output)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_output(output: Path, *, force: bool) -> Iterator[Path]:
    """Yield a temporary path to write; on success it becomes ``output``, on any failure it is removed.

    Disk-full and permission errors while writing become one-line :class:`OutputError`.
    """
    tmp = temp_path_for(output)
    try:
        yield tmp
        publish(tmp, output, force=force)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise OutputError(f"disk full while writing {output}") from None
        if e.errno == errno.EFBIG:
            raise OutputError(f"file too large for the filesystem while writing {output}") from None
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise OutputError(f"cannot write {output}: {e.strerror}") from None
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
