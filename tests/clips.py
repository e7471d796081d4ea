"""Real media written with PyAV (no mocked codecs): tiny clips for the tests, and the copies of the shared
samples that the benchmarks measure on (``benchmarks/common.py`` imports this module)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


def scene_frame(w: int, h: int, t: int, scene: int = 0) -> np.ndarray:
    """A textured synthetic frame (uint8 RGB (h, w, 3)): sky-ish top, ground-ish bottom, a moving box."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    if scene == 0:
        img[..., 0] = 0.35 + 0.3 * yy / h
        img[..., 1] = 0.45 + 0.2 * xx / w
        img[..., 2] = 0.8 - 0.5 * yy / h
    else:
        img[..., 0] = 0.8 - 0.4 * xx / w
        img[..., 1] = 0.3 + 0.1 * yy / h
        img[..., 2] = 0.2 + 0.1 * xx / w
    img += 0.08 * np.sin(xx / 3.0 + yy / 5.0)[..., None]
    x0 = (4 + 2 * t) % max(1, w - 12)
    img[h // 3 : h // 3 + 10, x0 : x0 + 10] = (0.9, 0.2, 0.1) if scene == 0 else (0.1, 0.9, 0.3)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def make_clip(
    path: Path,
    *,
    frames: int = 8,
    size: tuple[int, int] = (64, 48),
    fps: int | Fraction = 24,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",  # odd sizes need yuv444p with libx264
    audio: bool = True,
    audio_codec: str = "aac",
    vfr: bool = False,
    rotation: int = 0,
    sar: Fraction | None = None,
    tags: dict | None = None,
    cut_at: int | None = None,
    timecode: str | None = None,
    sixteen_bit_content: bool = False,
) -> Path:
    """Write a small clip; returns ``path``. ``vfr`` spaces frame timestamps unevenly."""
    w, h = size
    with av.open(str(path), "w") as box:
        if timecode:
            box.metadata["timecode"] = timecode
        vs = box.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        tb = Fraction(1, 1000) if vfr else Fraction(1, int(fps) if isinstance(fps, int) else fps.numerator)
        vs.time_base = tb
        vs.codec_context.time_base = tb
        if codec == "libx264":
            vs.options = {"crf": "12", "preset": "ultrafast"}
        if sar:
            vs.codec_context.sample_aspect_ratio = sar
        for k, v in (tags or {}).items():
            setattr(vs.codec_context, k, v)
        if rotation:
            vs.set_display_rotation(rotation)
        a_s = None
        if audio:
            a_s = box.add_stream(audio_codec, rate=48000)
            a_s.layout = "stereo"
        t_ms = 0
        for i in range(frames):
            scene = 1 if cut_at is not None and i >= cut_at else 0
            rgb = scene_frame(w, h, i, scene)
            if sixteen_bit_content:
                arr = rgb.astype(np.uint16) * 257
                arr[..., 1] += np.uint16(i * 3)  # low bits that 8-bit would lose
                f = av.VideoFrame.from_ndarray(arr, format="rgb48le")
            else:
                f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            f = f.reformat(format=pix_fmt)
            if vfr:
                f.pts = t_ms
                t_ms += 30 if i % 2 == 0 else 55
            else:
                f.pts = i if isinstance(fps, int) else i * fps.denominator
            f.time_base = tb
            for p in vs.encode(f):
                box.mux(p)
        for p in vs.encode(None):
            box.mux(p)
        if a_s is not None:
            dur = frames / float(fps) if not vfr else t_ms / 1000
            n = int(48000 * dur)
            tt = np.arange(n) / 48000
            tone = (0.2 * np.sin(2 * np.pi * 440 * tt)).astype(np.float32)
            pcm = np.stack([tone, tone])
            fmt = a_s.codec_context.format.name if a_s.codec_context.format else "fltp"
            step = a_s.codec_context.frame_size or 1024
            pts = 0
            for s0 in range(0, n, step):
                chunk = pcm[:, s0 : s0 + step]
                if fmt == "s16":
                    af = av.AudioFrame.from_ndarray(
                        (chunk.T.reshape(1, -1) * 32767).astype(np.int16), format="s16", layout="stereo"
                    )
                elif fmt == "s16p":
                    af = av.AudioFrame.from_ndarray((chunk * 32767).astype(np.int16), format="s16p", layout="stereo")
                else:
                    af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="stereo")
                af.sample_rate = 48000
                af.pts = pts
                pts += chunk.shape[1]
                for p in a_s.encode(af):
                    box.mux(p)
            for p in a_s.encode(None):
                box.mux(p)
    return path


def make_still(path: Path, *, size: tuple[int, int] = (64, 48), scene: int = 1, sixteen_bit: bool = False) -> Path:
    rgb = scene_frame(size[0], size[1], 3, scene)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if sixteen_bit:
        bgr = bgr.astype(np.uint16) * 257 + 100
    if not cv2.imwrite(str(path), bgr):
        raise RuntimeError(f"could not write {path}")
    return path


def write_frames(
    path: Path,
    frames: list[np.ndarray],
    *,
    fps: int = 24,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict | None = None,
    timecode: str | None = None,
    tags: int | None = None,
) -> Path:
    """Encode RGB frames as they are (timestamps 0, 1, 2, ... at ``fps``), no audio: uint8, or uint16 for
    deep formats (``codec="ffv1", pix_fmt="gbrp16le"``: 16-bit lossless). ``tags`` (an ISO/IEC 23091
    code, 1: BT.709) tags the stream's matrix, primaries and transfer with it, limited range, and
    converts the frames to ``pix_fmt`` with that matrix."""
    with av.open(str(path), "w") as box:
        if timecode:
            box.metadata["timecode"] = timecode
        s = box.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
        s.options = options or {}
        s.time_base = Fraction(1, fps)
        if tags is not None:
            cc = s.codec_context
            cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = tags, tags, tags, 1
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb48le" if img.dtype == np.uint16 else "rgb24")
            if tags is not None:
                f = f.reformat(format=pix_fmt, dst_colorspace=tags, dst_color_range=1)
            f.pts = i
            for pkt in s.encode(f):
                box.mux(pkt)
        for pkt in s.encode():
            box.mux(pkt)
    return path


def copy_video(
    source: Path,
    target: Path,
    *,
    codec: str = "ffv1",
    options: dict | None = None,
    width: int | None = None,
    size: tuple[int, int] | None = None,
    frames: int | None = None,
    rate: Fraction | None = None,
    loop: bool = False,
) -> dict:
    """``source``'s picture re-encoded into ``target`` (yuv420p, frames numbered 0, 1, 2, ... at ``rate``,
    default the source's), scaled to ``size``, or down to ``width`` if smaller (aspect kept, even height).

    ``frames`` stops after that many; with ``loop`` the source is read again from its start until there
    are that many. Returns the frames written, width, height, fps and the source's native size.
    """
    written = 0
    with av.open(str(target), "w") as out:
        vout = None
        while vout is None or (loop and frames is not None and written < frames):
            with av.open(str(source)) as box:
                vin = box.streams.video[0]
                vin.thread_type = "AUTO"
                native = (vin.width, vin.height)
                if vout is None:
                    rate = rate or vin.average_rate or Fraction(30)
                    w, h = size or native
                    if size is None and width and width < w:
                        w, h = width - width % 2, max(2, round(h * width / w / 2) * 2)
                    vout = out.add_stream(codec, rate=rate)
                    vout.width, vout.height, vout.pix_fmt = w, h, "yuv420p"
                    vout.time_base = 1 / rate
                    vout.options = dict(options or {})
                    vout.thread_type = "AUTO"
                for frame in box.decode(vin):
                    small = frame.reformat(width=w, height=h, format="yuv420p")
                    small.pts, small.time_base = written, 1 / rate
                    out.mux(vout.encode(small))
                    written += 1
                    if frames is not None and written >= frames:
                        break
            if written == 0:
                break
        out.mux(vout.encode(None))
    return {"frames": written, "width": w, "height": h, "fps": float(rate), "native": native}


def read_all(path: Path, fmt: str = "rgb24") -> tuple[list[np.ndarray], list[float]]:
    """All frames and their times (seconds)."""
    frames, times = [], []
    with av.open(str(path)) as box:
        for f in box.decode(video=0):
            frames.append(f.to_ndarray(format=fmt))
            times.append(float(f.pts * f.time_base))
    return frames, times


def audio_duration(path: Path) -> float:
    with av.open(str(path)) as box:
        s = box.streams.audio[0]
        total = 0
        first = None
        for p in box.demux(s):
            if p.pts is None:
                continue
            if first is None:
                first = p.pts
            total = max(total, (p.pts + (p.duration or 0)))
        return float((total - (first or 0)) * s.time_base)


def cli_args(args) -> list[str]:
    """Command-line words as strings. A grade from a reference still that names no ``--mode`` gets
    ``--mode fast``: the learned default trains for seconds per shot, and the tests that use this
    are about everything around the look (the default itself has its own tests in test_learned)."""
    words = [str(a) for a in args]
    if "--look" in words and "--mode" not in words and "--preset" not in words:
        look = words[words.index("--look") + 1] if words.index("--look") + 1 < len(words) else ""
        if not look.lower().endswith(".cube"):
            words += ["--mode", "fast"]
    return words


def edit_frames(w: int = 96, h: int = 64, faded: bool = True) -> tuple[list[np.ndarray], dict[str, range]]:
    """Frames of a short edit as it comes out of an NLE (RGB uint8), and where each part lies:
    shot A, a fade to black over 12 frames, 12 black frames, a fade up into shot B, a 12-frame
    dissolve into shot C (other content), shot C, and a title card (white text on black).
    ``faded=False`` gives the same frames with fades left undarkened (the frames a fade darkens)."""

    def a(t: int) -> np.ndarray:
        return scene_frame(w, h, t, 0)

    def b(t: int) -> np.ndarray:
        return scene_frame(w, h, t, 1)

    def c(t: int) -> np.ndarray:
        f = scene_frame(w, h, t, 1)[::-1, ::-1, [2, 0, 1]]  # other content, other colours
        return np.ascontiguousarray(f)

    def dim(f: np.ndarray, k: float) -> np.ndarray:
        return (f.astype(np.float32) * k + 0.5).astype(np.uint8) if faded else f

    frames: list[np.ndarray] = []
    parts: dict[str, range] = {}

    def add(name: str, new: list[np.ndarray]) -> None:
        parts[name] = range(len(frames), len(frames) + len(new))
        frames.extend(new)

    add("a", [a(t) for t in range(24)])
    add("fade_out", [dim(a(24 + t), 1 - (t + 1) / 13) for t in range(12)])
    add("black", [np.zeros((h, w, 3), np.uint8)] * 12)
    add("fade_in", [dim(b(t), (t + 1) / 13) for t in range(12)])
    add("b", [b(12 + t) for t in range(24)])
    add("dissolve", [((1 - (t + 1) / 13) * b(36 + t) + (t + 1) / 13 * c(t) + 0.5).astype(np.uint8) for t in range(12)])
    add("c", [c(12 + t) for t in range(24)])
    title = np.zeros((h, w, 3), np.uint8)
    cv2.putText(title, "THE END", (w // 8, h // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    add("title", [title] * 20)
    return frames, parts
