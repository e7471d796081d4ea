"""Encoding graded frames: the one video encoder of ``grade`` (renders and the conform's assembly).

The output carries the source's colour tags (primaries, transfer, matrix, range), frame timestamps
(constant or variable frame rate), sample aspect ratio, rotation and timecode."""

from __future__ import annotations

import concurrent.futures
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np

from grade.errors import InputError, OutputError
from grade.io.codecs import choose_codec, container_family, muxer_of, native_yuv420
from grade.io.decode import (
    SWS_MATRIX,
    VideoInfo,
    decoder_limits,
    frame_step,
    open_input,
    range_of,
    reason,
    rgb_format,
    rgb_kwargs,
    yuv_matrix,
)
from grade.io.streams import RenderStats, map_other_streams
from grade.io.timecode import shift_timecode

_END = object()
_CICP_MATRIX = {1: 1, 4: 4, 5: 6, 7: 7, 9: 9}  # swscale's colourspace -> the stream's matrix tag (BT.601: 6)


class _Worker(threading.Thread):
    """A pipeline stage. If it fails it records the error and sets ``stop``, so that no other stage
    waits forever on a queue it will never serve. ``finished`` is set when it has returned: wait on it,
    not on ``join()``, which an interruption (SIGINT) can break (Python 3.11 then reports a thread that
    is still running as stopped)."""

    def __init__(self, target: Callable[[], None], stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self._target_fn, self._halt = target, stop
        self.error: BaseException | None = None
        self.finished = threading.Event()

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as e:  # handed to the main thread
            self.error = e
            self._halt.set()
        finally:
            self.finished.set()


def _settle(
    workers: list[_Worker], futures: list[concurrent.futures.Future], seconds: float = 10
) -> tuple[bool, BaseException | None]:
    """Wait (up to ``seconds`` each) for the pipeline's stages and the frames still being graded: whether
    the stages all finished, and the interruption that came while waiting (raise it then). An interruption
    does not cut the wait short: the containers are closed only once no stage can still be inside FFmpeg
    with them (closing them under a running stage crashed the process, SIGSEGV)."""
    interrupted: BaseException | None = None
    for f in futures:
        f.cancel()  # not started: never will be
    waits = [(w.finished.is_set, w.finished.wait) for w in workers]
    waits += [(f.done, lambda t, f=f: concurrent.futures.wait([f], timeout=t)) for f in futures]
    for done, wait in waits:
        deadline = time.monotonic() + seconds
        while not done() and time.monotonic() < deadline:
            try:
                wait(0.1)
            except KeyboardInterrupt as e:
                interrupted = e
    return all(w.finished.is_set() for w in workers), interrupted


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
    output_tags: dict | None = None,
    sink=None,
) -> RenderStats:
    """Decode ``source``, pass each frame's pixels through ``grade(index, pixels)``, encode to ``target``.

    ``grade`` returns the graded pixels, or a function that computes them: the per-frame work that
    does not depend on the frames before (the learned look's full-resolution apply, once its field is
    known). Those functions run on ``workers`` threads while ``grade`` goes on with the next frames;
    frames are still encoded in order.

    ``frames=(start, end)`` renders only that range of the source's frames (decode order, counted
    from 0; an edit's event with handles): the output starts at time 0, its timecode tag is the
    source's timecode at ``start``, ``index`` counts from 0, and other streams are left out.

    ``output_tags`` (``color_primaries``, ``color_trc``, ``colorspace``) replace the source's colour tags
    and YCbCr matrix in the output (a colour-managed grade writes another space than it read).

    ``pixel_format`` is what ``grade`` receives: :func:`rgb_format` by default, or ``"yuv420p"``
    (planes as PyAV lays them out, ``(H * 3 // 2, W)``) when :func:`native_yuv420` allows it.
    Decoding, grading and encoding run in three threads (plus the ``workers``) joined by small bounded
    queues, so memory stays flat and the stages overlap. ``target`` is written directly: callers wrap it in
    :func:`grade.io.atomic.atomic_output`.

    ``sink`` (an object with ``encode(pixels, pts, time_base, duration)`` and ``flush()``, as
    :class:`FrameEncoder` has; ``target`` is then not opened) takes the graded frames instead of an encoder:
    an image sequence's writer. It gets the picture only, and ``grade`` may give it float32 RGB (a
    colour-managed pull into scene-linear EXR frames) instead of the decoded layout.
    """
    fmt = pixel_format or rgb_format(info)
    if sink is None:
        encoder, opts, pix_fmt = choose_codec(target, codec, crf, info)
    else:
        encoder, opts, pix_fmt = "image sequence", {}, fmt
    stats = RenderStats(encoder=encoder, pix_fmt=pix_fmt)
    native = fmt == "yuv420p"
    if native and (sink is not None or not native_yuv420(info, target, codec, crf)):
        raise ValueError("yuv420p grading needs an 8-bit 4:2:0 source and output at even sizes")
    to_rgb = rgb_kwargs(info)
    first, last = frames if frames else (0, None)
    src_box = open_input(source)
    out_box = None
    try:
        if sink is None:
            out_box = av.open(str(target), "w", format=muxer_of(target))
    except (av.error.FFmpegError, OSError, ValueError) as e:
        src_box.close()
        raise OutputError(f"cannot create {target}: {reason(e)}") from None
    stop = threading.Event()
    completed = False
    settled = True  # no pipeline thread is still running: the containers may be closed
    decoded: queue.Queue = queue.Queue(maxsize=4)
    graded: queue.Queue = queue.Queue(maxsize=4)
    try:
        vin = src_box.streams.video[0]
        vin.thread_type = "AUTO"
        decoder_limits(vin)
        copy_map, transcoders = {}, {}  # an excerpt or a sink: picture only (the edit's audio stays with its media)
        if out_box is None:
            vout = sink
        else:
            vout = FrameEncoder(
                out_box,
                info.model_copy(update=output_tags) if output_tags else info,
                encoder,
                opts,
                pix_fmt,
                "yuv420p" if native else fmt,
                time_base=vin.time_base,
                metadata=dict(vin.metadata),
            )
            family = container_family(out_box.format.name, target.suffix)
            if frames is None:
                copy_map, transcoders = map_other_streams(src_box, out_box, family, stats)
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

        step = frame_step(info, vin)

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
                    raise InputError(f"cannot decode video in {source}: {reason(e)}") from None
                stats.decode_error = reason(e)  # a damaged tail: what decoded is graded, the caller says so
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
                vout.encode(pixels, pts, tb, dur)
                stats.frames += 1
            if stop.is_set():
                return
            vout.flush()
            for t in transcoders.values():
                t.flush(out_box)

        pool = concurrent.futures.ThreadPoolExecutor(max(1, workers), thread_name_prefix="grade-apply")
        reader, writer = _Worker(read, stop), _Worker(write, stop)
        futures: list[concurrent.futures.Future] = []  # frames submitted to the pool and not yet done
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
                        futures[:] = [f for f in futures if not f.done()]
                        futures.append(pool.submit(out))
                        out = (futures[-1], pixels.dtype, pixels.shape)
                    else:
                        _check_layout(out, pixels.dtype, pixels.shape)
                    item = ("v", index, pts, tb, dur, out)
                    if on_frame:
                        on_frame(index)
                put(graded, item)
                if writer.error or reader.error:
                    break
            put(graded, _END)
            while not writer.finished.wait(0.1):
                pass
        except BaseException:
            stop.set()
            raise
        finally:
            stop.set()
            settled, again = _settle([reader, writer], futures)
            pool.shutdown(wait=False)  # its threads are idle now: they exit
            if again is not None:
                raise again
        for w in (reader, writer):
            if w.error is not None:
                raise w.error
        if not settled:
            raise OutputError(f"encoding {target} did not finish")
        completed = True
    except av.error.FFmpegError as e:
        raise OutputError(f"encoding {target} failed: {reason(e)}") from None
    finally:
        if settled:  # else a stage is stuck inside FFmpeg: closing its containers under it would crash
            with contextlib.suppress(Exception):
                src_box.close()
            try:
                if out_box is not None:
                    out_box.close()  # writes the trailer: buffered write errors (disk full) surface here
            except (av.error.FFmpegError, OSError) as e:
                if completed:  # never let a file whose trailer failed be published
                    if isinstance(e, OSError):
                        raise  # atomic_output names it (disk full, file too large, ...)
                    raise OutputError(f"finishing {target} failed: {reason(e)}") from None
    if stats.frames == 0:
        raise InputError(f"no decodable video frame in {source}")
    return stats


def _check_layout(out: np.ndarray, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    if out.dtype == np.float32 and out.shape == (*shape[:2], 3):  # float RGB for a sink (a scene-linear pull)
        return
    if out.dtype != dtype or out.shape != shape:
        raise RuntimeError(f"grade changed the frame layout {shape}->{out.shape}")


class FrameEncoder:
    """The one video encoder of ``grade``: numpy frames in, packets muxed into ``out_box``, with the
    colour tags, matrix and range of ``info`` (the source's, or the graded clips' for an assembly),
    its sample aspect ratio, rotation and frame rate.

    ``fmt`` is the numpy layout of the frames given (``rgb24``, ``rgba``, ``rgb48le``, or ``yuv420p``
    planes already in the output's layout); ``time_base`` the frames' pts unit (default 1/rate).
    ``metadata`` is copied onto the stream (language, title, handler name, timecode).
    """

    def __init__(
        self,
        out_box,
        info: VideoInfo,
        encoder: str,
        opts: dict,
        pix_fmt: str,
        fmt: str,
        *,
        time_base: Fraction | None = None,
        metadata: dict | None = None,
    ) -> None:
        self.box, self.info, self.pix_fmt, self.fmt = out_box, info, pix_fmt, fmt
        self.matrix, self.range = yuv_matrix(info), range_of(info)
        # what FFmpeg's decoders read whatever the tags say (measured: each written the other way came back
        # off): DNxHR is BT.709 at any size (a 640x360 one written BT.601 was 7 10-bit codes redder), JPEG is
        # BT.601, ProRes is limited range (a full-range source's red 198 came back 208)
        if encoder == "dnxhd":
            self.matrix = 1
        elif encoder == "mjpeg":
            self.matrix = 5
        if encoder.startswith("prores"):
            self.range = 1
        rate = info.frame_rate
        try:
            vout = out_box.add_stream(encoder, rate=rate)
        except (av.error.FFmpegError, ValueError) as e:
            raise OutputError(f"cannot encode {encoder} into {out_box.format.name}: {reason(e)}") from None
        vout.width, vout.height, vout.pix_fmt = info.width, info.height, pix_fmt
        tb = time_base or Fraction(1, max(1, round(float(rate))))
        vout.time_base = tb
        vout.codec_context.time_base = tb
        self.time_base = tb  # the frames' pts unit: the stream's may change when the muxer writes its header
        vout.codec_context.framerate = rate
        vout.options = dict(opts)
        vout.thread_type = "AUTO"
        cc = vout.codec_context
        if info.sample_aspect_ratio:
            sar = Fraction(info.sample_aspect_ratio)
            cc.sample_aspect_ratio = sar
            with contextlib.suppress(AttributeError, ValueError):
                vout.sample_aspect_ratio = sar
        if not av.VideoFormat(pix_fmt).is_rgb:
            # the matrix the planes were written with, stated even where the source left it to a guess (an
            # untagged stream is read by its size: BT.709 from 720 lines, BT.601 below); BT.2020's constant
            # luminance (10) is written with the non-constant matrix, and says so
            tagged = info.colorspace in SWS_MATRIX and SWS_MATRIX[info.colorspace] == self.matrix
            cc.colorspace = info.colorspace if tagged and info.colorspace != 10 else _CICP_MATRIX[self.matrix]
            cc.color_range = self.range
        cc.color_primaries = info.color_primaries
        cc.color_trc = info.color_trc
        if info.rotation:
            vout.set_display_rotation(info.rotation)
        for k, v in (metadata or {}).items():
            if k.lower() in ("language", "title", "handler_name", "timecode"):
                with contextlib.suppress(Exception):
                    vout.metadata[k] = v
        self.stream = vout
        self.frames = 0

    def encode(
        self, pixels: np.ndarray, pts: int, time_base: Fraction | None = None, duration: int | None = None
    ) -> None:
        """Encode one frame (``pixels`` in ``fmt``) at ``pts`` and mux its packets."""
        if self.fmt == "yuv420p":
            frame = av.VideoFrame.from_ndarray(pixels, format="yuv420p")
        else:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format=self.fmt)
            frame = frame.reformat(format=self.pix_fmt, dst_colorspace=self.matrix, dst_color_range=self.range)
        frame.pts = pts
        frame.time_base = time_base or self.time_base
        if duration:
            with contextlib.suppress(AttributeError, TypeError):
                frame.duration = duration
        for attr in ("color_primaries", "color_trc"):
            val = getattr(self.info, attr)
            if val not in (0, 2):
                with contextlib.suppress(AttributeError, TypeError, ValueError):
                    setattr(frame, attr, val)
        for p in self.stream.encode(frame):
            self.box.mux(p)
        self.frames += 1

    def flush(self) -> None:
        """Drain the encoder (call once, after the last frame)."""
        for p in self.stream.encode(None):
            self.box.mux(p)
