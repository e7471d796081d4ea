"""Relinking: each event's media found in the ``--media`` folders by source file, clip or reel name."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from grade.conform.edit import Event
from grade.errors import InputError, setting
from grade.io.timecode import timecode_frames

MEDIA_SUFFIXES = {".mov", ".mp4", ".mxf", ".mkv", ".avi", ".m4v", ".webm", ".ts", ".mts", ".mpg"}


@dataclass
class Media:
    path: Path
    start: int  # start timecode in frames at the edit's rate
    frames: int
    fps: float
    timecoded: bool = True  # False: no timecode tag, taken to start at 00:00:00:00


class MediaIndex:
    """Video files under the ``--media`` folders (recursive), found by file name, stem, or reel."""

    def __init__(self, folders: list[Path]) -> None:
        self.files: list[Path] = []
        for folder in folders:
            if not folder.is_dir():
                raise InputError(f"{setting('media', folder)}: not a folder")
            for root, _dirs, names in os.walk(folder):
                for n in sorted(names):
                    if Path(n).suffix.lower() in MEDIA_SUFFIXES and not n.startswith("."):
                        self.files.append(Path(root) / n)
        self._by_key: dict[str, list[Path]] = {}
        for p in self.files:
            for key in {p.name.lower(), p.stem.lower()}:
                self._by_key.setdefault(key, []).append(p)
        self._probed: dict[Path, Media] = {}

    def find(self, event: Event, order: list[str]) -> Path | None:
        """The media of an event: the first key in ``order`` (``file``, ``clip``, ``reel``) that matches."""
        for how in order:
            key = {"file": event.source_file, "clip": event.name, "reel": event.reel}[how]
            if not key:
                continue
            key = key.strip().lower()
            for candidate in (key, Path(key).stem, key.rstrip(".")):
                hits = self._by_key.get(candidate)
                if hits:
                    return hits[0]
        return None

    def media(self, path: Path, rate: float) -> Media:
        if path not in self._probed:
            from grade.io.video import probe

            info = probe(path)
            try:
                start = timecode_frames(info.timecode, rate) if info.timecode else 0
            except ValueError:
                raise InputError(f"media {path} has a malformed timecode tag {info.timecode!r}") from None
            self._probed[path] = Media(path, start, info.frames, info.fps, timecoded=bool(info.timecode))
        return self._probed[path]
