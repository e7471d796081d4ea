"""SMPTE timecode: ``HH:MM:SS:FF`` (``;`` drop-frame) to frame counts and back."""

from __future__ import annotations

import re


def timecode_frames(tc: str, fps: float) -> int:
    """Frame count of ``HH:MM:SS:FF``; a ``;`` or ``.`` before the frames means drop-frame (29.97/59.94
    timecode skips frame numbers 0-1 (0-3 at 59.94) each minute except every tenth).

    Raises:
        ValueError: not a timecode.
    """
    parts = re.split(r"[:;.,]", tc.strip())
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a timecode: {tc!r}")
    h, m, sec, ff = (int(p) for p in parts)
    base = round(fps)
    total = ((h * 60 + m) * 60 + sec) * base + ff
    if _is_drop(tc, fps):
        drop = 2 * round(fps / 29.97)
        minutes = h * 60 + m
        total -= drop * (minutes - minutes // 10)
    return total


def frames_timecode(frames: int, fps: float, drop: bool = False) -> str:
    """``HH:MM:SS:FF`` (``HH:MM:SS;FF`` drop-frame) of a frame count."""
    base = round(fps)
    if drop:
        d = 2 * round(fps / 29.97)
        per10 = base * 600 - d * 9  # frames in ten drop-frame minutes
        per1 = base * 60 - d
        tens, rem = divmod(frames, per10)
        frames += d * 9 * tens + (d * ((rem - d) // per1) if rem > d else 0)
    ff, sec = frames % base, frames // base
    sep = ";" if drop else ":"
    return f"{sec // 3600 % 24:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}{sep}{ff:02d}"


def _is_drop(tc: str, fps: float) -> bool:
    return any(c in tc for c in ";.,") and abs(fps * 1.001 - round(fps * 1.001)) < 0.01 and round(fps) % 30 == 0


def shift_timecode(tc: str, frames: int, fps: float) -> str:
    """``tc`` moved ``frames`` later (drop-frame timecode stays drop-frame)."""
    if not frames:
        return tc
    try:
        return frames_timecode(timecode_frames(tc, fps) + frames, fps, _is_drop(tc, fps))
    except ValueError:
        return tc
