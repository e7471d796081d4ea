"""Assembling the graded programme: every event's graded clip, cut on the record timeline, in one file."""

from __future__ import annotations

import contextlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from grade.conform.audio import SoundMix
from grade.conform.plan import Planned
from grade.errors import OutputError, setting
from grade.io.atomic import atomic_output
from grade.io.codecs import choose_codec, container_family
from grade.io.decode import decode_video, probe, rgb_kwargs
from grade.io.encode import FrameEncoder
from grade.io.streams import AudioOut


class _ClipReader:
    """Frames of one graded clip, read forward on demand (a dissolve needs two at once)."""

    def __init__(self, path: Path, size: tuple[int, int]) -> None:
        info = probe(path)
        self.kw = {**rgb_kwargs(info), "width": size[0], "height": size[1]}
        self.frames = decode_video(path)
        self.index, self.last = -1, None

    def get(self, k: int) -> np.ndarray | None:
        while self.index < k:
            item = next(self.frames, None)
            if item is None:
                return self.last
            self.index += 1
            self.last = item[1].to_ndarray(format="rgb24", **self.kw)
        return self.last

    def close(self) -> None:
        self.frames.close()


def assemble(plans: list[Planned], target: Path, options, on_frame=None, sounds: list | None = None) -> int:
    """Render the programme: each record frame from its graded clip, dissolves as real cross-fades,
    gaps and unresolved events black; written atomically. Returns the frame count.

    ``sounds`` (:func:`grade.conform.audio.plan_sound`) are mixed into a 48 kHz stereo track as long
    as the picture (AAC in .mp4, PCM in .mov / .mkv); none, or none whose media has audio: picture only.
    """
    placed = [p for p in plans if p.output is not None and p.output.exists()]
    if not placed:
        raise OutputError(f"{setting('assemble', 'FILE')}: no graded event to assemble")
    info = probe(placed[0].output)  # the graded clips' size, rate, colour tags, matrix and range
    size = (info.width, info.height)
    rate = info.frame_rate.limit_denominator(1001) if info.frame_rate else Fraction(24)
    start, end = plans[0].event.rec_in, max(p.event.rec_out for p in plans)
    readers: dict[int, _ClipReader] = {}

    def frame_of(p: Planned, r: int) -> np.ndarray | None:
        if p.output is None or not p.output.exists():
            return None
        if p.event.number not in readers:
            readers[p.event.number] = _ClipReader(p.output, size)
        k = p.event.trim_in + (r - p.event.rec_in) - p.media.start - p.first
        return readers[p.event.number].get(k) if k >= 0 else None

    info = info.model_copy(update={"rate": str(rate)})
    mix = SoundMix(sounds, start, rate) if sounds and SoundMix.has_audio(sounds) else None
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: [rd.close() for rd in readers.values()])
        if mix is not None:
            stack.callback(mix.close)
        count = _render(plans, target, options, on_frame, info, start, end, frame_of, mix)
    return count


def _render(plans, target: Path, options, on_frame, info, start: int, end: int, frame_of, mix) -> int:
    """The programme's frames (and sound) encoded into ``target``, atomically; returns the frame count."""
    size = (info.width, info.height)
    black = np.zeros((size[1], size[0], 3), np.uint8)
    even = (size[0] + size[0] % 2, size[1] + size[1] % 2)
    rate = info.frame_rate
    info = info.model_copy(update={"width": even[0], "height": even[1], "rotation": 0})
    encoder, opts, pix_fmt = choose_codec(target, options.codec, options.crf, info)
    count = 0
    with atomic_output(target, force=True) as tmp, av.open(str(tmp), "w") as out:
        tb = 1 / Fraction(rate)
        enc = FrameEncoder(out, info, encoder, opts, pix_fmt, "rgb24", time_base=tb)
        try:
            sound = AudioOut(out, container_family(out.format.name, target.suffix)) if mix is not None else None
        except ValueError as e:
            raise OutputError(f"{setting('assemble', target)}: {e}") from None
        for r in range(start, end):
            img = None
            for i, p in enumerate(plans):  # inside a dissolve: a real cross-fade of both events
                d = p.event.dissolve_in
                if d and i > 0 and p.event.rec_in - d[0] <= r < p.event.rec_in + d[1]:
                    alpha = (r - (p.event.rec_in - d[0]) + 0.5) / max(1, d[0] + d[1])
                    x, y = frame_of(plans[i - 1], r), frame_of(p, r)
                    x = (x if x is not None else black).astype(np.float32)
                    y = (y if y is not None else black).astype(np.float32)
                    img = np.clip(x * (1 - alpha) + y * alpha + 0.5, 0, 255).astype(np.uint8)
                    break
            else:
                cur = next((p for p in plans if p.event.rec_in <= r < p.event.rec_out), None)
                img = frame_of(cur, r) if cur is not None else None
            img = img if img is not None else black
            if img.shape[:2] != (even[1], even[0]):
                img = np.pad(img, ((0, even[1] - img.shape[0]), (0, even[0] - img.shape[1]), (0, 0)), mode="edge")
            enc.encode(img, count, time_base=tb)  # not the stream's: the muxer may change that at its header
            count += 1
            if sound is not None:  # the sound up to the end of this frame
                sound.write(mix.block(sound.pts, mix.sample(start + count)))
            if on_frame:
                on_frame()
        enc.flush()
        if sound is not None:
            sound.flush()
    return count
