"""Cut detection and key frames, in one fast pass over downscaled frames.

Cuts: an adaptive content detector in the manner of PySceneDetect's ``AdaptiveDetector``: each
frame's content change (mean absolute difference of HSV, frame to frame, on a ~96 px wide copy)
is compared with the average change of its neighbours; a cut is a change that stands out from
its surroundings by a ratio *and* by an absolute amount, at least ``min_shot`` frames after the
previous cut. (PySceneDetect itself is not a dependency: version 0.7 requires the GUI build of
OpenCV; ``benchmarks/shots.py`` compares this detector with its published outputs.)

Key frames: candidates are spread evenly over each shot (bounded memory, whatever its length);
each is scored for sharpness (variance of the Laplacian of its luma, at working resolution) and
for how representative its colours are of the whole shot (distance of its colour histogram to
the shot's mean histogram); dark, blurred, flash and fade frames lose.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np
from pydantic import BaseModel

from grade.io.decode import VideoInfo, decode_video, probe, rgb_kwargs


@dataclass(frozen=True)
class ShotSettings:
    analysis_width: int = 96  # width of the copy used to measure change
    threshold: float = 3.0  # change / neighbours' average change
    min_change: float = 15.0  # absolute change (0-255 HSV units)
    window: int = 2  # neighbours on each side
    min_shot: int = 10  # frames
    key_side: int = 512  # long side of the key frames kept for fitting
    candidates: int = 8  # key-frame candidates kept per shot
    dark_level: int = 24  # luma (0-255) under which a pixel counts as dark
    dark_share: float = 0.85  # a frame this dark is blank (black, a title card on black): never a key frame
    fade_step: float = 0.02  # a frame that is its neighbour × (1 ± this or more), explained by the gain: a fade
    dissolve_min: int = 6  # frames of a dissolve, at least
    dissolve_max: int = 60  # ... and at most
    dissolve_fit: float = 0.10  # what the mix may leave unexplained, × the change across the dissolve


class Shot(BaseModel):
    """A run of frames ``[start, end)`` between cuts, with its key frame."""

    index: int
    start: int
    end: int
    start_time: float
    end_time: float
    key_frame: int
    key_time: float
    start_tc: str = ""
    end_tc: str = ""
    key_tc: str = ""
    # black, flat or a title card throughout: graded with the global tone mapping only, and never
    # part of a scene look or a preset
    flat: bool = False

    @property
    def frames(self) -> int:
        return self.end - self.start


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


@dataclass
class ShotList:
    shots: list[Shot]
    keys: list[np.ndarray] = field(repr=False)  # per shot: RGB uint8 (h, w, 3), long side <= key_side
    frames: int = 0
    # per shot: the frame after the key frame (same size), or None (the key frame ends the shot)
    neighbours: list[np.ndarray | None] = field(default_factory=list, repr=False)
    transitions: list[Transition] = field(default_factory=list)
    # per frame: its exposure relative to its shot's key frame (1: as the key frame; 0.5: a fade half
    # way to black); a fade is graded as the shot's look of the undarkened frame, darkened
    gains: np.ndarray = field(default_factory=lambda: np.ones(0, np.float32), repr=False)

    def shot_of(self, frame: int) -> int:
        for s in self.shots:
            if s.start <= frame < s.end:
                return s.index
        return self.shots[-1].index


def timecode(seconds: float, fps: float) -> str:
    """``HH:MM:SS:FF`` (non-drop) for a time in seconds at a frame rate."""
    nominal = max(1, int(round(fps)))
    total = int(round(seconds * fps))
    ff = total % nominal
    s = total // nominal
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}:{ff:02d}"


def _hsv_change(a: np.ndarray, b: np.ndarray) -> float:
    d = cv2.absdiff(a, b).reshape(-1, 3).astype(np.float32).mean(0)
    return float(d.mean())


def _hist(small_rgb: np.ndarray) -> np.ndarray:
    q = (small_rgb >> 6).reshape(-1, 3).astype(np.int32)  # 4 levels per channel
    h = np.bincount(q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2], minlength=64).astype(np.float32)
    return h / max(1.0, h.sum())


def _sharpness(rgb: np.ndarray) -> float:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_32F).var())


def _is_blank(gray: np.ndarray, settings: ShotSettings) -> bool:
    """Black, a flat colour, or a title card (mostly black): no look can be learned from it."""
    return bool((gray < settings.dark_level).mean() >= settings.dark_share or gray.std() < 2.0)


class _ShotBuilder:
    """Collects key-frame candidates of the running shot at an even, doubling stride, and the small
    per-frame copies that the shot's dissolves are found on."""

    def __init__(self, start: int, settings: ShotSettings, size: tuple[int, int], keep_next: bool = False) -> None:
        self.start, self.settings, self.size, self.keep_next = start, settings, size, keep_next
        self.stride = 1
        # (index, rgb, hist, sharpness, luma, blank, fading)
        self.candidates: list[tuple[int, np.ndarray, np.ndarray, float, float, bool, bool]] = []
        self.next_frames: dict[int, np.ndarray] = {}  # candidate index -> the following frame
        self.hists: list[np.ndarray] = []
        self.thumbs: list[np.ndarray] = []  # 16x9 RGB float32, linear in the frame: a dissolve mixes them
        self.count = 0

    def add(
        self, index: int, frame: av.VideoFrame | None, hist: np.ndarray, thumb: np.ndarray, kw: dict, fading: bool
    ) -> None:
        self.hists.append(hist)
        self.thumbs.append(thumb)
        self.count += 1
        k = index - self.start
        if self.keep_next and frame is not None and self.candidates and self.candidates[-1][0] == index - 1:
            # the frame after a candidate: the training's temporal term compares the two
            self.next_frames[index - 1] = self._small(frame, kw)
        if frame is None or k % self.stride:
            return
        rgb = self._small(frame, kw)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        blank = _is_blank(gray, self.settings)
        self.candidates.append((index, rgb, hist, _sharpness(rgb), float(gray.mean()), blank, fading))
        if len(self.candidates) > 2 * self.settings.candidates:
            self.stride *= 2
            self.candidates = [c for c in self.candidates if (c[0] - self.start) % self.stride == 0]
            kept = {c[0] for c in self.candidates}
            self.next_frames = {i: f for i, f in self.next_frames.items() if i in kept}

    def _small(self, frame: av.VideoFrame, kw: dict) -> np.ndarray:
        return frame.to_ndarray(format="rgb24", width=self.size[0], height=self.size[1], interpolation="AREA", **kw)

    def best(self, lo: int, hi: int) -> tuple[int, np.ndarray, np.ndarray | None, bool] | None:
        """The key frame of frames ``[lo, hi)`` of this shot: ``(index, image, next image, flat)``, or None
        when no candidate lies there. Blank candidates (black, flat, title cards) are never chosen while
        another exists; a range of blank candidates only is ``flat``."""
        cands = [c for c in self.candidates if lo <= c[0] < hi]
        if not cands:
            return None
        usable = [c for c in cands if not c[5]]
        steady = [c for c in usable if not c[6]]  # a frame mid-fade is a darkened copy: a poor key
        pool = steady or usable or cands
        hists = self.hists[lo - self.start : hi - self.start]
        mean = np.mean(hists, axis=0) if hists else pool[0][2]
        sharp = np.array([c[3] for c in pool])
        dist = np.array([np.abs(c[2] - mean).sum() for c in pool])
        luma = np.array([c[4] for c in pool])
        score = sharp / max(sharp.max(), 1e-6) - dist / max(dist.max(), 1e-6) * 0.7
        score -= (luma < 20) * 1.0  # near-black frames (fades) are poor references for a look
        if len(pool) > 2 and pool[0][0] == self.start:  # the very first frame of a shot is often mid-transition
            score[0] -= 0.1
        i = int(np.argmax(score))
        return pool[i][0], pool[i][1], self.next_frames.get(pool[i][0]), not usable


def find_dissolves(thumbs: np.ndarray, fades: np.ndarray, settings: ShotSettings) -> list[tuple[int, int, list[float]]]:
    """Dissolves ``[(start, end, weights)]`` in a run of frames, from their small copies ``thumbs``
    ``(n, D)``: a stretch whose frames are, one by one, a mix ``(1 - w) · A + w · B`` of the frame before
    it and the frame after it (a dissolve mixes two shots pixel by pixel, so their small copies mix
    too), with ``w`` rising from 0 to 1 (linearly or eased: ``weights`` are the fitted ones), between two
    frames of different content, gradual (no step a cut) and not a fade (``fades`` ``(n,)``).

    >>> a, b = np.zeros((1, 12)), np.full((1, 12), 90.0)
    >>> w = np.linspace(0, 1, 12)[:, None]
    >>> run = np.concatenate([np.repeat(a, 10, 0), (1 - w) * a + w * b, np.repeat(b, 10, 0)])
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


def detect_shots(
    path: str | Path,
    info: VideoInfo | None = None,
    settings: ShotSettings = ShotSettings(),
    on_frame: Callable[[int], None] | None = None,
    frames: tuple[int, int] | None = None,
    on_shot: Callable[[int, int, int, np.ndarray, bool, np.ndarray], None] | None = None,
    keep_next: bool = False,
    on_transition: Callable[[Transition], None] | None = None,
) -> ShotList:
    """One decoding pass: cuts, transitions, shots and their key frames (memory bounded, not per-frame
    images).

    Beside cuts, the pass finds what an editor puts between shots: black and title cards (blank
    frames: their own shots, ``flat``), fades (frames that are a darkened or brightened copy of their
    neighbour: their ``gains``), and dissolves (a shot split in two at the dissolve's middle, each side
    with its own key frame). Blank frames are never key frames.

    ``frames=(start, end)`` analyses only that range of the source's frames (an edit's event);
    the shots' frame numbers and times are then relative to ``start``. ``on_shot(start, end, key,
    key_image, flat, gains)`` is called as soon as each shot is complete (a few frames after its last
    one; ``gains`` ``(end - start,)``), so that a caller can start grading it while the rest is still
    being analysed; ``on_transition(dissolve)`` before the shots it joins. An exception raised by
    ``on_frame`` or ``on_shot`` stops the pass. ``keep_next`` also keeps the frame after each key frame
    (``ShotList.neighbours``, for the training's temporal term; None otherwise).

    Raises:
        InputError: unreadable media (see :func:`grade.io.video.probe`).
    """
    path = Path(path)
    info = info or probe(path)
    aw = settings.analysis_width
    ah = max(2, int(round(aw * info.height / max(1, info.width))))
    scale = min(1.0, settings.key_side / max(info.width, info.height))
    key_size = (max(1, round(info.width * scale)), max(1, round(info.height * scale)))
    kw = rgb_kwargs(info)
    w = settings.window
    changes: list[float] = []
    times: list[float] = []
    steps: list[float] = []  # per frame: its gain over the previous frame (nan: none)
    fades: list[bool] = []  # ... explained by that gain (a fade or flash step)
    darks: list[bool] = []  # black / flat / title card (or a dark frame of a fade)
    cuts = [0]
    pending: deque = deque()  # frames whose cut decision waits for `w` frames of look-ahead
    builder = _ShotBuilder(0, settings, key_size, keep_next)
    finished: list[dict] = []
    transitions: list[Transition] = []
    gains: list[np.ndarray] = []
    prev_hsv = prev_gray = None
    index = 0

    def decide(i: int) -> bool:
        c = changes[i]
        lo, hi = max(1, i - w), min(len(changes), i + w + 1)
        neigh = [changes[j] for j in range(lo, hi) if j != i]
        avg = sum(neigh) / len(neigh) if neigh else 0.0
        return (
            c >= settings.min_change and c / max(avg, 1e-3) >= settings.threshold and i - cuts[-1] >= settings.min_shot
        )

    def fading(i: int) -> bool:
        """Frame ``i`` is a step of a fade (or the first frame up from black of one that goes on)."""

        def step(j: int) -> bool:
            return 0 <= j < len(steps) and fades[j] and 0.4 <= steps[j] <= 2.5

        return step(i) or (fades[i] and not np.isfinite(steps[i]) and step(i + 1))

    def blank(i: int) -> bool:
        """Black, flat or a title card, and not a fade's frame (a fade belongs to its shot)."""
        return darks[i] and not fading(i)

    def blank_edge(i: int) -> bool:
        """Frames start or stop being blank at ``i``, for at least 3 frames (a title card, black leader)."""
        if i < 1 or blank(i) == blank(i - 1):
            return False
        return all(blank(j) == blank(i) for j in range(i, min(i + 3, len(darks))))

    def finish(end: int) -> None:
        """The running shot ends: split it at its dissolves, choose key frames, compute gains."""
        start = builder.start
        thumbs = np.stack(builder.thumbs) if builder.thumbs else np.zeros((0, 1))
        parts, mixes = [], []
        lo = start
        for a, b, weights in find_dissolves(thumbs, np.array(fades[start:end]), settings):
            mid = start + (a + b) // 2
            # each side must keep a key frame of its own (a shot's candidates are spread over it)
            left, right = builder.best(lo, start + a), builder.best(start + b, end)
            if left is None or right is None or left[3] or right[3]:
                continue
            parts.append((lo, mid, left))
            mixes.append((start + a, start + b, weights))
            lo = mid
        last = builder.best(lo, end) or builder.best(start, end)
        parts.append((lo, end, last))
        for (a, b, best), mix in zip(parts, [*mixes, None]):
            key, img, nxt, flat = best
            if not a <= key < b:  # the chosen side's key lies before the split point
                key = min(max(key, a), b - 1)
            g = exposure_gains(np.array(steps[a:b]), np.array(fades[a:b]), key - a)
            gains.append(g)
            finished.append({"start": a, "end": b, "key": key, "img": img, "next": nxt, "flat": flat})
            _fade_transitions(g, a, transitions)
            if mix is not None:
                transitions.append(Transition(kind="dissolve", start=mix[0], end=mix[1], weights=mix[2]))
                if on_transition:  # before the shots it joins are handed out
                    on_transition(transitions[-1])
            if on_shot:
                on_shot(a, b, key, img, flat, g)

    def commit(item) -> None:
        nonlocal builder
        i, frame, hist, thumb = item
        if i > 0 and (decide(i) or blank_edge(i)):
            finish(i)
            cuts.append(i)
            builder = _ShotBuilder(i, settings, key_size, keep_next)
        builder.add(i, frame, hist, thumb, kw, fading(i))

    # a ~96 px analysis copy does not need the deblocking filter (H.264/HEVC decode ~10% faster)
    for _, f in decode_video(path, frames=frames, options={"skip_loop_filter": "all"}):
        small = f.to_ndarray(format="rgb24", width=aw, height=ah, interpolation="AREA", **kw)
        hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
        changes.append(0.0 if prev_hsv is None else _hsv_change(hsv, prev_hsv))
        prev_hsv = hsv
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
        step, fade = _gain_step(gray, prev_gray, settings)
        prev_gray = gray
        steps.append(step)
        fades.append(fade)
        darks.append(_is_blank(gray, settings))
        t = float(f.pts * f.time_base) if f.pts is not None and f.time_base else index / info.fps
        times.append(t)
        thumb = cv2.resize(small, (16, 9), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
        pending.append((index, f, _hist(small), thumb))
        # a frame's cut decision needs `w` later changes (and 3 for blank runs); keep only decoded
        # frames we may sample
        while len(pending) > max(w, 3):
            commit(pending.popleft())
        index += 1
        if on_frame:
            on_frame(index)
    while pending:
        commit(pending.popleft())
    if builder.count:
        finish(index)
    t0 = times[0] if times else 0.0
    end_time = (times[-1] - t0 + 1.0 / info.fps) if times else 0.0

    def at(frame: int) -> float:
        return times[frame] - t0 if frame < len(times) else end_time

    shots, keys, neighbours = [], [], []
    for n, f in enumerate(finished):
        st, et, kt = at(f["start"]), at(f["end"]), at(f["key"])
        shots.append(
            Shot(
                index=n,
                start=f["start"],
                end=f["end"],
                start_time=round(st, 4),
                end_time=round(et, 4),
                key_frame=f["key"],
                key_time=round(kt, 4),
                start_tc=timecode(st, info.fps),
                end_tc=timecode(et, info.fps),
                key_tc=timecode(kt, info.fps),
                flat=f["flat"],
            )
        )
        keys.append(f["img"])
        neighbours.append(f["next"] if f["next"] is not None and f["key"] + 1 < f["end"] else None)
    for t in transitions:
        t.start_time, t.end_time = round(at(t.start), 4), round(at(t.end), 4)
        t.start_tc, t.end_tc = timecode(t.start_time, info.fps), timecode(t.end_time, info.fps)
    transitions.sort(key=lambda t: t.start)
    all_gains = np.concatenate(gains) if gains else np.ones(0, np.float32)
    return ShotList(
        shots=shots, keys=keys, frames=index, neighbours=neighbours, transitions=transitions, gains=all_gains
    )


def _gain_step(gray: np.ndarray, prev: np.ndarray | None, settings: ShotSettings) -> tuple[float, bool]:
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


def _fade_transitions(gains: np.ndarray, offset: int, out: list[Transition]) -> None:
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
