"""Video in and out with PyAV, streamed frame by frame.

Frames travel as numpy arrays at source resolution:

* 8-bit sources: ``uint8`` RGBA, shape ``(H, W, 4)`` (alpha is padding: the four bytes of a
  pixel form one ``uint32``, which lets 3D LUTs be applied with a single table lookup);
* deeper sources (10/12/16-bit): ``uint16`` RGB, shape ``(H, W, 3)``, full 16-bit scale, so
  that 10 bits are never truncated to 8 on the way in.

The YUV<->RGB matrix and range used to decode a frame are used again to encode it, and the
output carries the source's colour tags (primaries, transfer, matrix, range), frame timestamps
(constant or variable frame rate), sample aspect ratio, rotation and timecode. Audio and
subtitle streams are copied packet for packet (no re-encoding) when the output container can
hold them; otherwise audio is re-encoded (AAC/Opus) and the report says so.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import queue
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np
from pydantic import BaseModel

from grade.errors import InputError, OutputError

# AVCOL_SPC_* (frame/stream tag) -> swscale colourspace for the YUV<->RGB matrix.
_SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}
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
    if info.colorspace in _SWS_MATRIX:
        return _SWS_MATRIX[info.colorspace]
    return 1 if info.height >= 720 or info.width >= 1280 else 5


def range_of(info: VideoInfo) -> int:
    if info.color_range in (_RANGE_MPEG, _RANGE_JPEG):
        return info.color_range
    return _RANGE_JPEG if info.pix_fmt.startswith("yuvj") else _RANGE_MPEG


# Frames larger than this are refused before they are decoded (a 12K frame is ~100 M pixels): a
# forged header must not make the decoder allocate gigabytes.
MAX_VIDEO_PIXELS = 12288 * 8192
_PROBE_OPTIONS = {"max_pixels": str(MAX_VIDEO_PIXELS)}


def _open_input(path: Path) -> av.container.InputContainer:
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
        raise InputError(f"cannot read media {path}: {_why(e)}") from None
    if box.format.name in _NOT_FOOTAGE:
        box.close()
        raise InputError(f"cannot read media {path}: it is text ({box.format.name}), not video")
    return box


# FFmpeg demuxers that turn arbitrary text into "video"; never footage.
_NOT_FOOTAGE = {"tty", "ansi", "srt", "ass", "webvtt", "subviewer", "subviewer1", "microdvd"}

# Containers a graded video can be written to (MXF is read, not written: its muxer takes only a few
# codec, rate and audio combinations, and fails late on the others).
OUTPUT_EXTENSIONS = {".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".nut"}
# Extensions FFmpeg does not map to their muxer by itself.
_MUXER = {".qt": "mov"}


def decoder_limits(stream) -> None:
    """Make a stream's decoder refuse frames larger than :data:`MAX_VIDEO_PIXELS` (set before decoding)."""
    with contextlib.suppress(AttributeError, TypeError, ValueError):
        stream.codec_context.options = {**dict(stream.codec_context.options or {}), "max_pixels": str(MAX_VIDEO_PIXELS)}


def _too_large(path: Path, width: int, height: int) -> InputError:
    return InputError(f"video frames are too large ({width}x{height} pixels, limit {MAX_VIDEO_PIXELS:,}): {path}")


def _why(e: BaseException) -> str:
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
    with _open_input(path) as box:
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
                    f"cannot decode video in {path}: {_why(e)} (frames may be larger than {MAX_VIDEO_PIXELS:,} pixels)"
                ) from None
            raise InputError(f"cannot decode video in {path}: {_why(e)}") from None
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


def iter_frames(
    path: str | Path, info: VideoInfo | None = None, *, size: tuple[int, int] | None = None, fmt: str | None = None
) -> Iterator[Frame]:
    """Decode frames one at a time (memory does not grow with clip length).

    Args:
        size: ``(width, height)`` to scale to while converting (fast analysis passes), or None.
        fmt: numpy pixel format (``rgb24``, ``rgba``, ``rgb48le``); default :func:`rgb_format`.
    """
    path = Path(path)
    info = info or probe(path)
    fmt = fmt or rgb_format(info)
    kw = _to_rgb_kwargs(info)
    if size is not None:
        kw.update(width=size[0], height=size[1], interpolation="AREA")
    with _open_input(path) as box:
        vs = box.streams.video[0]
        vs.thread_type = "AUTO"
        decoder_limits(vs)
        index = 0
        try:
            for f in box.decode(vs):
                yield Frame(index, f.pts, f.time_base, f.duration, f.to_ndarray(format=fmt, **kw))
                index += 1
        except av.error.FFmpegError as e:
            if index == 0:
                raise InputError(f"cannot decode video in {path}: {_why(e)}") from None
            # a damaged tail: keep what decoded (the report counts frames)


def _to_rgb_kwargs(info: VideoInfo) -> dict:
    if info.pix_fmt.startswith(("rgb", "bgr", "gbr", "argb", "abgr", "gray")):
        return {}
    return {"src_colorspace": yuv_matrix(info), "src_color_range": range_of(info)}


# ----------------------------------------------------------------------------------- encoding


_CODEC_ALIASES = {
    "h264": "libx264",
    "x264": "libx264",
    "avc": "libx264",
    "hevc": "libx265",
    "h265": "libx265",
    "x265": "libx265",
    "prores": "prores_ks",
    "prores_hq": "prores_ks",
    "vp9": "libvpx-vp9",
    "av1": "libsvtav1",
    "ffv1": "ffv1",
    "png": "png",
    "mjpeg": "mjpeg",
}

_CONTAINER_DEFAULT = {".mov": "prores_ks", ".qt": "prores_ks", ".webm": "libvpx-vp9"}


X264_LOOKAHEAD = 40  # preset medium's rc-lookahead (frames)
_LOOKAHEAD_BUDGET = X264_LOOKAHEAD * 2560 * 1440  # frames x pixels: 40 frames of 1440p


def x264_lookahead(width: int, height: int) -> int:
    """x264's ``rc-lookahead`` for a frame size: preset medium's 40 frames up to 1440p, then fewer, so that
    the lookahead's buffers hold no more than 40 frames of 1440p do (17 at 3840x2160, at least 10).
    At 4K, medium's 40 frames alone made a plain decode + re-encode peak at 1.7 GB (1.2 GB with 20, ~24 MB
    a frame), and a learned, stabilised 4K render over the 2 GB budget of the project."""
    return max(10, min(X264_LOOKAHEAD, _LOOKAHEAD_BUDGET // max(1, width * height)))


def choose_codec(output: Path, codec: str | None, crf: int | None, info: VideoInfo) -> tuple[str, dict, str]:
    """Pick ``(encoder, options, pix_fmt)`` for an output path.

    Default per container: ProRes 422 HQ for .mov, VP9 for .webm, H.264 (CRF 16, preset medium)
    otherwise. The source's bit depth and chroma subsampling are kept when the encoder can.

    Raises:
        InputError: unknown or unavailable codec.
    """
    name = codec.lower() if codec else _CONTAINER_DEFAULT.get(output.suffix.lower(), "libx264")
    name = _CODEC_ALIASES.get(name, name)
    try:
        enc = av.Codec(name, "w")
    except (av.error.FFmpegError, ValueError):
        raise InputError(f"unknown video codec: {codec or name}") from None
    if enc.type != "video":
        raise InputError(f"not a video codec: {codec}")
    opts: dict[str, str] = {}
    if name == "libx264":
        opts = {"crf": str(16 if crf is None else crf), "preset": "medium"}
        lookahead = x264_lookahead(info.width, info.height)
        if lookahead != X264_LOOKAHEAD:
            opts["rc-lookahead"] = str(lookahead)
    elif name == "libx265":
        opts = {"crf": str(18 if crf is None else crf), "preset": "medium", "x265-params": "log-level=error"}
    elif name == "libvpx-vp9":
        opts = {"crf": str(24 if crf is None else crf), "b": "0", "row-mt": "1"}
    elif name == "libsvtav1":
        opts = {"crf": str(28 if crf is None else crf), "preset": "8"}
    elif name == "prores_ks":
        opts = {"profile": "3", "vendor": "apl0"}
    elif crf is not None:
        opts = {"crf": str(crf)}
    supported = [f.name for f in (enc.video_formats or [])]
    src = info.pix_fmt.replace("yuvj", "yuv")
    odd = info.width % 2 == 1 or info.height % 2 == 1
    if odd and src.startswith("yuv") and ("420" in src or "422" in src or "411" in src):
        # chroma subsampling needs even sizes: keep the exact size with full-resolution chroma
        src = src.replace("420", "444").replace("422", "444").replace("411", "444")
    if not supported or src in supported:
        pix = src if supported else info.pix_fmt
    else:
        pix = _closest_format(src, info.bit_depth, supported, odd)
    _check_container(output, name)
    return name, opts, pix


_FAMILY = {
    "h264": "h264",
    "hevc": "hevc",
    "prores": "prores",
    "vp9": "vp9",
    "av1": "av1",
    "ffv1": "ffv1",
    "dnxhd": "dnxhd",
    "mpeg2video": "mpeg2video",
    "mjpeg": "mjpeg",
    "png": "png",
    "qtrle": "qtrle",
}


def same_family_codec(output: Path, info: VideoInfo) -> str | None:
    """The codec of the source's family for ``output`` when an encoder for it exists and the
    container takes it (conform hands back clips like the camera's), else ``None`` (the default)."""
    family = _FAMILY.get((info.codec or "").lower())
    if family is None:
        return None
    try:
        choose_codec(output, family, None, info)
    except InputError:
        return None
    return family


def _muxer_of(output: Path) -> str | None:
    return _MUXER.get(output.suffix.lower())


def _check_container(output: Path, encoder: str) -> None:
    """Refuse, before any work, an encoder the output's container cannot hold (H.264 in .webm...)."""
    fmt = _muxer_of(output) or _guess_format(output)
    if fmt is None:
        return
    try:
        with av.open(io.BytesIO(), "w", format=fmt) as box:
            box.add_stream(encoder, rate=24)
    except ValueError as e:
        raise InputError(f"cannot write {encoder} video into {output.suffix}: {_why(e)}") from None
    except av.error.FFmpegError:
        pass  # decided by the real encoder later (options, sizes)


_FORMATS = {".mkv": "matroska", ".webm": "webm", ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".avi": "avi"}
_FORMATS.update({".ts": "mpegts", ".mts": "mpegts", ".m2ts": "mpegts", ".nut": "nut"})


def _guess_format(output: Path) -> str | None:
    return _FORMATS.get(output.suffix.lower())


def _closest_format(src: str, depth: int, supported: list[str], odd: bool = False) -> str:
    sub = "444" if "444" in src or odd or src.startswith(("rgb", "bgr", "gbr")) else "422" if "422" in src else "420"
    if odd:
        supported = [f for f in supported if "420" not in f and "422" not in f and not f.startswith("nv")]
    prefs = [f"yuv{sub}p10le", "yuv422p10le", "yuv444p10le", "yuv420p10le"] if depth > 8 else []
    prefs += [f"yuv{sub}p", "yuv420p", "yuv422p", "yuv444p", "yuv422p10le", "yuv444p10le"]
    for p in prefs:
        if p in supported:
            return p
    plain = [f for f in supported if not f.startswith(("yuvj", "nv", "gray", "pal"))]
    return plain[0] if plain else supported[0]


# Audio codecs each output family can hold (others are re-encoded).
_AUDIO_OK = {
    "mp4": {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"},
    "webm": {"opus", "vorbis"},
}
_SUBTITLE_OK = {"mp4": {"mov_text"}, "webm": {"webvtt"}}


def _family(fmt_name: str, suffix: str) -> str:
    s = suffix.lower()
    if s in (".mp4", ".m4v"):
        return "mp4"
    if s == ".webm":
        return "webm"
    if s in (".mov", ".qt"):
        return "mov"
    if s in (".mkv", ".mka"):
        return "mkv"
    return fmt_name.split(",")[0]


@dataclass
class RenderStats:
    frames: int = 0
    copied_streams: list[str] = field(default_factory=list)
    reencoded_streams: list[str] = field(default_factory=list)
    dropped_streams: list[str] = field(default_factory=list)
    encoder: str = ""
    pix_fmt: str = ""
    decode_error: str | None = None  # decoding stopped early on this error (a damaged file), after ``frames``


_END = object()


class _Worker(threading.Thread):
    """A pipeline stage. If it fails it records the error and sets ``stop``, so that no other stage
    waits forever on a queue it will never serve."""

    def __init__(self, target: Callable[[], None], stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self._target_fn, self._halt = target, stop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as e:  # handed to the main thread
            self.error = e
            self._halt.set()


def native_yuv420(info: VideoInfo, target: Path, codec: str | None, crf: int | None) -> bool:
    """True when frames can be graded in their own 8-bit 4:2:0 YCbCr, with no RGB round trip:
    the source and the output are both 8-bit 4:2:0 at even sizes."""
    if info.pix_fmt not in ("yuv420p", "yuvj420p") or info.width % 2 or info.height % 2:
        return False
    return choose_codec(target, codec, crf, info)[2] == "yuv420p"


def render_video(
    source: Path,
    target: Path,
    info: VideoInfo,
    grade: Callable[[int, np.ndarray], np.ndarray | Callable[[], np.ndarray]],
    *,
    codec: str | None = None,
    crf: int | None = None,
    on_frame: Callable[[int], None] | None = None,
    pixel_format: str | None = None,
    frames: tuple[int, int] | None = None,
    workers: int = 1,
) -> RenderStats:
    """Decode ``source``, pass each frame's pixels through ``grade(index, pixels)``, encode to ``target``.

    ``grade`` returns the graded pixels, or a function that computes them: the per-frame work that
    does not depend on the frames before (the learned look's full-resolution apply, once its field is
    known). Those functions run on ``workers`` threads while ``grade`` goes on with the next frames;
    frames are still encoded in order.

    ``frames=(start, end)`` renders only that range of the source's frames (decode order, counted
    from 0; an edit's event with handles): the output starts at time 0, its timecode tag is the
    source's timecode at ``start``, ``index`` counts from 0, and other streams are left out.

    ``pixel_format`` is what ``grade`` receives: :func:`rgb_format` by default, or ``"yuv420p"``
    (planes as PyAV lays them out, ``(H * 3 // 2, W)``) when :func:`native_yuv420` allows it.
    Decoding, grading and encoding run in three threads (plus the ``workers``) joined by small bounded
    queues, so memory stays flat and the stages overlap. ``target`` is written directly: callers wrap it in
    :func:`grade.io.atomic.atomic_output`.
    """
    encoder, opts, pix_fmt = choose_codec(target, codec, crf, info)
    stats = RenderStats(encoder=encoder, pix_fmt=pix_fmt)
    fmt = pixel_format or rgb_format(info)
    native = fmt == "yuv420p"
    if native and not native_yuv420(info, target, codec, crf):
        raise ValueError("yuv420p grading needs an 8-bit 4:2:0 source and output at even sizes")
    to_rgb = _to_rgb_kwargs(info)
    matrix, rng = yuv_matrix(info), range_of(info)
    first, last = frames if frames else (0, None)
    src_box = _open_input(source)
    try:
        out_box = av.open(str(target), "w", format=_muxer_of(target))
    except (av.error.FFmpegError, OSError, ValueError) as e:
        src_box.close()
        raise OutputError(f"cannot create {target}: {_why(e)}") from None
    stop = threading.Event()
    completed = False
    decoded: queue.Queue = queue.Queue(maxsize=4)
    graded: queue.Queue = queue.Queue(maxsize=4)
    try:
        vin = src_box.streams.video[0]
        vin.thread_type = "AUTO"
        decoder_limits(vin)
        vout = _add_video_stream(out_box, vin, info, encoder, opts, pix_fmt)
        family = _family(out_box.format.name, target.suffix)
        if frames is None:
            copy_map, transcoders = _map_other_streams(src_box, out_box, family, stats)
        else:  # an excerpt: picture only (the edit's audio stays with the original media)
            copy_map, transcoders = {}, {}
        for k, v in dict(src_box.metadata).items():
            if k.lower() not in ("encoder", "major_brand", "minor_version", "compatible_brands"):
                with contextlib.suppress(Exception):
                    out_box.metadata[k] = v
        if info.timecode:
            out_box.metadata["timecode"] = shift_timecode(info.timecode, first, info.fps)

        def put(q: queue.Queue, item: object) -> None:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def get(q: queue.Queue) -> object:
            while True:
                try:
                    return q.get(timeout=0.1)
                except queue.Empty:
                    if stop.is_set():
                        return _END

        def to_pixels(f: av.VideoFrame) -> np.ndarray:
            same_size = f.width == info.width and f.height == info.height
            if native:
                if not same_size or f.format.name not in ("yuv420p", "yuvj420p"):
                    f = f.reformat(width=info.width, height=info.height, format="yuv420p")
                return f.to_ndarray()
            if same_size:
                return f.to_ndarray(format=fmt, **to_rgb)
            # the stream changed size mid-way: scale back to the size the output was opened with
            return f.to_ndarray(format=fmt, width=info.width, height=info.height, **to_rgb)

        step = _frame_step(info, vin)

        def read() -> None:
            index, src_index, base = 0, -1, None
            last_pts = next_pts = None  # a frame without a timestamp goes after the previous one
            streams = [vin, *[s for s in src_box.streams if s.index in copy_map or s.index in transcoders]]
            try:
                for packet in src_box.demux(streams):
                    if stop.is_set():
                        return
                    if packet.stream.index == vin.index:
                        for f in packet.decode():
                            src_index += 1
                            if src_index < first:
                                continue
                            if last is not None and src_index >= last:
                                put(decoded, _END)
                                return
                            pts, tb = f.pts, f.time_base or vin.time_base
                            if pts is None:  # raw .h264/.hevc: no timestamps; space frames by the rate
                                pts = 0 if next_pts is None else next_pts
                            elif frames is not None:  # an excerpt starts at 0
                                base = pts if base is None else base
                                pts -= base
                            if last_pts is not None and pts <= last_pts:
                                pts = next_pts  # a repeated or backward timestamp (damaged file): keep order
                            last_pts, next_pts = pts, pts + (f.duration or step)
                            put(decoded, ("v", index, pts, tb, f.duration, to_pixels(f)))
                            index += 1
                    elif packet.dts is not None or packet.stream.index in transcoders:
                        put(decoded, ("p", packet))
            except av.error.FFmpegError as e:
                if index == 0:
                    raise InputError(f"cannot decode video in {source}: {_why(e)}") from None
                stats.decode_error = _why(e)  # a damaged tail: what decoded is graded, the caller says so
            put(decoded, _END)

        def write() -> None:
            while True:
                item = get(graded)
                if item is _END:
                    break
                if item[0] == "p":
                    packet = item[1]
                    idx = packet.stream.index
                    if idx in copy_map:
                        packet.stream = copy_map[idx]
                        out_box.mux(packet)
                    else:
                        transcoders[idx].feed(packet, out_box)
                    continue
                _, index, pts, tb, dur, pixels = item
                if isinstance(pixels, tuple):  # (future of the graded pixels, the source's dtype and shape)
                    future, dtype, shape = pixels
                    pixels = future.result()
                    _check_layout(pixels, dtype, shape)
                if native:
                    frame = av.VideoFrame.from_ndarray(pixels, format="yuv420p")
                else:
                    frame = av.VideoFrame.from_ndarray(pixels, format=fmt)
                    frame = frame.reformat(format=pix_fmt, dst_colorspace=matrix, dst_color_range=rng)
                frame.pts, frame.time_base = pts, tb
                if dur:
                    with contextlib.suppress(AttributeError, TypeError):
                        frame.duration = dur
                _tag(frame, info)
                for p in vout.encode(frame):
                    out_box.mux(p)
                stats.frames += 1
            if stop.is_set():
                return
            for p in vout.encode(None):
                out_box.mux(p)
            for t in transcoders.values():
                t.flush(out_box)

        pool = concurrent.futures.ThreadPoolExecutor(max(1, workers), thread_name_prefix="grade-apply")
        reader, writer = _Worker(read, stop), _Worker(write, stop)
        reader.start()
        writer.start()
        try:
            while True:
                item = get(decoded)
                if item is _END:
                    break
                if item[0] == "v":
                    _, index, pts, tb, dur, pixels = item
                    out = grade(index, pixels)
                    if callable(out):  # finished on a worker; the writer waits for it, in order
                        out = (pool.submit(out), pixels.dtype, pixels.shape)
                    else:
                        _check_layout(out, pixels.dtype, pixels.shape)
                    item = ("v", index, pts, tb, dur, out)
                    if on_frame:
                        on_frame(index)
                put(graded, item)
                if writer.error or reader.error:
                    break
            put(graded, _END)
            writer.join()
        except BaseException:
            stop.set()
            raise
        finally:
            stop.set()
            reader.join(timeout=10)
            writer.join(timeout=10)
            pool.shutdown(wait=True, cancel_futures=True)
        for w in (reader, writer):
            if w.error is not None:
                raise w.error
        if reader.is_alive() or writer.is_alive():
            raise OutputError(f"encoding {target} did not finish")
        completed = True
    except av.error.FFmpegError as e:
        raise OutputError(f"encoding {target} failed: {_why(e)}") from None
    finally:
        with contextlib.suppress(Exception):
            src_box.close()
        try:
            out_box.close()  # writes the trailer: buffered write errors (disk full) surface here
        except (av.error.FFmpegError, OSError) as e:
            if completed:  # never let a file whose trailer failed be published
                if isinstance(e, OSError):
                    raise  # atomic_output names it (disk full, file too large, ...)
                raise OutputError(f"finishing {target} failed: {_why(e)}") from None
    if stats.frames == 0:
        raise InputError(f"no decodable video frame in {source}")
    return stats


def _check_layout(out: np.ndarray, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    if out.dtype != dtype or out.shape != shape:
        raise RuntimeError(f"grade changed the frame layout {shape}->{out.shape}")


def _frame_step(info: VideoInfo, vin) -> int:
    """One frame's duration in the source stream's time base (at least 1 tick)."""
    tb = vin.time_base or Fraction(1, max(1, round(info.fps)))
    return max(1, round(1 / (info.frame_rate * tb))) if info.frame_rate else 1


def timecode_frames(tc: str, fps: float) -> int:
    """Frame count of ``HH:MM:SS:FF``; a ``;`` or ``.`` before the frames means drop-frame (29.97/59.94
    timecode skips frame numbers 0-1 (0-3 at 59.94) each minute except every tenth).

    Raises:
        ValueError: not a timecode.
    """
    parts = re.split(r"[:;.,]", tc.strip())
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a timecode: {tc!r}")
    h, m, sec, ff = (int(p) for p in parts)
    base = round(fps)
    total = ((h * 60 + m) * 60 + sec) * base + ff
    if _is_drop(tc, fps):
        drop = 2 * round(fps / 29.97)
        minutes = h * 60 + m
        total -= drop * (minutes - minutes // 10)
    return total


def frames_timecode(frames: int, fps: float, drop: bool = False) -> str:
    """``HH:MM:SS:FF`` (``HH:MM:SS;FF`` drop-frame) of a frame count."""
    base = round(fps)
    if drop:
        d = 2 * round(fps / 29.97)
        per10 = base * 600 - d * 9  # frames in ten drop-frame minutes
        per1 = base * 60 - d
        tens, rem = divmod(frames, per10)
        frames += d * 9 * tens + (d * ((rem - d) // per1) if rem > d else 0)
    ff, sec = frames % base, frames // base
    sep = ";" if drop else ":"
    return f"{sec // 3600 % 24:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}{sep}{ff:02d}"


def _is_drop(tc: str, fps: float) -> bool:
    return any(c in tc for c in ";.,") and abs(fps * 1.001 - round(fps * 1.001)) < 0.01 and round(fps) % 30 == 0


def shift_timecode(tc: str, frames: int, fps: float) -> str:
    """``tc`` moved ``frames`` later (drop-frame timecode stays drop-frame)."""
    if not frames:
        return tc
    try:
        return frames_timecode(timecode_frames(tc, fps) + frames, fps, _is_drop(tc, fps))
    except ValueError:
        return tc


def _tag(frame: av.VideoFrame, info: VideoInfo) -> None:
    for attr in ("color_primaries", "color_trc"):
        val = getattr(info, attr)
        if val not in (0, 2):
            with contextlib.suppress(AttributeError, TypeError, ValueError):
                setattr(frame, attr, val)


def _add_video_stream(out_box, vin, info: VideoInfo, encoder: str, opts: dict, pix_fmt: str):
    rate = info.frame_rate
    try:
        vout = out_box.add_stream(encoder, rate=rate)
    except (av.error.FFmpegError, ValueError) as e:
        raise OutputError(f"cannot encode {encoder} into {out_box.format.name}: {_why(e)}") from None
    vout.width, vout.height, vout.pix_fmt = info.width, info.height, pix_fmt
    tb = vin.time_base or Fraction(1, max(1, round(float(rate))))
    vout.time_base = tb
    vout.codec_context.time_base = tb
    vout.codec_context.framerate = rate
    vout.options = dict(opts)
    vout.thread_type = "AUTO"
    cc = vout.codec_context
    if info.sample_aspect_ratio:
        sar = Fraction(info.sample_aspect_ratio)
        cc.sample_aspect_ratio = sar
        with contextlib.suppress(AttributeError, ValueError):
            vout.sample_aspect_ratio = sar
    if not pix_fmt.startswith(("rgb", "bgr", "gbr")):
        cc.colorspace = info.colorspace if info.colorspace in _SWS_MATRIX else 2
        cc.color_range = range_of(info)
    cc.color_primaries = info.color_primaries
    cc.color_trc = info.color_trc
    if info.rotation:
        vout.set_display_rotation(info.rotation)
    for k, v in dict(vin.metadata).items():
        if k.lower() in ("language", "title", "handler_name", "timecode"):
            with contextlib.suppress(Exception):
                vout.metadata[k] = v
    return vout


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


def _map_other_streams(src_box, out_box, family: str, stats: RenderStats):
    copy_map, transcoders = {}, {}
    same_family = _family(src_box.format.name, Path(src_box.name).suffix) == family
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
