"""The programme's sound for ``--assemble``: every audio event cut sample-accurately from its source media.

Which sound: the edit's own audio tracks where it has any (an EDL's ``A``, ``A2``, ``AA``, ``B``, ``AA/V``
events; an OTIO / XML timeline's audio tracks): exactly what the editor cut, audio-only events included,
each from its own source range. An edit with no audio event at all (a picture-only EDL, the usual list
for a picture conform) takes each video event's own sync sound, over the same source range as its
picture, so that a plain EDL assembles with sound, as an editor playing the list back would hear it.

How it is mixed: each event's source audio is resampled to 48 kHz stereo (mono is put on both channels,
more channels are downmixed) and placed at its record position (record timecode in frames at the edit's
rate, converted to samples); a dissolve on a track is an equal-power cross-fade over the dissolve's
frames; events on different tracks at the same time are summed, except that the copies of one event on
several tracks (``AA`` is on A1 and A2) are counted once; gaps, missing media and media without an audio
stream are silent. When none of the media has audio, the programme has no audio track (picture only).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import av
import av.error
import numpy as np

from grade.conform.edit import Edit, Event
from grade.conform.media import MediaIndex
from grade.conform.plan import Planned

RATE = 48_000  # the programme's sample rate (stereo)


@dataclass(frozen=True)
class Sound:
    """One event's sound on the record timeline (frames at the edit's rate)."""

    media: Path
    rec_in: int  # the event's cut, record frames
    rec_out: int
    source_at: float  # seconds into the media (from its first video frame) heard at ``rec_in``
    fade_in: tuple[int, int] = (0, 0)  # cross-fade from the previous sound: frames before / after rec_in
    fade_out: tuple[int, int] = (0, 0)  # into the next sound: frames before / after rec_out


def plan_sound(edit: Edit, plans: list[Planned], index: MediaIndex, match: list[str]) -> tuple[list[Sound], list[str]]:
    """The programme's sounds (see the module docstring) and one note per audio event without media."""
    notes: list[str] = []
    tracks: list[list[tuple[Event, Path, float, float]]] = []
    if edit.audio_tracks:
        for name, events in edit.audio_tracks.items():
            row = []
            for ev in events:
                path = index.find(ev, match)
                if path is None:
                    notes.append(f"audio event {ev.name} on {name}: no media found (silent in the programme)")
                    continue
                m = index.media(path, edit.rate)
                row.append((ev, path, m.start, m.fps))
            tracks.append(row)
    else:  # a picture-only edit: each video event's own sound
        tracks.append([(p.event, p.media.path, p.media.start, p.media.fps) for p in plans if p.media is not None])
    sounds: list[Sound] = []
    for row in tracks:
        track: list[Sound] = []
        for ev, path, start, fps in row:
            fade = ev.dissolve_in or (0, 0)
            if fade != (0, 0) and track and track[-1].rec_out == ev.rec_in:
                last = track[-1]
                track[-1] = Sound(last.media, last.rec_in, last.rec_out, last.source_at, last.fade_in, fade)
            source_at = (ev.trim_in - start) / (fps or edit.rate)
            track.append(Sound(path, ev.rec_in, ev.rec_out, source_at, fade))
        sounds += track
    return list(dict.fromkeys(sounds)), notes  # AA: the same sound on A1 and A2, heard once


class _SourceAudio:
    """One media file's audio as 48 kHz stereo float32, read forward from any sample (seeks once)."""

    def __init__(self, path: Path) -> None:
        try:
            self.box = av.open(str(path))
        except (av.error.FFmpegError, OSError):  # unreadable media: silent, as a gap
            self.box, self.stream = None, None
            return
        self.stream = self.box.streams.audio[0] if self.box.streams.audio else None
        v = self.box.streams.video[0] if self.box.streams.video else None
        self.origin = float(v.start_time * v.time_base) if v is not None and v.start_time is not None else 0.0
        self.buf, self.buf_at, self.frames = np.zeros((2, 0), np.float32), 0, None
        self.resampler = av.AudioResampler(format="fltp", layout="stereo", rate=RATE)

    def _decode(self):
        try:
            for packet in self.box.demux(self.stream):
                try:
                    yield from packet.decode()
                except av.error.InvalidDataError:
                    continue  # a damaged packet: skipped, as players do
        except av.error.FFmpegError:
            return  # the file breaks off: silent from there

    def read(self, at: int, n: int) -> np.ndarray:
        """Samples ``[at, at + n)`` of the media (sample 0: its first video frame), shape (2, n); zeros
        where it has none."""
        out = np.zeros((2, n), np.float32)
        if self.stream is None or n <= 0:
            return out
        if self.frames is None or at < self.buf_at:
            with contextlib.suppress(av.error.FFmpegError):  # no seek: decoded from the start
                self.box.seek(max(0, int((self.origin + at / RATE - 1.0) / self.stream.time_base)), stream=self.stream)
            self.frames, self.buf, self.buf_at = self._decode(), np.zeros((2, 0), np.float32), None
        while self.buf_at is None or self.buf_at + self.buf.shape[1] < at + n:
            frame = next(self.frames, None)
            if frame is None:
                break
            for r in self.resampler.resample(frame):
                if self.buf_at is None:  # the first sample after the seek: its own timestamp
                    t = float(frame.pts * frame.time_base) if frame.pts is not None else self.origin
                    self.buf_at = round((t - self.origin) * RATE)
                self.buf = np.concatenate([self.buf, r.to_ndarray().astype(np.float32)], axis=1)
        if self.buf_at is None:
            return out
        a, b = max(at, self.buf_at), min(at + n, self.buf_at + self.buf.shape[1])
        if b > a:
            out[:, a - at : b - at] = self.buf[:, a - self.buf_at : b - self.buf_at]
        keep = max(0, at + n - self.buf_at)  # nothing before the next read is needed again
        self.buf, self.buf_at = self.buf[:, keep:], self.buf_at + keep
        return out

    def close(self) -> None:
        if self.box is not None:
            self.box.close()


class SoundMix:
    """The programme's stereo sound, rendered block by block in record order (a bounded amount in memory).

    ``start`` is the programme's first record frame and ``rate`` its picture rate: record frame ``f`` is
    at sample ``round((f - start) * 48000 / rate)``.
    """

    def __init__(self, sounds: list[Sound], start: int, rate: float) -> None:
        self.start, self.rate = start, float(rate)
        self.sounds = sorted(sounds, key=lambda s: s.rec_in - s.fade_in[0])
        self.readers: dict[int, _SourceAudio] = {}

    def sample(self, frame: float) -> int:
        """The programme sample at record frame ``frame``."""
        return round((frame - self.start) * RATE / self.rate)

    @staticmethod
    def has_audio(sounds: list[Sound]) -> bool:
        """Whether any sound's media has an audio stream (else the programme is picture only)."""
        for path in {s.media for s in sounds}:
            try:
                with av.open(str(path)) as box:
                    if box.streams.audio:
                        return True
            except (av.error.FFmpegError, OSError):
                continue
        return False

    def block(self, a: int, b: int) -> np.ndarray:
        """Programme samples ``[a, b)``, float32 (2, b - a), clipped to [-1, 1]."""
        out = np.zeros((2, max(0, b - a)), np.float32)
        for i, s in enumerate(self.sounds):
            s0, s1 = self.sample(s.rec_in - s.fade_in[0]), self.sample(s.rec_out + s.fade_out[1])
            if s1 <= a:
                if i in self.readers:
                    self.readers.pop(i).close()
                continue
            if s0 >= b:
                break
            lo, hi = max(a, s0), min(b, s1)
            if i not in self.readers:
                self.readers[i] = _SourceAudio(s.media)
            offset = round(s.source_at * RATE) - self.sample(s.rec_in)  # programme sample -> media sample
            chunk = self.readers[i].read(lo + offset, hi - lo)
            pos = np.arange(lo, hi) + 0.5
            gain = np.ones(hi - lo, np.float32)
            if s.fade_in != (0, 0):
                f0, f1 = s0, self.sample(s.rec_in + s.fade_in[1])
                t = np.clip((pos - f0) / max(1, f1 - f0), 0, 1)
                gain *= np.sin(t * np.pi / 2).astype(np.float32)
            if s.fade_out != (0, 0):
                f0 = self.sample(s.rec_out - s.fade_out[0])
                t = np.clip((pos - f0) / max(1, s1 - f0), 0, 1)
                gain *= np.cos(t * np.pi / 2).astype(np.float32)
            out[:, lo - a : hi - a] += chunk * gain
        return np.clip(out, -1, 1)

    def close(self) -> None:
        for r in self.readers.values():
            r.close()
        self.readers.clear()
