"""Probing and decoding video with PyAV, streamed frame by frame.

Frames travel as numpy arrays at source resolution:

* 8-bit sources: ``uint8`` RGBA, shape ``(H, W, 4)`` (alpha is padding: the four bytes of a
  pixel form one ``uint32``, which lets 3D LUTs be applied with a single table lookup);
* deeper sources (10/12/16-bit): ``uint16`` RGB, shape ``(H, W, 3)``, full 16-bit scale, so
  that 10 bits are never truncated to 8 on the way in.

The YUV->RGB matrix and range used to decode a frame are used again to encode it (:mod:`grade.io.encode`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np
from pydantic import BaseModel

from grade.errors import InputError

# AVCOL_SPC_* (frame/stream tag) -> swscale colourspace for the YUV<->RGB matrix.
SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}


_RANGE_MPEG, _RANGE_JPEG = 1, 2


class VideoInfo(BaseModel):
    """What a video file holds, as far as grading is concerned."""

    path: str
    container: str
    codec: str
    width: int
    height: int
    pix_fmt: str
    bit_depth: int
    fps: float
    rate: str  # exact average frame rate, e.g. "30000/1001"
    time_base: str
    frames: int  # from the container; an estimate when the container does not say
    duration: float  # seconds
    variable_frame_rate: bool = False
    rotation: int = 0
    sample_aspect_ratio: str | None = None
    color_primaries: int = 2
    color_trc: int = 2
    colorspace: int = 2
    color_range: int = 0
    timecode: str | None = None
    audio_streams: int = 0
    other_streams: int = 0

    @property
    def frame_rate(self) -> Fraction:
        return Fraction(self.rate)

    @property
    def is_high_bit_depth(self) -> bool:
        return self.bit_depth > 8


def rgb_format(info: VideoInfo) -> str:
    """The numpy pixel format frames of this video are decoded to (see module docstring)."""
    return "rgb48le" if info.is_high_bit_depth else "rgba"


def yuv_matrix(info: VideoInfo) -> int:
    """swscale colourspace used for YUV<->RGB: the tagged matrix, else BT.709 for HD, BT.601 for SD."""
    if info.colorspace in SWS_MATRIX:
        return SWS_MATRIX[info.colorspace]
    return 1 if info.height >= 720 or info.width >= 1280 else 5


def range_of(info: VideoInfo) -> int:
    if info.color_range in (_RANGE_MPEG, _RANGE_JPEG):
        return info.color_range
    return _RANGE_JPEG if info.pix_fmt.startswith("yuvj") else _RANGE_MPEG


# Frames larger than this are refused before they are decoded (a 12K frame is ~100 M pixels): a
# forged header must not make the decoder allocate gigabytes.
MAX_VIDEO_PIXELS = 12288 * 8192


_PROBE_OPTIONS = {"max_pixels": str(MAX_VIDEO_PIXELS)}


def open_input(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise InputError(f"no such file: {path}")
    if path.is_dir():
        raise InputError(f"is a directory, not a media file: {path}")
    if not path.is_file():
        raise InputError(f"not a regular file (a pipe or device?): {path}")
    if path.stat().st_size == 0:
        raise InputError(f"empty file: {path}")
    try:
        # max_pixels: stream probing decodes a frame; it must not decode a huge one
        box = av.open(str(path), metadata_errors="ignore", options=_PROBE_OPTIONS)
    except (av.error.FFmpegError, UnicodeDecodeError, OSError) as e:
        raise InputError(f"cannot read media {path}: {reason(e)}") from None
    if box.format.name in _NOT_FOOTAGE:
        box.close()
        raise InputError(f"cannot read media {path}: it is text ({box.format.name}), not video")
    return box


# FFmpeg demuxers that turn arbitrary text into "video"; never footage.
_NOT_FOOTAGE = {"tty", "ansi", "srt", "ass", "webvtt", "subviewer", "subviewer1", "microdvd"}


def decoder_limits(stream) -> None:
    """Make a stream's decoder refuse frames larger than :data:`MAX_VIDEO_PIXELS` (set before decoding)."""
    with contextlib.suppress(AttributeError, TypeError, ValueError):
        stream.codec_context.options = {**dict(stream.codec_context.options or {}), "max_pixels": str(MAX_VIDEO_PIXELS)}


def _too_large(path: Path, width: int, height: int) -> InputError:
    return InputError(f"video frames are too large ({width}x{height} pixels, limit {MAX_VIDEO_PIXELS:,}): {path}")


def reason(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(msg).split())


def _depth(fmt: av.VideoFormat) -> int:
    try:
        return max(c.bits for c in fmt.components)
    except (AttributeError, ValueError):
        return 8


def probe(path: str | Path) -> VideoInfo:
    """Read a video's properties (decodes its first frame for the colour tags and rotation).

    Raises:
        InputError: missing, empty, unreadable, no video stream, or no decodable frame.
    """
    path = Path(path)
    with open_input(path) as box:
        if not box.streams.video:
            kinds = sorted({s.type for s in box.streams}) or ["nothing"]
            raise InputError(f"no video stream in {path} (it holds {', '.join(kinds)})")
        vs = box.streams.video[0]
        cc = vs.codec_context
        if cc is not None and cc.width * cc.height > MAX_VIDEO_PIXELS:
            raise _too_large(path, cc.width, cc.height)
        decoder_limits(vs)
        first = None
        try:
            first = next(iter(box.decode(vs)), None)
        except (av.error.FFmpegError, ValueError) as e:
            if cc is not None and cc.width * cc.height == 0:  # the header's size was refused unread
                raise InputError(
                    f"cannot decode video in {path}: {reason(e)}"
                    f" (frames may be larger than {MAX_VIDEO_PIXELS:,} pixels)"
                ) from None
            raise InputError(f"cannot decode video in {path}: {reason(e)}") from None
        if first is None:
            raise InputError(f"no decodable video frame in {path}")
        if first.width * first.height > MAX_VIDEO_PIXELS:
            raise _too_large(path, first.width, first.height)
        stamped = first.pts is not None
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate or Fraction(25)
        if not stamped:  # a raw elementary stream (.h264, .hevc): the bitstream's own rate, if it says
            rate = vs.guessed_rate or rate
        tb = vs.time_base or Fraction(1, int(round(rate)))
        if vs.duration:
            duration = float(vs.duration * tb)
        elif box.duration:
            duration = box.duration / av.time_base
        else:
            duration = 0.0
        frames = vs.frames or max(1, int(round(duration * rate)))
        if not stamped and not vs.frames and not duration:
            frames = _count_packets(path)
            duration = frames / float(rate)
        sar = vs.sample_aspect_ratio
        tc = _tag_value(vs.metadata, "timecode") or _tag_value(box.metadata, "timecode")
        vfr = stamped and bool(
            vs.base_rate and vs.average_rate and abs(float(vs.base_rate) - float(vs.average_rate)) > 0.01
        )
        return VideoInfo(
            path=str(path),
            container=box.format.name,
            codec=vs.codec_context.name,
            width=first.width,
            height=first.height,
            pix_fmt=first.format.name,
            bit_depth=_depth(first.format),
            fps=float(rate),
            rate=str(Fraction(rate)),
            time_base=str(Fraction(tb)),
            frames=int(frames),
            duration=duration,
            variable_frame_rate=vfr,
            rotation=int(round(first.rotation or 0)),
            sample_aspect_ratio=str(sar) if sar and sar != 0 and sar != 1 else None,
            color_primaries=int(first.color_primaries),
            color_trc=int(first.color_trc),
            colorspace=int(first.colorspace),
            color_range=int(first.color_range),
            timecode=tc,
            audio_streams=len(box.streams.audio),
            other_streams=len(box.streams) - len(box.streams.audio) - len(box.streams.video),
        )


def _tag_value(tags, key: str) -> str | None:
    """A metadata tag by name, whatever its case (Matroska writes ``TIMECODE``, MP4/MOV ``timecode``)."""
    return next((v for k, v in dict(tags).items() if k.lower() == key), None)


def _count_packets(path: Path) -> int:
    """Frames of a stream without timestamps or duration (a raw .h264), counted from its packets in a
    second pass (raw streams cannot seek; nothing is decoded)."""
    n = 0
    with contextlib.suppress(av.error.FFmpegError, OSError), av.open(str(path), options=_PROBE_OPTIONS) as box:
        for packet in box.demux(box.streams.video[0]):
            n += packet.size > 0
    return max(1, n)


@dataclass
class Frame:
    """One decoded frame: its index in decode order, timing, and pixels (see module docstring)."""

    index: int
    pts: int | None
    time_base: Fraction | None
    duration: int | None
    pixels: np.ndarray

    @property
    def time(self) -> float | None:
        if self.pts is None or self.time_base is None:
            return None
        return float(self.pts * self.time_base)


def decode_video(
    path: str | Path,
    *,
    frames: tuple[int, int | None] | None = None,
    options: dict[str, str] | None = None,
) -> Iterator[tuple[int, av.VideoFrame]]:
    """The one decode loop of ``grade``: ``(index, frame)`` of the first video stream, in decode order.

    ``frames=(start, end)`` yields only that range (``end`` None: to the end; ``index`` still counts from
    the file's first frame). ``options`` are decoder options (``{"skip_loop_filter": "all"}`` for a
    small analysis copy). A damaged tail ends the stream after the last good frame (callers count the
    frames and say so).

    Raises:
        InputError: the file cannot be opened, or no frame of the range decodes.
    """
    path = Path(path)
    first, last = frames if frames else (0, None)
    with open_input(path) as box:
        vs = box.streams.video[0]
        vs.thread_type = "AUTO"
        if options:
            vs.codec_context.options = dict(options)
        decoder_limits(vs)
        index, given = -1, 0
        try:
            for f in box.decode(vs):
                index += 1
                if index < first:
                    continue
                if last is not None and index >= last:
                    return
                given += 1
                yield index, f
        except av.error.FFmpegError as e:
            if not given:
                raise InputError(f"cannot decode video in {path}: {reason(e)}") from None
            # a damaged tail: keep what decoded (the report counts frames)


def iter_frames(
    path: str | Path, info: VideoInfo | None = None, *, size: tuple[int, int] | None = None, fmt: str | None = None
) -> Iterator[Frame]:
    """Decode frames one at a time as numpy arrays (memory does not grow with clip length).

    Args:
        size: ``(width, height)`` to scale to while converting (fast analysis passes), or None.
        fmt: numpy pixel format (``rgb24``, ``rgba``, ``rgb48le``); default :func:`rgb_format`.
    """
    path = Path(path)
    info = info or probe(path)
    fmt = fmt or rgb_format(info)
    kw = rgb_kwargs(info)
    if size is not None:
        kw.update(width=size[0], height=size[1], interpolation="AREA")
    for index, f in decode_video(path):
        yield Frame(index, f.pts, f.time_base, f.duration, f.to_ndarray(format=fmt, **kw))


def rgb_kwargs(info: VideoInfo) -> dict:
    if info.pix_fmt.startswith(("rgb", "bgr", "gbr", "argb", "abgr", "gray")):
        return {}
    return {"src_colorspace": yuv_matrix(info), "src_color_range": range_of(info)}


def frame_step(info: VideoInfo, vin) -> int:
    """One frame's duration in the source stream's time base (at least 1 tick)."""
    tb = vin.time_base or Fraction(1, max(1, round(info.fps)))
    return max(1, round(1 / (info.frame_rate * tb))) if info.frame_rate else 1
