"""The review page's pictures, as pure numpy: the strength blend, the before/after wipe, the display size."""

from __future__ import annotations

import cv2
import numpy as np


def blend(before: np.ndarray, full: np.ndarray, strength: float) -> np.ndarray:
    """The look at ``strength``: ``before + strength * (full - before)``, RGB uint8 ``(H, W, 3)``.

    >>> a, b = np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 200, np.uint8)
    >>> int(blend(a, b, 0.25)[0, 0, 0]), int(blend(a, b, 1.0)[0, 0, 0]), int(blend(a, b, 0.0)[0, 0, 0])
    (50, 200, 0)
    """
    if strength >= 1.0:
        return full
    if strength <= 0.0:
        return before
    return cv2.addWeighted(before, 1.0 - strength, full, strength, 0.0)


def wipe(before: np.ndarray, after: np.ndarray, position: float) -> np.ndarray:
    """Before left of ``position`` (0..1 of the width), after right of it, and a thin white line between.

    >>> w = wipe(np.zeros((2, 10, 3), np.uint8), np.full((2, 10, 3), 9, np.uint8), 0.5)
    >>> w[0, :, 0].tolist()
    [0, 0, 0, 0, 255, 9, 9, 9, 9, 9]
    """
    out = before.copy()
    x = int(round(min(1.0, max(0.0, position)) * before.shape[1]))
    out[:, x:] = after[:, x:]
    line = max(1, before.shape[1] // 640)
    if 0 < x < before.shape[1]:
        out[:, max(0, x - line) : x] = 255
    return out


def fit_display(rgb: np.ndarray, side: int) -> np.ndarray:
    """``rgb`` scaled down (area) so that its long side is at most ``side`` (:func:`grade.io.image.fit_side`)."""
    from grade.io.image import fit_side

    return fit_side(rgb, side)
