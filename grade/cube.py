"""Read and write 3D LUTs as Adobe / Resolve ``.cube`` text files.

The format (Adobe "Cube LUT Specification 1.0", as DaVinci Resolve, ffmpeg's ``lut3d`` and OCIO read it)::

    TITLE "name"             optional
    LUT_3D_SIZE N            2 <= N <= 256
    DOMAIN_MIN 0 0 0         optional (default 0 0 0)
    DOMAIN_MAX 1 1 1         optional (default 1 1 1)
    r g b                    N**3 data lines, red varying fastest, then green, then blue

Choices made here:

* Only the ``[0, 1]`` input domain is supported: ``DOMAIN_MIN`` / ``DOMAIN_MAX`` / ``LUT_3D_INPUT_RANGE``
  are accepted when they say ``0..1`` and refused otherwise (our LUTs are a uniform grid of ``[0, 1]^3``;
  rescaling a wider domain would resample the table and lose everything outside ``[0, 1]``).
* Reading keeps output values as written, also slightly outside ``[0, 1]`` (consumers clamp when they
  quantise); writing clips them to ``[0, 1]`` with 6 decimals (what 8- to 16-bit video can use).
* Reading is strict: 1D LUTs, 1D shapers, unknown keywords, keywords among the data, malformed or
  non-finite numbers and a wrong number of data lines are refused with a one-line
  :class:`~grade.errors.InputError` naming the file and the line. ``#`` comment lines, blank lines,
  CRLF (or CR) line ends and a UTF-8 byte-order mark are accepted.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import stat
from pathlib import Path

import numpy as np
import torch

from grade.errors import InputError, OutputError

MIN_SIZE = 2
MAX_SIZE = 256
# A 6-decimal 65-point cube is ~7 MiB and a 129-point one ~56 MiB; bigger files are refused unread.
MAX_CUBE_BYTES = 64 * 1024 * 1024

_NUM = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_DATA_LINE = re.compile(rf"[ \t]*{_NUM}[ \t]+{_NUM}[ \t]+{_NUM}[ \t]*")
_LINE_END = re.compile(r"\r\n|\r|\n")
_HAS_3D_SIZE = re.compile(r"^[ \t]*LUT_3D_SIZE\b", re.IGNORECASE | re.MULTILINE)
_NON_FINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
_DOMAIN_TOL = 1e-6


def _check_lut(lut: torch.Tensor) -> np.ndarray:
    """Validate a ``(3, N, N, N)`` LUT; return it as float64 NumPy, clipped to [0, 1]."""
    if not isinstance(lut, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor LUT, got {type(lut).__name__}")
    if lut.dim() != 4 or lut.shape[0] != 3 or not (lut.shape[1] == lut.shape[2] == lut.shape[3]):
        raise ValueError(f"a LUT must have shape (3, N, N, N), got {tuple(lut.shape)}")
    n = lut.shape[1]
    if not MIN_SIZE <= n <= MAX_SIZE:
        raise ValueError(f"a .cube LUT must have {MIN_SIZE} to {MAX_SIZE} points per axis, got {n}")
    arr = lut.detach().to("cpu", torch.float64).numpy()
    if not np.isfinite(arr).all():
        raise ValueError("the LUT holds non-finite values (nan/inf)")
    return np.clip(arr, 0.0, 1.0) + 0.0  # + 0.0 turns -0.0 into 0.0


def _clean_title(title: str) -> str:
    """One line, no double quotes (the format has no escapes)."""
    text = "".join(c if c.isprintable() else " " for c in str(title))  # no NULs, no line separators
    return " ".join(text.replace('"', "'").split())


def cube_text(lut: torch.Tensor, title: str | None = None, comments: list[str] | None = None) -> str:
    """The ``.cube`` text of a LUT.

    Args:
        lut: ``(3, N, N, N)`` indexed ``[channel, r, g, b]``, ``2 <= N <= 256``; values are clipped to [0, 1].
        title: optional ``TITLE`` (double quotes become single quotes, line breaks spaces).
        comments: ``#`` lines written first (what the LUT expects and gives: its colour spaces).
    Returns:
        The file's text, ``\\n`` line ends, ending with a newline.
    Raises:
        ValueError: wrong shape or size, or non-finite values.
    """
    arr = _check_lut(lut)
    n = arr.shape[1]
    header = [f"# {' '.join(c.split())}" for c in comments or []]
    if title is not None:
        header.append(f'TITLE "{_clean_title(title)}"')
    header += [f"LUT_3D_SIZE {n}", "DOMAIN_MIN 0 0 0", "DOMAIN_MAX 1 1 1"]
    # [c, r, g, b] -> rows ordered (b, g, r) so that red varies fastest
    rows = arr.transpose(3, 2, 1, 0).reshape(-1)
    body = ("%.6f %.6f %.6f\n" * (n**3)) % tuple(rows.tolist())
    return "\n".join(header) + "\n" + body


def write_cube(
    path: str | os.PathLike[str], lut: torch.Tensor, title: str | None = None, comments: list[str] | None = None
) -> None:
    """Write a LUT as a ``.cube`` file, atomically (a temporary file in the same folder, then a rename).

    Args:
        path: the file to write (replaced if it exists).
        lut: ``(3, N, N, N)`` indexed ``[channel, r, g, b]``, ``2 <= N <= 256``; values are clipped to [0, 1].
        title: optional ``TITLE``.
        comments: optional ``#`` lines before it.
    Raises:
        ValueError: wrong shape or size, or non-finite values.
        OutputError: the file cannot be written (missing folder, permissions, disk full...); no
            temporary file is left behind.
    """
    path = Path(path)
    text = cube_text(lut, title, comments)
    tmp = path.with_name(f".{path.name}.grade-tmp-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise OutputError(f"cannot write LUT file {path}: {e.strerror or e}") from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


def _snippet(line: str) -> str:
    return repr(line if len(line) <= 40 else line[:37] + "...")


def _floats(path: Path, lineno: int, key: str, parts: list[str], count: int) -> list[float]:
    """``count`` finite numbers after a keyword."""
    if len(parts) != count:
        raise InputError(f"{path}: line {lineno}: {key} needs {count} numbers, found {len(parts)}")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise InputError(
            f"{path}: line {lineno}: {key} values must be numbers, got {_snippet(' '.join(parts))}"
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"{path}: line {lineno}: {key} values must be finite, got {_snippet(' '.join(parts))}")
    return values


def _bad_data_line(path: Path, lineno: int, line: str) -> InputError:
    """Why a data line does not parse."""
    parts = line.split()
    if len(parts) != 3:
        found = f"{len(parts)} value" + ("" if len(parts) == 1 else "s")
        return InputError(f"{path}: line {lineno}: expected 3 numbers (r g b), found {found}: {_snippet(line)}")
    for p in parts:
        if p.lower() in _NON_FINITE:
            return InputError(f"{path}: line {lineno}: non-finite value {p!r} (nan/inf are not allowed)")
    return InputError(f"{path}: line {lineno}: not a number in {_snippet(line)}")


def read_cube(path: str | os.PathLike[str], *, max_bytes: int = MAX_CUBE_BYTES) -> torch.Tensor:
    """Read a 3D ``.cube`` LUT (strict; see the module docstring for what is accepted).

    Args:
        path: the ``.cube`` file.
        max_bytes: files larger than this are refused before reading.
    Returns:
        float32 ``(3, N, N, N)`` indexed ``[channel, r, g, b]``; values as in the file (not clamped).
    Raises:
        InputError: missing, unreadable, too large, binary or malformed file, a 1D LUT, or a domain
            other than ``0..1``; the one-line message names the file and, for parse errors, the line.
    """
    path = Path(path)
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"LUT path is a folder, not a .cube file: {path}")
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"LUT path is not a regular file: {path}")
        size = st.st_size
        if size > max_bytes:
            raise InputError(f"LUT file is too large ({size / 2**20:.1f} MiB > {max_bytes / 2**20:.0f} MiB): {path}")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"LUT file not found: {path}") from None
    except OSError as e:
        raise InputError(f"cannot read LUT file {path}: {e.strerror or e}") from None
    if b"\x00" in raw:
        raise InputError(f"not a text .cube file (binary data): {path}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"not a text .cube file (not UTF-8 at byte {e.start}): {path}") from None

    lines = _LINE_END.split(text)  # \n, \r\n or a lone \r
    size_3d: int | None = None
    size_line = 0
    domain_min = [0.0, 0.0, 0.0]
    domain_max = [1.0, 1.0, 1.0]
    seen: dict[str, int] = {}
    data: list[str] = []
    first_data = 0
    for i, raw_line in enumerate(lines, start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if _DATA_LINE.fullmatch(line):
            if size_3d is None:
                raise InputError(f"{path}: line {i}: data before LUT_3D_SIZE")
            if not data:
                first_data = i
            data.append(line)
            continue
        parts = line.split()
        first = parts[0]
        if not (first[0].isalpha() or first[0] == "_") or first.lower() in _NON_FINITE:
            if size_3d is None:
                raise InputError(f"{path}: line {i}: data before LUT_3D_SIZE")
            raise _bad_data_line(path, i, line)
        key = first.upper()
        if data:
            raise InputError(f"{path}: line {i}: keyword {first} after the LUT data started (line {first_data})")
        if key in seen:
            raise InputError(f"{path}: line {i}: {key} given twice (first on line {seen[key]})")
        seen[key] = i
        args = parts[1:]
        if key == "TITLE":
            continue
        if key in ("LUT_1D_SIZE", "LUT_1D_INPUT_RANGE"):
            if size_3d is not None or _HAS_3D_SIZE.search(text):
                raise InputError(
                    f"{path}: line {i}: both a 1D and a 3D LUT in one file (1D shaper LUTs are not supported)"
                )
            raise InputError(f"{path}: line {i}: 1D LUTs are not supported (only 3D LUTs with LUT_3D_SIZE)")
        if key == "LUT_3D_SIZE":
            if len(args) != 1 or not re.fullmatch(r"\+?\d+", args[0]):
                raise InputError(
                    f"{path}: line {i}: LUT_3D_SIZE needs one whole number, got {_snippet(' '.join(args))}"
                )
            size_3d = int(args[0])
            size_line = i
            if not MIN_SIZE <= size_3d <= MAX_SIZE:
                raise InputError(f"{path}: line {i}: LUT_3D_SIZE {size_3d} is out of range ({MIN_SIZE}..{MAX_SIZE})")
        elif key == "DOMAIN_MIN":
            domain_min = _floats(path, i, key, args, 3)
        elif key == "DOMAIN_MAX":
            domain_max = _floats(path, i, key, args, 3)
        elif key == "LUT_3D_INPUT_RANGE":
            lo, hi = _floats(path, i, key, args, 2)
            if lo >= hi:
                raise InputError(f"{path}: line {i}: LUT_3D_INPUT_RANGE minimum {lo:g} is not below maximum {hi:g}")
            if abs(lo) > _DOMAIN_TOL or abs(hi - 1) > _DOMAIN_TOL:
                raise InputError(
                    f"{path}: line {i}: LUT_3D_INPUT_RANGE {lo:g} {hi:g} is not supported (only a 0..1 domain is)"
                )
        else:
            raise InputError(
                f"{path}: line {i}: unknown keyword {first!r} (supported: TITLE, LUT_3D_SIZE, DOMAIN_MIN, "
                "DOMAIN_MAX, LUT_3D_INPUT_RANGE)"
            )

    if size_3d is None:
        raise InputError(f"{path}: no LUT_3D_SIZE line (not a 3D .cube LUT)")
    if any(lo >= hi for lo, hi in zip(domain_min, domain_max)):
        line = max(seen.get("DOMAIN_MIN", 0), seen.get("DOMAIN_MAX", 0))
        raise InputError(
            f"{path}: line {line}: DOMAIN_MIN {' '.join(f'{v:g}' for v in domain_min)} is not below "
            f"DOMAIN_MAX {' '.join(f'{v:g}' for v in domain_max)}"
        )
    if any(abs(v) > _DOMAIN_TOL for v in domain_min) or any(abs(v - 1) > _DOMAIN_TOL for v in domain_max):
        line = max(seen.get("DOMAIN_MIN", 0), seen.get("DOMAIN_MAX", 0))
        raise InputError(
            f"{path}: line {line}: domain {' '.join(f'{v:g}' for v in domain_min)} .. "
            f"{' '.join(f'{v:g}' for v in domain_max)} is not supported (only a 0..1 domain is)"
        )
    expected = size_3d**3
    if len(data) != expected:
        raise InputError(
            f"{path}: LUT_3D_SIZE {size_3d} (line {size_line}) needs {expected} data lines, found {len(data)}"
        )
    values = np.array(" ".join(data).split(), dtype=np.float64)
    out_of_range = ~(np.abs(values) <= np.finfo(np.float32).max)  # 1e999, or 1e308: finite, not in float32
    if out_of_range.any():
        bad = int(np.flatnonzero(out_of_range)[0]) // 3
        lineno = _line_of_data(lines, bad)
        raise InputError(f"{path}: line {lineno}: value out of range in {_snippet(lines[lineno - 1].strip())}")
    # rows run (b, g, r) with red fastest -> [c, r, g, b]
    table = values.reshape(size_3d, size_3d, size_3d, 3).transpose(3, 2, 1, 0)
    return torch.from_numpy(np.ascontiguousarray(table, dtype=np.float32))


def _line_of_data(lines: list[str], k: int) -> int:
    """The 1-based line number of the ``k``-th data line (0-based)."""
    seen = -1
    for i, raw_line in enumerate(lines, start=1):
        line = raw_line.strip()
        if line and _DATA_LINE.fullmatch(line):
            seen += 1
            if seen == k:
                return i
    return 0
