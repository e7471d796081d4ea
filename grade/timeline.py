"""A video's timeline inside one render: the per-frame exposure gains and dissolves found by shot
detection, and the pixel maths that takes a gain out before a look and puts it back after."""

from __future__ import annotations

import numpy as np
import torch

from grade.lut import rgb_to_yuv
from grade.shots import Transition


class Timeline:
    """What the analysis found between and inside shots, frame by frame: exposure gains (fades, flashes)
    and dissolves. Filled while the analysis runs (streamed renders) or all at once."""

    def __init__(self, gains: list[tuple[int, np.ndarray]] | None = None, transitions=None) -> None:
        self.parts: list[tuple[int, np.ndarray]] = list(gains or [])  # (first frame, gains), in order
        self.transitions: list[Transition] = [t for t in (transitions or []) if t.kind == "dissolve"]

    def add(self, start: int, gains: np.ndarray) -> None:
        self.parts.append((start, gains))

    def gain(self, index: int) -> float:
        for start, g in reversed(self.parts):
            if start <= index:
                return float(g[index - start]) if index - start < len(g) else 1.0
        return 1.0

    def dissolve(self, index: int) -> tuple[int, float] | None:
        """``(middle, w)`` for a frame inside a dissolve: the frame where the next shot starts and how far
        through the dissolve this frame is (0..1); None elsewhere."""
        for t in self.transitions:
            if t.start <= index < t.end:
                fitted = len(t.weights) == t.end - t.start
                w = t.weights[index - t.start] if fitted else (index - t.start + 0.5) / (t.end - t.start)
                return (t.start + t.end) // 2, w
        return None


def ungain(pixels: np.ndarray, gain: float, native: bool, height: int, full_range: bool) -> np.ndarray:
    """A faded frame brought back to the exposure of its shot's key frame: code values ÷ ``gain`` (RGB
    from 0, 4:2:0 luma from its black level and chroma from its centre); alpha kept."""
    x = pixels.astype(np.float32)
    top = 65535.0 if pixels.dtype == np.uint16 else 255.0
    if native:
        black = 0.0 if full_range else 16.0
        x[:height] = black + (x[:height] - black) / gain
        x[height:] = 128 + (x[height:] - 128) / gain
    else:
        x[..., :3] /= gain
    return np.clip(x + 0.5, 0, top).astype(pixels.dtype)


def regain(
    graded: np.ndarray, gain: float, black: np.ndarray, native: bool, height: int, matrix: int, full_range: bool
) -> np.ndarray:
    """The grade of the brought-back frame faded again: ``black + gain · (graded - black)``, ``black`` the
    grade's black level (R'G'B' in [0, 1]): a fade to black ends at the reference's black. Float frames
    (a scene-linear pull) are faded as they are, not clipped."""
    x = graded.astype(np.float32)
    if graded.dtype == np.float32:
        b = black.astype(np.float32)
        x[..., :3] = b + np.float32(gain) * (x[..., :3] - b)
        return x
    top = 65535.0 if graded.dtype == np.uint16 else 255.0
    if native:
        y, cb, cr = (float(v) for v in rgb_to_yuv(torch.from_numpy(black), matrix, full_range))
        quarter = (x.shape[0] - height) // 2
        for rows, level in (
            (slice(0, height), y),
            (slice(height, height + quarter), cb),
            (slice(height + quarter, None), cr),
        ):
            x[rows] = level + gain * (x[rows] - level)
    else:
        b = (black * top).astype(np.float32)
        x[..., :3] = b + gain * (x[..., :3] - b)
    return np.clip(x + 0.5, 0, top).astype(graded.dtype)


def cross_fade(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    """``(1 - w) · a + w · b`` in the frames' own layout (alpha of ``a``; float frames not clipped)."""
    out = a.astype(np.float32) * (1 - w) + b.astype(np.float32) * w
    if a.dtype == np.float32:
        return out
    top = 65535.0 if a.dtype == np.uint16 else 255.0
    mixed = np.clip(out + 0.5, 0, top).astype(a.dtype)
    if a.ndim == 3 and a.shape[-1] == 4:
        mixed[..., 3] = a[..., 3]
    return mixed
