"""The preset library: named ``.gpreset`` files in a folder (``--library``, ``$GRADE_PRESETS`` or the
platform's data directory), plus the presets shipped with ``grade``."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from grade.errors import InputError, OutputError, setting
from grade.presets import PRESET_NAME, SUFFIX, Preset, build_preset, read_preset, validate_name, write_preset

ENV_LIBRARY = "GRADE_PRESETS"


SHIPPED = Path(__file__).resolve().parent.parent / "presets"


def default_library() -> Path:
    """The user's presets directory by platform convention (``$GRADE_PRESETS`` overrides it)."""
    env = os.environ.get(ENV_LIBRARY)
    if env:
        return Path(env).expanduser()
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "grade" / "presets"
    if os.name == "nt":
        return Path(os.environ.get("APPDATA", home / "AppData" / "Roaming")) / "grade" / "presets"
    return Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share") / "grade" / "presets"


class Library:
    """The user's presets directory plus the read-only shipped presets."""

    def __init__(self, root: str | Path | None = None, shipped: Path | None = SHIPPED) -> None:
        self.root = Path(root).expanduser() if root else default_library()
        self.shipped = shipped

    def path_for(self, name: str) -> Path:
        return self.root / f"{validate_name(name)}{SUFFIX}"

    def _shipped_path(self, name: str) -> Path | None:
        if self.shipped is None:
            return None
        p = self.shipped / f"{name}{SUFFIX}"
        return p if p.is_file() else None

    def entries(self) -> list[tuple[str, Path, bool]]:
        """``(name, path, read_only)`` for every preset, user's first; a user preset hides a shipped one."""
        seen: dict[str, tuple[str, Path, bool]] = {}
        for folder, ro in ((self.root, False), (self.shipped, True)):
            if folder is None or not folder.is_dir():
                continue
            for p in sorted(folder.glob(f"*{SUFFIX}")):
                name = p.name[: -len(SUFFIX)]
                if PRESET_NAME.fullmatch(name) and name not in seen:
                    seen[name] = (name, p, ro)
        return sorted(seen.values())

    def locate(self, name_or_path: str | Path) -> tuple[Path, bool]:
        """The file of a preset given by library name or by path; ``read_only`` is True for shipped ones."""
        text = str(name_or_path)
        if text.endswith(SUFFIX) or os.sep in text or "/" in text:
            p = Path(text).expanduser()
            if not p.is_file():
                raise InputError(f"no such preset file: {p}")
            return p, False
        validate_name(text)
        p = self.root / f"{text}{SUFFIX}"
        if p.is_file():
            return p, False
        shipped = self._shipped_path(text)
        if shipped is not None:
            return shipped, True
        known = ", ".join(n for n, _, _ in self.entries()[:10]) or "none yet"
        raise InputError(f"no preset named {text!r} in {self.root} (known: {known})")

    def load(self, name_or_path: str | Path) -> Preset:
        return read_preset(self.locate(name_or_path)[0])

    def save(self, preset: Preset, force: bool = False) -> Path:
        return write_preset(preset, self.path_for(preset.name), force=force)

    def check_free(self, name: str, force: bool) -> None:
        """Fail before any work when saving ``name`` would clobber a preset (without ``force``)."""
        p = self.path_for(name)
        if p.exists() and not force:
            raise OutputError(f"preset {name!r} already exists: {p} (use {setting('force')} to replace it)")

    def delete(self, name: str) -> Path:
        p, ro = self.locate(validate_name(name))
        if ro:
            raise InputError(f"preset {name!r} is shipped with grade and read-only")
        p.unlink()
        return p

    def rename(self, old: str, new: str, force: bool = False) -> Path:
        src, ro = self.locate(validate_name(old))
        if ro:
            raise InputError(f"preset {old!r} is shipped with grade and read-only (import a copy under a new name)")
        preset = read_preset(src)
        preset.manifest.name = validate_name(new)
        dst = self.save(preset, force=force)
        if dst.resolve() != src.resolve():
            src.unlink()
        return dst

    def import_file(self, path: str | Path, name: str | None = None, force: bool = False) -> Path:
        """Copy a preset file (verified) or a ``.cube`` LUT (as a ``lut`` preset) into the library."""
        path = Path(path)
        if path.suffix.lower() == ".cube":
            from grade.cube import read_cube

            lut = read_cube(path)
            preset = build_preset(name or _safe_stem(path), mode="lut", lut=lut, notes=f"imported from {path.name}")
        else:
            preset = read_preset(path)
            if name:
                preset.manifest.name = validate_name(name)
        return self.save(preset, force=force)


def _safe_stem(path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.+-]", "_", path.stem).strip("._") or "imported"
    return validate_name(stem[:64])


def read_look(source: str | Path, library: str | Path | None = None) -> Preset:
    """The one reader for every look kind kept on disk, as a :class:`~grade.presets.Preset`: a ``.cube``
    3D LUT (a ``lut`` preset named after the file), a ``.gpreset`` file, or the name of a preset in the
    library (``library``, else ``$GRADE_PRESETS`` or the platform's data folder).

    >>> import tempfile
    >>> from grade.cube import write_cube
    >>> from grade.lut import identity_lut
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_cube(Path(d) / "day (v2).cube", identity_lut(5))
    ...     p = read_look(Path(d) / "day (v2).cube")
    >>> p.name, p.manifest.mode, tuple(p.lut.shape)
    ('day--v2', 'lut', (3, 5, 5, 5))

    Raises:
        InputError: the file is not a valid look, or no preset has that name.
    """
    text = str(source)
    path = Path(text).expanduser()
    if path.suffix.lower() == ".cube":
        from grade.cube import read_cube

        lut = read_cube(path)
        name = re.sub(r"[^A-Za-z0-9_.+-]", "-", path.stem)[:64].strip(".-") or "cube"
        return build_preset(validate_name(name if name[0].isalnum() else f"c{name}"), mode="lut", lut=lut)
    if path.suffix.lower() == SUFFIX:
        return read_preset(path)
    return Library(library).load(text)
