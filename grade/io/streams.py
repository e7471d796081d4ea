"""Audio and subtitle streams of a render: copied packet for packet when the output container can hold
them, otherwise audio is re-encoded (AAC/Opus) and the report says so."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import av.error

from grade.io.codecs import container_family

# Audio codecs each output family can hold (others are re-encoded).
_AUDIO_OK = {
    "mp4": {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"},
    "webm": {"opus", "vorbis"},
}


_SUBTITLE_OK = {"mp4": {"mov_text"}, "webm": {"webvtt"}}


@dataclass
class RenderStats:
    frames: int = 0
    copied_streams: list[str] = field(default_factory=list)
    reencoded_streams: list[str] = field(default_factory=list)
    dropped_streams: list[str] = field(default_factory=list)
    encoder: str = ""
    pix_fmt: str = ""
    decode_error: str | None = None  # decoding stopped early on this error (a damaged file), after ``frames``


class _AudioTranscoder:
    """Re-encodes one audio stream for containers that cannot hold the source codec."""

    def __init__(self, src_stream, out_box, codec: str) -> None:
        ctx = src_stream.codec_context
        rate = ctx.sample_rate or 48000
        enc = av.Codec(codec, "w")
        rates = enc.audio_rates
        if rates and rate not in rates:
            rate = 48000
        self.stream = out_box.add_stream(codec, rate=rate)
        channels = ctx.layout.nb_channels if ctx.layout else 2
        # PCM in AVI/MKV often has an unnamed order ("2 channels"), which encoders refuse
        layout = {1: "mono", 6: "5.1"}.get(channels, "stereo")
        self.stream.layout = layout
        self.stream.time_base = Fraction(1, rate)
        fmt = enc.audio_formats[0].name if enc.audio_formats else "fltp"
        self.resampler = av.AudioResampler(format=fmt, layout=layout, rate=rate)

    def _emit(self, frames, out_box) -> None:
        for f in frames:
            for r in self.resampler.resample(f):
                for p in self.stream.encode(r):
                    out_box.mux(p)

    def feed(self, packet, out_box) -> None:
        try:
            self._emit(packet.decode(), out_box)
        except av.error.InvalidDataError:
            pass  # a damaged audio packet: skip it, as players do

    def flush(self, out_box) -> None:
        for r in self.resampler.resample(None):
            for p in self.stream.encode(r):
                out_box.mux(p)
        for p in self.stream.encode(None):
            out_box.mux(p)


def _muxer_takes(fmt: str, stream) -> bool:
    """Whether the output's muxer accepts a stream copied as is (FLAC or Opus in .mov: no), tried on an
    in-memory file: it writes the header there, not half a real file."""
    try:
        with av.open(io.BytesIO(), "w", format=fmt) as probe_box:
            probe_box.add_stream_from_template(stream)
            probe_box.start_encoding()
    except (av.error.FFmpegError, ValueError, OSError):
        return False
    return True


def map_other_streams(src_box, out_box, family: str, stats: RenderStats):
    copy_map, transcoders = {}, {}
    same_family = container_family(src_box.format.name, Path(src_box.name).suffix) == family
    for s in src_box.streams:
        if s.type == "video" and s.index == src_box.streams.video[0].index:
            continue
        name = s.codec_context.name if s.codec_context else "unknown"
        label = f"{s.type}#{s.index} ({name})"
        if s.type == "audio":
            ok = _AUDIO_OK.get(family)
            if (same_family or ok is None or name in ok) and _muxer_takes(out_box.format.name, s):
                try:
                    copy_map[s.index] = out_box.add_stream_from_template(s)
                    stats.copied_streams.append(label)
                    continue
                except (av.error.FFmpegError, ValueError):
                    pass
            codec = "libopus" if family == "webm" else "aac"
            try:
                transcoders[s.index] = _AudioTranscoder(s, out_box, codec)
                stats.reencoded_streams.append(f"{label} -> {codec}")
            except (av.error.FFmpegError, ValueError):
                stats.dropped_streams.append(label)
        elif s.type == "subtitle":
            ok = _SUBTITLE_OK.get(family)
            if (same_family or ok is None or name in ok) and _muxer_takes(out_box.format.name, s):
                try:
                    copy_map[s.index] = out_box.add_stream_from_template(s)
                    stats.copied_streams.append(label)
                    continue
                except (av.error.FFmpegError, ValueError):
                    pass
            stats.dropped_streams.append(label)
        else:
            # data (e.g. QuickTime timecode: recreated from the timecode tag), attachments, extra video
            if s.type == "data" and s.metadata.get("handler_name", "").lower().find("time") >= 0:
                continue
            stats.dropped_streams.append(label)
    return copy_map, transcoders


# The audio codec of a sound rendered for a container family (an assembled programme): PCM where the
# container holds it well (QuickTime and Matroska, as delivered in post), AAC / Opus where players expect them.
_NEW_AUDIO = {"mp4": "aac", "webm": "libopus", "mov": "pcm_s24le", "mkv": "pcm_s24le", "avi": "pcm_s16le"}


class AudioOut:
    """A stereo audio stream encoded from float32 sample blocks of shape (2, n), in order from sample 0."""

    def __init__(self, out_box, family: str, rate: int = 48000) -> None:
        self.box, self.rate, self.pts = out_box, rate, 0
        first = _NEW_AUDIO.get(family, "aac")
        for codec in dict.fromkeys((first, "aac", "pcm_s16le")):  # then what most containers take
            try:
                self.stream = out_box.add_stream(codec, rate=rate)
                break
            except (av.error.FFmpegError, ValueError):
                continue
        else:
            raise ValueError(f"no audio codec for a {family} container")
        self.codec = codec
        self.stream.layout = "stereo"
        self.stream.time_base = Fraction(1, rate)

    def write(self, samples) -> None:
        """Encode the next ``samples`` (float32 (2, n) in [-1, 1])."""
        import numpy as np

        if samples.shape[1] == 0:
            return
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, np.float32), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = self.rate, self.pts, Fraction(1, self.rate)
        self.pts += samples.shape[1]
        for p in self.stream.encode(frame):
            self.box.mux(p)

    def flush(self) -> None:
        for p in self.stream.encode(None):
            self.box.mux(p)
