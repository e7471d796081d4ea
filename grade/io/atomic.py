"""Write-to-temporary-then-rename, so that an output path only ever holds a complete file."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from grade.errors import GradeError, OutputError, setting

TMP_MARK = ".grade-tmp-"
NAME_MAX = 255  # bytes in one file name on the usual filesystems (ext4, XFS, APFS, NTFS)


def check_output_path(output: Path, sources: list[Path], *, force: bool) -> None:
    """Refuse outputs that would clobber a file (without ``force``) or a source.

    Raises:
        OutputError: the output exists (and not ``force``), equals a source, or its folder is missing.
    """
    check_name(output)
    out_res = output.resolve()
    for src in sources:
        try:
            same = out_res == src.resolve() or (output.exists() and os.path.samefile(output, src))
        except OSError:
            same = False
        if same:
            raise OutputError(f"output path is the input file itself: {output} (sources are never modified)")
    if output.is_dir():
        raise OutputError(f"output path is a directory: {output} (give a file name, e.g. {output / 'graded.mp4'})")
    if output.exists() and not force:
        raise OutputError(f"output exists: {output} (use {setting('force')} to overwrite)")
    parent = output.parent if str(output.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"output folder is a file, not a folder: {parent}")
    if not parent.is_dir():
        raise OutputError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output folder is not writable: {parent}")


def check_name(output: Path) -> None:
    """Refuse a file name longer than the filesystem takes (before anything touches the path)."""
    size = len(os.fsencode(output.name))
    if size > _name_max(output.parent):
        raise OutputError(f"output file name is too long ({size} bytes, at most {_name_max(output.parent)}): {output}")


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder if str(folder) else ".", "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return NAME_MAX


def temp_path_for(output: Path) -> Path:
    """A hidden temporary name in the output's folder, keeping the extension (muxers guess from it).

    The stem is shortened when the name would not fit in a file name (an output named with
    ~255 bytes is valid; its temporary name must be too).
    """
    tail = f"{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}{output.suffix}"
    room = _name_max(output.parent) - len(os.fsencode(tail)) - 1
    stem = output.stem
    if len(os.fsencode(stem)) > room:
        stem = os.fsencode(stem)[: max(0, room)].decode("utf-8", "ignore")
    return output.with_name(f".{stem}{tail}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's live process, or we cannot tell: keep its file
    try:  # a zombie (killed, not yet reaped: its parent died too, as a lost Ray node's workers) writes nothing
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def remove_stale_temps(output: Path, *, any_writer: bool = False) -> list[Path]:
    """Remove the temporary files of ``output`` left by runs that were killed outright (SIGKILL,
    power loss: they had no chance to clean up). Only files whose writing process is gone go; with
    ``any_writer``, every one (the caller knows that no writer lives: a process ID names a process on one
    machine only, and a lost cluster node's worker wrote on shared storage from another)."""
    removed: list[Path] = []
    try:
        names = [n for n in os.listdir(output.parent if str(output.parent) else ".") if TMP_MARK in n]
    except OSError:
        return removed
    for name in names:
        head, _, rest = name.rpartition(TMP_MARK)
        stem, pid = head[1:], rest.split("-", 1)[0]
        if not (head.startswith(".") and name.endswith(output.suffix) and pid.isdigit()):
            continue
        if stem != output.stem and not (stem and output.stem.startswith(stem) and len(os.fsencode(name)) > 200):
            continue  # another output's (only a shortened stem may differ from the output's)
        if any_writer or (int(pid) != os.getpid() and not _pid_alive(int(pid))):
            path = output.with_name(name)
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


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
        raise OutputError(f"output exists: {output} (another run wrote it meanwhile; use {setting('force')})") from None
    except OSError as e:  # filesystems without hard links
        if e.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EMLINK):
            raise
        if output.exists():
            raise OutputError(f"output exists: {output} (use {setting('force')} to overwrite)") from None
        os.replace(tmp, output)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_output(output: Path, *, force: bool) -> Iterator[Path]:
    """Yield a temporary path to write; on success it becomes ``output``, on any failure it is removed.

    Disk-full and permission errors while writing become one-line :class:`OutputError`.
    """
    remove_stale_temps(output)
    tmp = temp_path_for(output)
    try:
        yield tmp
        publish(tmp, output, force=force)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise OutputError(f"disk full while writing {output}") from None
        if e.errno == errno.EFBIG:
            raise OutputError(f"file too large for the filesystem while writing {output}") from None
        raise OutputError(f"cannot write {output}: {e.strerror or e}") from None
    except GradeError as e:  # name the output the user asked for, never the hidden temporary file
        text = str(e)
        if tmp.name in text:
            e.args = (text.replace(str(tmp), str(output)).replace(tmp.name, output.name),)
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
