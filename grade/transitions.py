"""What happens between and inside shots, from tiny analysis frames: exposure steps and fades (per-frame
gains), blank frames, and dissolves (a frame that is a weighted mix of the shots either side)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel

if TYPE_CHECKING:
    from grade.shots import ShotSettings


class Transition(BaseModel):
    """A gradual transition over frames ``[start, end)``: a ``dissolve`` between the shots before and
    after it (each side keeps its own look, the two looks cross-fade over it), or a ``fade-out`` to /
    ``fade-in`` from black (the shot's look, darkened: the frames' ``gains``)."""

    kind: Literal["dissolve", "fade-out", "fade-in"]
    start: int
    end: int
    start_time: float = 0.0
    end_time: float = 0.0
    start_tc: str = ""
    end_tc: str = ""
    weights: list[float] = []  # dissolves: how far each frame is mixed into the next shot (0..1)


def is_blank(gray: np.ndarray, settings: ShotSettings) -> bool:
    """Black, a flat colour, or a title card (mostly black): no look can be learned from it."""
    return bool((gray < settings.dark_level).mean() >= settings.dark_share or gray.std() < 2.0)


def find_dissolves(thumbs: np.ndarray, fades: np.ndarray, settings: ShotSettings) -> list[tuple[int, int, list[float]]]:
    """Dissolves ``[(start, end, weights)]`` in a run of frames, from their small copies ``thumbs``
    ``(n, D)``: a stretch whose frames are, one by one, a mix ``(1 - w) · A + w · B`` of the frame before
    it and the frame after it (a dissolve mixes two shots pixel by pixel, so their small copies mix
    too), with ``w`` rising from 0 to 1 (linearly or eased: ``weights`` are the fitted ones), between two
    frames of different content, gradual (no step a cut) and not a fade (``fades`` ``(n,)``).

    >>> a, b = np.zeros((1, 12)), np.full((1, 12), 90.0)
    >>> w = np.linspace(0, 1, 12)[:, None]
    >>> run = np.concatenate([np.repeat(a, 10, 0), (1 - w) * a + w * b, np.repeat(b, 10, 0)])
    >>> from grade.shots import ShotSettings
    >>> [(s, e) for s, e, _ in find_dissolves(run, np.zeros(len(run), bool), ShotSettings())]
    [(11, 21)]
    """
    n = len(thumbs)
    if n < settings.dissolve_min + 2:
        return []
    steps = np.concatenate([[0.0], np.abs(np.diff(thumbs, axis=0)).mean(1)])
    path = np.cumsum(steps)
    found: list[tuple[float, int, int, np.ndarray]] = []
    for length in range(settings.dissolve_max, settings.dissolve_min - 1, -1):
        s = np.arange(0, n - length - 1)
        if not len(s):
            continue
        e = s + length + 1  # frames s and e are the two sides; s+1 .. e-1 the mix
        d = np.abs(thumbs[e] - thumbs[s]).mean(1)
        ok = (d >= 12.0) & (path[e] - path[s] <= 1.5 * d)
        for i in np.nonzero(ok)[0]:
            a, b = s[i], e[i]
            if steps[a + 1 : b + 1].max() > 0.35 * d[i] or fades[a + 1 : b].mean() > 0.5:
                continue
            k = float(thumbs[b] @ thumbs[a]) / max(float(thumbs[a] @ thumbs[a]), 1e-9)
            if np.abs(thumbs[b] - k * thumbs[a]).mean() < 0.3 * d[i]:
                continue  # the far side is the near side darkened or brightened: a fade, not a dissolve
            span = thumbs[b] - thumbs[a]
            w = np.clip((thumbs[a + 1 : b] - thumbs[a]) @ span / max(float(span @ span), 1e-9), 0, 1)
            if np.diff(w).min(initial=0) < -0.05 or w[0] > 0.35 or w[-1] < 0.65:
                continue  # not one shot turning into the other
            mix = thumbs[a] + w[:, None] * span
            resid = np.abs(thumbs[a + 1 : b] - mix).mean()
            if resid <= settings.dissolve_fit * d[i]:
                found.append((resid / d[i], int(a + 1), int(b), w))
    chosen: list[tuple[int, int, list[float]]] = []
    # the longest first (its frames that are not mixed yet are trimmed below), then the best fit
    for _, a, _b, w in sorted(found, key=lambda f: (-(f[2] - f[1]), f[0])):
        inside = np.nonzero((w > 0.05) & (w < 0.95))[0]  # frames that are not yet / no longer mixed
        if not len(inside):
            continue
        lo, hi = a + int(inside[0]), a + int(inside[-1]) + 1
        if all(hi <= x or lo >= y for x, y, _ in chosen):
            chosen.append((lo, hi, [round(float(v), 4) for v in w[lo - a : hi - a]]))
    return sorted(chosen)


def exposure_gains(steps: np.ndarray, fades: np.ndarray, key: int) -> np.ndarray:
    """Per frame of a shot, its exposure relative to the key frame ``key`` (``(n,)``): the product of the
    gain steps (``steps[t]``: frame ``t`` is frame ``t - 1`` × this, where ``fades[t]``) between them.

    >>> steps = np.array([1, np.inf, 2.0, 2.0, 1.0, 1.0, 0.5, 0.0])
    >>> fades = np.array([False, True, True, True, False, False, True, True])
    >>> exposure_gains(steps, fades, 4).tolist()
    [0.0, 0.25, 0.5, 1.0, 1.0, 1.0, 0.5, 0.0]
    """
    n = len(steps)
    g = np.ones(n, np.float64)
    for t in range(key + 1, n):
        c = steps[t]
        g[t] = g[t - 1] * c if fades[t] and np.isfinite(c) else g[t - 1]
    for t in range(key, 0, -1):
        c = steps[t]
        if fades[t] and not np.isfinite(c):
            g[t - 1] = 0.0  # frame t came up from black
        elif fades[t] and c > 1e-3:
            g[t - 1] = g[t] / c
        else:
            g[t - 1] = g[t]
    g = np.clip(g, 0.0, 4.0)
    g[np.abs(g - 1) < 0.02] = 1.0
    return g.astype(np.float32)


def gain_step(gray: np.ndarray, prev: np.ndarray | None, settings: ShotSettings) -> tuple[float, bool]:
    """How frame ``gray`` relates to the previous one: ``(c, fade)`` with ``gray ≈ c · prev`` (least
    squares; ``inf`` out of black) and whether that gain explains the change (a fade or flash step,
    not motion or a cut)."""
    if prev is None:
        return float("nan"), False
    pp = float((prev * prev).mean())
    if pp < 4.0:  # the previous frame is black
        return (float("inf"), True) if float((gray * gray).mean()) >= 4.0 else (1.0, False)
    c = float((gray * prev).mean()) / pp
    plain = float(np.abs(gray - prev).mean())
    scaled = float(np.abs(gray - c * prev).mean())
    fade = abs(c - 1) > settings.fade_step and plain > 0.4 and scaled < 0.5 * plain
    return c, fade


def fade_transitions(gains: np.ndarray, offset: int, out: list[Transition]) -> None:
    """Fades to and from black at the ends of a shot (``gains`` ``(n,)`` of its frames)."""
    n = len(gains)
    if n < 3:
        return
    dark = gains < 0.15
    if dark[-1] and not dark.all():  # fades out: the last frames go down to black
        t = n - 1
        while t > 0 and gains[t - 1] < 1.0 and gains[t - 1] >= gains[t]:
            t -= 1
        if n - t >= 3:
            out.append(Transition(kind="fade-out", start=offset + t, end=offset + n))
    if dark[0] and not dark.all():  # fades in from black
        t = 0
        while t < n - 1 and gains[t + 1] < 1.0 and gains[t + 1] >= gains[t]:
            t += 1
        if t >= 2:
            out.append(Transition(kind="fade-in", start=offset, end=offset + t + 1))
