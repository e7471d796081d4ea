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

import av
import cv2
import numpy as np
from pydantic import BaseModel

from grade.errors import InputError
from grade.io.video import VideoInfo, _open_input, _to_rgb_kwargs, _why, decoder_limits, probe


@dataclass(frozen=True)
class ShotSettings:
    analysis_width: int = 96  # width of the copy used to measure change
    threshold: float = 3.0  # change / neighbours' average change
    min_change: float = 15.0  # absolute change (0-255 HSV units)
    window: int = 2  # neighbours on each side
    min_shot: int = 10  # frames
    key_side: int = 512  # long side of the key frames kept for fitting
    candidates: int = 8  # key-frame candidates kept per shot


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


class _ShotBuilder:
    """Collects key-frame candidates of the running shot at an even, doubling stride."""

    def __init__(self, start: int, settings: ShotSettings, size: tuple[int, int], keep_next: bool = False) -> None:
        self.start, self.settings, self.size, self.keep_next = start, settings, size, keep_next
        self.stride = 1
        self.candidates: list[tuple[int, np.ndarray, np.ndarray, float, float]] = []
        self.next_frames: dict[int, np.ndarray] = {}  # candidate index -> the following frame
        self.hist_sum = np.zeros(64, np.float64)
        self.count = 0

    def add(self, index: int, frame: av.VideoFrame | None, hist: np.ndarray, kw: dict) -> None:
        self.hist_sum += hist
        self.count += 1
        k = index - self.start
        if self.keep_next and frame is not None and self.candidates and self.candidates[-1][0] == index - 1:
            # the frame after a candidate: the training's temporal term compares the two
            self.next_frames[index - 1] = self._small(frame, kw)
        if frame is None or k % self.stride:
            return
        rgb = self._small(frame, kw)
        luma = float(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).mean())
        self.candidates.append((index, rgb, hist, _sharpness(rgb), luma))
        if len(self.candidates) > 2 * self.settings.candidates:
            self.stride *= 2
            self.candidates = [c for c in self.candidates if (c[0] - self.start) % self.stride == 0]
            kept = {c[0] for c in self.candidates}
            self.next_frames = {i: f for i, f in self.next_frames.items() if i in kept}

    def _small(self, frame: av.VideoFrame, kw: dict) -> np.ndarray:
        return frame.to_ndarray(format="rgb24", width=self.size[0], height=self.size[1], interpolation="AREA", **kw)

    def best(self) -> tuple[int, np.ndarray, np.ndarray | None]:
        mean = self.hist_sum / max(1, self.count)
        cands = self.candidates
        sharp = np.array([c[3] for c in cands])
        dist = np.array([np.abs(c[2] - mean).sum() for c in cands])
        luma = np.array([c[4] for c in cands])
        score = sharp / max(sharp.max(), 1e-6) - dist / max(dist.max(), 1e-6) * 0.7
        score -= (luma < 20) * 1.0  # near-black frames (fades) are poor references for a look
        if len(cands) > 2:  # the very first/last frames of a shot are often mid-transition
            score[0] -= 0.1
        i = int(np.argmax(score))
        return cands[i][0], cands[i][1], self.next_frames.get(cands[i][0])


def detect_shots(
    path: str | Path,
    info: VideoInfo | None = None,
    settings: ShotSettings = ShotSettings(),
    on_frame: Callable[[int], None] | None = None,
    frames: tuple[int, int] | None = None,
    on_shot: Callable[[int, int, int, np.ndarray], None] | None = None,
    keep_next: bool = False,
) -> ShotList:
    """One decoding pass: cuts, shots and their key frames (memory bounded, not per-frame images).

    ``frames=(start, end)`` analyses only that range of the source's frames (an edit's event);
    the shots' frame numbers and times are then relative to ``start``. ``on_shot(start, end, key,
    key_image)`` is called as soon as each shot is complete (``window`` frames after its last one),
    so that a caller can start grading it while the rest is still being analysed; an exception
    raised by ``on_frame`` or ``on_shot`` stops the pass. ``keep_next`` also keeps the frame after
    each key frame (``ShotList.neighbours``, for the training's temporal term; None otherwise).

    Raises:
        InputError: unreadable media (see :func:`grade.io.video.probe`).
    """
    path = Path(path)
    info = info or probe(path)
    aw = settings.analysis_width
    ah = max(2, int(round(aw * info.height / max(1, info.width))))
    scale = min(1.0, settings.key_side / max(info.width, info.height))
    key_size = (max(1, round(info.width * scale)), max(1, round(info.height * scale)))
    kw = _to_rgb_kwargs(info)
    w = settings.window
    changes: list[float] = []
    times: list[float] = []
    cuts = [0]
    pending: deque = deque()  # frames whose cut decision waits for `window` frames of look-ahead
    builder = _ShotBuilder(0, settings, key_size, keep_next)
    finished: list[tuple[int, int, int, np.ndarray, np.ndarray | None]] = []  # start, end, key, image, next
    prev_hsv = None
    index = 0

    def decide(i: int) -> bool:
        c = changes[i]
        lo, hi = max(1, i - w), min(len(changes), i + w + 1)
        neigh = [changes[j] for j in range(lo, hi) if j != i]
        avg = sum(neigh) / len(neigh) if neigh else 0.0
        return (
            c >= settings.min_change and c / max(avg, 1e-3) >= settings.threshold and i - cuts[-1] >= settings.min_shot
        )

    def finish(end: int) -> None:
        finished.append((builder.start, end, *builder.best()))
        if on_shot:
            on_shot(*finished[-1][:4])

    def commit(item) -> None:
        nonlocal builder
        i, frame, hist = item
        if i > 0 and decide(i):
            finish(i)
            cuts.append(i)
            builder = _ShotBuilder(i, settings, key_size, keep_next)
        builder.add(i, frame, hist, kw)

    with _open_input(path) as box:
        vs = box.streams.video[0]
        vs.thread_type = "AUTO"
        # a ~96 px analysis copy does not need the deblocking filter (H.264/HEVC decode ~10% faster)
        vs.codec_context.options = {"skip_loop_filter": "all"}
        decoder_limits(vs)
        first, last = frames if frames else (0, None)
        src_index = -1
        try:
            for f in box.decode(vs):
                src_index += 1
                if src_index < first:
                    continue
                if last is not None and src_index >= last:
                    break
                small = f.to_ndarray(format="rgb24", width=aw, height=ah, interpolation="AREA", **kw)
                hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
                changes.append(0.0 if prev_hsv is None else _hsv_change(hsv, prev_hsv))
                prev_hsv = hsv
                t = float(f.pts * f.time_base) if f.pts is not None and f.time_base else index / info.fps
                times.append(t)
                pending.append((index, f, _hist(small)))
                # a frame's cut decision needs `w` later changes; keep only decoded frames we may sample
                while len(pending) > w:
                    commit(pending.popleft())
                index += 1
                if on_frame:
                    on_frame(index)
        except av.error.FFmpegError as e:
            if index == 0:
                raise InputError(f"cannot decode video in {path}: {_why(e)}") from None
    while pending:
        commit(pending.popleft())
    if builder.count:
        finish(index)
    t0 = times[0] if times else 0.0
    end_time = (times[-1] - t0 + 1.0 / info.fps) if times else 0.0
    shots, keys, neighbours = [], [], []
    for n, (start, end, key, img, nxt) in enumerate(finished):
        st = times[start] - t0
        et = times[end] - t0 if end < len(times) else end_time
        kt = times[key] - t0
        shots.append(
            Shot(
                index=n,
                start=start,
                end=end,
                start_time=round(st, 4),
                end_time=round(et, 4),
                key_frame=key,
                key_time=round(kt, 4),
                start_tc=timecode(st, info.fps),
                end_tc=timecode(et, info.fps),
                key_tc=timecode(kt, info.fps),
            )
        )
        keys.append(img)
        neighbours.append(nxt if nxt is not None and key + 1 < end else None)
    return ShotList(shots=shots, keys=keys, frames=index, neighbours=neighbours)
