"""Video scopes in numpy: waveform (luma), RGB parade and vectorscope, as pictures for the review page.

Frames are RGB uint8 ``(H, W, 3)`` (uint16 is scaled to 8 bits). Luma and chroma use the BT.709
coefficients on the frame's code values (Y'CbCr of display video, full range): ``Cb`` and ``Cr``
are in [-0.5, 0.5]. The vectorscope puts ``Cb`` to the right and ``Cr`` up, as hardware scopes do;
an angle is counted counter-clockwise from the ``+Cb`` axis, so red sits at about 103° and the
skin-tone line (the "I-line" of NTSC's YIQ, where faces of every complexion fall) at 123°.
"""

from __future__ import annotations

import numpy as np

KR, KB = 0.2126, 0.0722  # BT.709
KG = 1.0 - KR - KB
SKIN_ANGLE = 123.0  # degrees: the I-line
_REACH = 0.56  # the vectorscope's radius in Cb/Cr units (fully saturated red is at 0.513)
_SCOPE_WIDTH = 512  # the widest a waveform gets (columns of the frame are binned to this)
_TRACE = np.array([1.0, 1.0, 1.0], np.float32)
_GRID = np.array([70, 70, 70], np.uint8)


def _u8(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"scopes take an RGB frame (H, W, 3), got shape {rgb.shape}")
    rgb = rgb[..., :3]
    if rgb.dtype == np.uint16:
        return (rgb >> 8).astype(np.uint8)
    if rgb.dtype != np.uint8:
        return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    return rgb


def luma(rgb: np.ndarray) -> np.ndarray:
    """Y' of each pixel, ``(H, W)`` float32 in code values 0..255 (BT.709 weights).

    >>> [round(float(v), 2) for v in luma(np.array([[[255, 0, 0], [128, 128, 128]]], np.uint8))[0]]
    [54.21, 128.0]
    """
    f = _u8(rgb).astype(np.float32)
    return KR * f[..., 0] + KG * f[..., 1] + KB * f[..., 2]


def chroma(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Cb, Cr)`` of each pixel, two ``(H, W)`` float32 arrays in [-0.5, 0.5].

    >>> cb, cr = chroma(np.array([[[0, 0, 255]]], np.uint8))
    >>> float(cb[0, 0]), round(float(cr[0, 0]), 4)
    (0.5, -0.0458)
    """
    f = _u8(rgb).astype(np.float32) / 255.0
    y = KR * f[..., 0] + KG * f[..., 1] + KB * f[..., 2]
    return (f[..., 2] - y) / (2 * (1 - KB)), (f[..., 0] - y) / (2 * (1 - KR))


def hue_angle(rgb: np.ndarray) -> np.ndarray:
    """Each pixel's angle on the vectorscope, degrees in [0, 360), ``(H, W)``.

    >>> [round(float(a), 1) for a in hue_angle(np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8))[0]]
    [102.9, 229.7, 354.8]
    """
    cb, cr = chroma(rgb)
    return np.degrees(np.arctan2(cr, cb)) % 360.0


def _small(rgb: np.ndarray, width: int) -> np.ndarray:
    """A frame no wider than ``width`` (every n-th column and row): scopes need no more."""
    step = max(1, int(np.ceil(rgb.shape[1] / width)))
    return rgb[::step, ::step]


def _glow(counts: np.ndarray, per_column: float) -> np.ndarray:
    """Counts -> brightness 0..1: a square-root response, and any hit visible."""
    v = np.sqrt(counts / max(per_column, 1.0) * 8.0)
    return np.where(counts > 0, np.clip(0.25 + v, 0.0, 1.0), 0.0).astype(np.float32)


def waveform_counts(values: np.ndarray, height: int = 256, width: int | None = None) -> np.ndarray:
    """The waveform of one channel ``(H, W)`` of code values 0..255: ``(height, width)`` int counts,
    column ``x`` for the frame's columns binned to ``width`` (default: the frame's width, at most 512),
    row 0 for 255 (white at the top) down to row ``height - 1`` for 0.

    >>> w = waveform_counts(np.full((4, 6), 128.0), height=256)
    >>> w.shape, np.nonzero(w.sum(axis=1))[0].tolist(), int(w.sum())
    ((256, 6), [127], 24)
    """
    h, w = values.shape
    width = width or min(w, _SCOPE_WIDTH)
    xs = (np.arange(w) * width // w).astype(np.int64)
    level = np.clip(np.rint(values), 0, 255).astype(np.int64)
    rows = (height - 1) - level * (height - 1) // 255
    idx = rows * width + xs[None, :]
    return np.bincount(idx.ravel(), minlength=height * width).reshape(height, width)


def _graticule(img: np.ndarray) -> None:
    """Lines at 0, 25, 50, 75 and 100 % of a waveform picture (in place)."""
    h = img.shape[0]
    for level in (0, 64, 128, 191, 255):
        row = (h - 1) - level * (h - 1) // 255
        img[row, ::4] = np.maximum(img[row, ::4], _GRID)


def waveform(rgb: np.ndarray, height: int = 256) -> np.ndarray:
    """The luma waveform of a frame as an RGB uint8 picture ``(height, width, 3)``, ``width`` the frame's
    width (at most 512): a flat grey frame is one horizontal line at its luma.

    >>> img = waveform(np.full((10, 40, 3), 128, np.uint8))
    >>> img.shape, [r for r in range(256) if img[r, 1].max() > 200]
    ((256, 40, 3), [127])
    """
    small = _small(_u8(rgb), _SCOPE_WIDTH)
    counts = waveform_counts(luma(small), height)
    glow = _glow(counts, small.shape[0] * small.shape[1] / counts.shape[1])
    img = (glow[..., None] * _TRACE * np.array([200, 255, 200], np.float32)).astype(np.uint8)
    _graticule(img)
    return img


def parade(rgb: np.ndarray, height: int = 256) -> np.ndarray:
    """The RGB parade: the waveforms of R, G and B side by side, each in its colour,
    ``(height, 3 * width + 8, 3)`` uint8 (``width`` as :func:`waveform`'s, at most 512 / 3 each).

    >>> img = parade(np.dstack([np.full((4, 30), v, np.uint8) for v in (255, 128, 0)]))
    >>> img.shape, int(img[0, :30, 0].max()) > 200, int(img[127, 34:64, 1].max()) > 200
    ((256, 98, 3), True, True)
    """
    small = _small(_u8(rgb), _SCOPE_WIDTH // 3)
    per = small.shape[0] * small.shape[1] / small.shape[1]
    width = small.shape[1]
    img = np.zeros((height, 3 * width + 8, 3), np.uint8)
    for c in range(3):
        counts = waveform_counts(small[..., c].astype(np.float32), height, width)
        tint = np.zeros(3, np.float32)
        tint[c] = 255
        tint += 40  # a bright trace reads better than pure primaries
        panel = (_glow(counts, per)[..., None] * np.minimum(tint, 255)).astype(np.uint8)
        _graticule(panel)
        x0 = c * (width + 4)
        img[:, x0 : x0 + width] = panel
    return img


def vectorscope_point(cb: float | np.ndarray, cr: float | np.ndarray, size: int = 256) -> tuple:
    """Where ``(Cb, Cr)`` falls on a ``size``-pixel vectorscope: ``(row, column)`` (floats or arrays).

    >>> vectorscope_point(0.0, 0.0, 257)
    (128.0, 128.0)
    """
    c = (size - 1) / 2.0
    scale = c / _REACH
    return c - cr * scale, c + cb * scale


def vectorscope_counts(rgb: np.ndarray, size: int = 256) -> np.ndarray:
    """Pixels per cell of the Cb/Cr plane, ``(size, size)`` int: row 0 is the top (+Cr), column 0 the left
    (-Cb). A pure red frame is one point at red's angle:

    >>> v = vectorscope_counts(np.full((8, 8, 3), (255, 0, 0), np.uint8), 255)
    >>> r, c = np.unravel_index(v.argmax(), v.shape)
    >>> round(float(np.degrees(np.arctan2(127 - r, c - 127))))
    103
    """
    small = _small(_u8(rgb), _SCOPE_WIDTH)
    cb, cr = chroma(small)
    rows, cols = vectorscope_point(cb, cr, size)
    r = np.clip(np.rint(rows), 0, size - 1).astype(np.int64)
    c = np.clip(np.rint(cols), 0, size - 1).astype(np.int64)
    return np.bincount((r * size + c).ravel(), minlength=size * size).reshape(size, size)


def _dot(img: np.ndarray, row: float, col: float, colour, radius: int = 1) -> None:
    r0, c0 = int(round(row)), int(round(col))
    h, w = img.shape[:2]
    img[max(0, r0 - radius) : min(h, r0 + radius + 1), max(0, c0 - radius) : min(w, c0 + radius + 1)] = colour


def vectorscope(rgb: np.ndarray, size: int = 256) -> np.ndarray:
    """The vectorscope of a frame as an RGB uint8 picture ``(size, size, 3)``: the trace, a circle at
    full saturation (Cb² + Cr² = 0.5²), boxes at the 75 % primaries and secondaries, and the skin-tone
    line at 123°.

    >>> img = vectorscope(np.full((4, 4, 3), 128, np.uint8), 64)
    >>> img.shape, img.dtype, bool(img[31:33, 31:33].max() > 200)
    ((64, 64, 3), dtype('uint8'), True)
    """
    counts = vectorscope_counts(rgb, size)
    small_pixels = max(1, int(counts.sum()))
    glow = _glow(counts, small_pixels / size)
    img = np.zeros((size, size, 3), np.uint8)
    c = (size - 1) / 2.0
    scale = c / _REACH
    t = np.linspace(0, 2 * np.pi, 4 * size, endpoint=False)
    for radius in (0.5, 0.25):
        rows, cols = c - radius * scale * np.sin(t), c + radius * scale * np.cos(t)
        img[np.rint(rows).astype(int), np.rint(cols).astype(int)] = _GRID
    img[int(round(c)), ::4] = _GRID
    img[::4, int(round(c))] = _GRID
    radii = np.linspace(0, 0.5 * scale, size)
    a = np.radians(SKIN_ANGLE)
    rows, cols = c - radii * np.sin(a), c + radii * np.cos(a)
    img[np.rint(rows).astype(int), np.rint(cols).astype(int)] = (170, 120, 80)  # the skin-tone line
    bars = np.array([[191, 0, 0], [191, 191, 0], [0, 191, 0], [0, 191, 191], [0, 0, 191], [191, 0, 191]], np.uint8)
    cb, cr = chroma(bars[None])
    for i in range(len(bars)):
        row, col = vectorscope_point(float(cb[0, i]), float(cr[0, i]), size)
        colour = np.minimum(bars[i].astype(int) + 64, 255).astype(np.uint8)
        for dr, dc in ((-3, -3), (-3, 3), (3, -3), (3, 3)):
            _dot(img, row + dr, col + dc, colour, 0)
    trace = (glow[..., None] * np.array([220, 255, 220], np.float32)).astype(np.uint8)
    return np.maximum(img, trace)
