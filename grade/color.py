"""Colour-difference maths: sRGB -> CIELAB and the CIEDE2000 colour difference (NumPy, float64).

``srgb_to_lab`` uses the same constants as ``kornia.color.rgb_to_lab`` (IEC 61966-2-1 transfer
curve, sRGB primaries, D65 / 2 degree white), which the fitting code uses on tensors, so the two
agree to float32 precision. ``delta_e2000`` is the standard formula as written out by Sharma, Wu and
Dalal, "The CIEDE2000 color-difference formula: implementation notes, supplementary test data, and
mathematical observations" (Color Res. Appl. 30(1), 2005), with kL = kC = kH = 1.
"""

from __future__ import annotations

import numpy as np

# linear sRGB -> XYZ (D65), and the D65 reference white, as in kornia.color
_RGB_TO_XYZ = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ]
)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """Non-linear sRGB in [0, 1] -> CIELAB (D65).

    Args:
        rgb: float array ``(..., 3)`` (values outside [0, 1] are clipped).
    Returns:
        float64 ``(..., 3)``: L* in [0, 100], a*, b*.
    """
    c = np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0)
    if c.shape[-1] != 3:
        raise ValueError(f"srgb_to_lab expects (..., 3) arrays, got shape {c.shape}")
    lin = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    t = (lin @ _RGB_TO_XYZ.T) / _WHITE_D65
    f = np.where(t > 0.008856, np.cbrt(np.maximum(t, 0.008856)), 7.787 * t + 4.0 / 29.0)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def delta_e2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference between two sets of CIELAB colours (kL = kC = kH = 1).

    Args:
        lab1, lab2: float arrays ``(..., 3)`` (L*, a*, b*), broadcastable against each other.
    Returns:
        float64 ``(...)``: the difference per colour (symmetric; 0 for equal colours).
    """
    lab1 = np.asarray(lab1, dtype=np.float64)
    lab2 = np.asarray(lab2, dtype=np.float64)
    if lab1.shape[-1] != 3 or lab2.shape[-1] != 3:
        raise ValueError(f"delta_e2000 expects (..., 3) arrays, got shapes {lab1.shape} and {lab2.shape}")
    l1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    l2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]

    # a' from the mean chroma (the G factor)
    c_mean7 = ((np.hypot(a1, b1) + np.hypot(a2, b2)) / 2.0) ** 7
    g = 0.5 * (1.0 - np.sqrt(c_mean7 / (c_mean7 + 25.0**7)))
    a1p, a2p = (1.0 + g) * a1, (1.0 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    # hue angles in degrees [0, 360); 0 for achromatic colours (atan2(0, 0) == 0)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360.0
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360.0

    dl = l2 - l1
    dc = c2p - c1p
    chroma_prod = c1p * c2p
    dh = h2p - h1p
    dh = np.where(dh > 180.0, dh - 360.0, np.where(dh < -180.0, dh + 360.0, dh))
    dh = np.where(chroma_prod == 0.0, 0.0, dh)
    dhh = 2.0 * np.sqrt(chroma_prod) * np.sin(np.radians(dh) / 2.0)

    l_bar = (l1 + l2) / 2.0
    c_bar = (c1p + c2p) / 2.0
    h_sum = h1p + h2p
    h_bar = np.where(
        np.abs(h1p - h2p) <= 180.0, h_sum / 2.0, np.where(h_sum < 360.0, (h_sum + 360.0) / 2.0, (h_sum - 360.0) / 2.0)
    )
    h_bar = np.where(chroma_prod == 0.0, h_sum, h_bar)

    t = (
        1.0
        - 0.17 * np.cos(np.radians(h_bar - 30.0))
        + 0.24 * np.cos(np.radians(2.0 * h_bar))
        + 0.32 * np.cos(np.radians(3.0 * h_bar + 6.0))
        - 0.20 * np.cos(np.radians(4.0 * h_bar - 63.0))
    )
    d_theta = 30.0 * np.exp(-(((h_bar - 275.0) / 25.0) ** 2))
    c_bar7 = c_bar**7
    r_c = 2.0 * np.sqrt(c_bar7 / (c_bar7 + 25.0**7))
    s_l = 1.0 + 0.015 * (l_bar - 50.0) ** 2 / np.sqrt(20.0 + (l_bar - 50.0) ** 2)
    s_c = 1.0 + 0.045 * c_bar
    s_h = 1.0 + 0.015 * c_bar * t
    r_t = -np.sin(np.radians(2.0 * d_theta)) * r_c

    tl, tc, th = dl / s_l, dc / s_c, dhh / s_h
    return np.sqrt(np.maximum(tl**2 + tc**2 + th**2 + r_t * tc * th, 0.0))
