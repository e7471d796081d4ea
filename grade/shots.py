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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
from pydantic import BaseModel

from grade.io.decode import VideoInfo, decode_video, probe, rgb_kwargs
from grade.io.timecode import frames_timecode
from grade.transitions import Transition, exposure_gains, fade_transitions, find_dissolves, gain_step, is_blank


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
    # an image sequence's file numbers of the shot's first and last frames and of its key frame
    # (``start`` and ``end`` count frames from the sequence's first file; a gap makes them differ)
    start_number: int | None = None
    end_number: int | None = None
    key_number: int | None = None

    @property
    def frames(self) -> int:
        return self.end - self.start


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
    """``HH:MM:SS:FF`` (non-drop) for a time in seconds at a frame rate.

    >>> timecode(61.5, 24)
    '00:01:01:12'
    """
    return frames_timecode(int(round(seconds * fps)), fps)


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
        blank = is_blank(gray, self.settings)
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


class _Picture:
    """A decoded picture of an image sequence (RGB uint8), kept at the key frames' size, that answers
    the analysis as a PyAV frame does (``to_ndarray`` at a size; no timestamp)."""

    pts = None
    time_base = None

    def __init__(self, rgb: np.ndarray, size: tuple[int, int]) -> None:
        h, w = rgb.shape[:2]
        rgb = np.ascontiguousarray(rgb[..., :3])
        self.rgb = rgb if (w, h) == size else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)

    def to_ndarray(self, format: str = "rgb24", width: int = 0, height: int = 0, **_: object) -> np.ndarray:
        h, w = self.rgb.shape[:2]
        if (width, height) in ((0, 0), (w, h)):
            return self.rgb
        return cv2.resize(self.rgb, (width, height), interpolation=cv2.INTER_AREA)


def detect_picture_shots(
    pictures: Iterable[np.ndarray],
    width: int,
    height: int,
    fps: float,
    settings: ShotSettings = ShotSettings(),
    on_frame: Callable[[int], None] | None = None,
    keep_next: bool = False,
) -> ShotList:
    """:func:`detect_shots` over pictures in order (an image sequence's frames, RGB uint8 ``(H, W, 3)`` of
    ``width`` x ``height``), not a video file: the same cuts, black and title shots (``flat``), fades
    (``gains``), dissolves and key frames. Each picture is kept only at the key frames' size.

    >>> black = np.zeros((36, 64, 3), np.uint8)
    >>> picture = np.random.default_rng(0).integers(40, 220, (36, 64, 3), dtype=np.uint8)
    >>> shots = detect_picture_shots([black] * 12 + [picture] * 24, 64, 36, 24.0)
    >>> [(s.start, s.end, s.flat) for s in shots.shots]
    [(0, 12, True), (12, 36, False)]
    """
    scale = min(1.0, settings.key_side / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    source = ((i, _Picture(p, size)) for i, p in enumerate(pictures))
    return _detect(source, width, height, fps, {}, settings, on_frame, None, keep_next, None)


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
    # a ~96 px analysis copy does not need the deblocking filter (H.264/HEVC decode ~10% faster)
    source = decode_video(path, frames=frames, options={"skip_loop_filter": "all"})
    return _detect(
        source, info.width, info.height, info.fps, rgb_kwargs(info), settings, on_frame, on_shot, keep_next,
        on_transition,
    )  # fmt: skip


def _detect(
    source: Iterable[tuple[int, av.VideoFrame | _Picture]],
    width: int,
    height: int,
    fps: float,
    kw: dict,
    settings: ShotSettings,
    on_frame: Callable[[int], None] | None,
    on_shot: Callable[[int, int, int, np.ndarray, bool, np.ndarray], None] | None,
    keep_next: bool,
    on_transition: Callable[[Transition], None] | None,
) -> ShotList:
    """The pass of :func:`detect_shots` over decoded frames (PyAV's, or :class:`_Picture`), in order."""
    aw = settings.analysis_width
    ah = max(2, int(round(aw * height / max(1, width))))
    scale = min(1.0, settings.key_side / max(width, height))
    key_size = (max(1, round(width * scale)), max(1, round(height * scale)))
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
            fade_transitions(g, a, transitions)
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

    for _, f in source:
        small = f.to_ndarray(format="rgb24", width=aw, height=ah, interpolation="AREA", **kw)
        hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
        changes.append(0.0 if prev_hsv is None else _hsv_change(hsv, prev_hsv))
        prev_hsv = hsv
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
        step, fade = gain_step(gray, prev_gray, settings)
        prev_gray = gray
        steps.append(step)
        fades.append(fade)
        darks.append(is_blank(gray, settings))
        t = float(f.pts * f.time_base) if f.pts is not None and f.time_base else index / fps
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
    end_time = (times[-1] - t0 + 1.0 / fps) if times else 0.0

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
                start_tc=timecode(st, fps),
                end_tc=timecode(et, fps),
                key_tc=timecode(kt, fps),
                flat=f["flat"],
            )
        )
        keys.append(f["img"])
        neighbours.append(f["next"] if f["next"] is not None and f["key"] + 1 < f["end"] else None)
    for t in transitions:
        t.start_time, t.end_time = round(at(t.start), 4), round(at(t.end), 4)
        t.start_tc, t.end_tc = timecode(t.start_time, fps), timecode(t.end_time, fps)
    transitions.sort(key=lambda t: t.start)
    all_gains = np.concatenate(gains) if gains else np.ones(0, np.float32)
    return ShotList(
        shots=shots, keys=keys, frames=index, neighbours=neighbours, transitions=transitions, gains=all_gains
    )
