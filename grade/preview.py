"""Contact sheets: the reference, and for each shot its key frame before and after the grade."""

from __future__ import annotations

import cv2
import numpy as np

THUMB_H = 144


def _thumb(rgb: np.ndarray, h: int = THUMB_H) -> np.ndarray:
    rgb = rgb if rgb.dtype == np.uint8 else (rgb >> 8).astype(np.uint8)
    w = max(1, round(rgb.shape[1] * h / rgb.shape[0]))
    interp = cv2.INTER_AREA if rgb.shape[0] > h else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(rgb[..., :3]), (w, h), interpolation=interp)


def _label(img: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((20, img.shape[1], 3), 24, np.uint8)
    cv2.putText(
        bar, text[: max(1, img.shape[1] // 7)], (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (230, 230, 230), 1, cv2.LINE_AA
    )
    return np.vstack([bar, img])


def colour_ramp() -> np.ndarray:
    """An RGB uint8 test image ``(96, 160, 3)``: hues across, tones down, a grey ramp on the left
    (what a LUT does, shown where there is no reference or key frame)."""
    hsv = np.zeros((96, 160, 3), np.uint8)
    hsv[..., 0] = np.linspace(0, 179, 160, dtype=np.uint8)[None]
    hsv[..., 1] = 200
    hsv[..., 2] = np.linspace(40, 255, 96, dtype=np.uint8)[:, None]
    ramp = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    ramp[:, :16] = np.linspace(0, 255, 96, dtype=np.uint8)[:, None, None]
    return ramp


def contact_sheet(
    reference: np.ndarray,
    rows: list[tuple[str, np.ndarray, np.ndarray]],
    max_rows: int = 24,
    ref_label: str = "reference",
) -> np.ndarray:
    """Build an RGB uint8 sheet.

    Args:
        reference: RGB ``(h, w, 3)``.
        rows: ``(label, before, after)`` per shot, RGB arrays.
    Returns:
        RGB uint8 ``(H, W, 3)``: the reference on the left, one row per shot (before | after).
    """
    gap = 6
    ref = _label(_thumb(reference), ref_label)
    blocks = []
    for label, before, after in rows[:max_rows]:
        b = _label(_thumb(before), f"{label} before")
        a = _label(_thumb(after), f"{label} after")
        blocks.append(np.hstack([b, np.full((b.shape[0], gap, 3), 12, np.uint8), a]))
    if len(rows) > max_rows:
        note = np.full((20, blocks[0].shape[1], 3), 12, np.uint8)
        cv2.putText(
            note, f"... {len(rows) - max_rows} more shots", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (200, 200, 200), 1
        )
        blocks.append(note)
    width = max(b.shape[1] for b in blocks)
    blocks = [np.hstack([b, np.full((b.shape[0], width - b.shape[1], 3), 12, np.uint8)]) for b in blocks]
    right = np.vstack([x for b in blocks for x in (b, np.full((gap, width, 3), 12, np.uint8))])
    h = max(right.shape[0], ref.shape[0])
    left = np.vstack([ref, np.full((h - ref.shape[0], ref.shape[1], 3), 12, np.uint8)])
    right = np.vstack([right, np.full((h - right.shape[0], width, 3), 12, np.uint8)])
    sheet = np.hstack([left, np.full((h, gap * 2, 3), 12, np.uint8), right])
    return np.pad(sheet, ((gap, gap), (gap, gap), (0, 0)), constant_values=12)
