"""Hostile files for the corpus, made on the spot and small: broken, odd and forged media, stills,
presets, LUTs and edits. Every builder writes under a folder it is given and returns the path."""

from __future__ import annotations

import base64
import io
import json
import pickle
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from clips import make_clip, scene_frame

# A 16x12 CMYK JPEG (Adobe, inverted CMYK), as Photoshop's print workflows write them; made with
# Pillow once (Image.convert("CMYK").save(..., quality=85)) so that the tests need no Pillow.
CMYK_JPEG = base64.b64decode(
    "/9j/7gAOQWRvYmUAZAAAAAAA/9sAQwAFAwQEBAMFBAQEBQUFBgcMCAcHBwcPCwsJDBEPEhIRDxERExYcFxMUGhURERghGBodHR8fHxMXIiQiHiQ"
    "cHh8e/8AAFAgADAAQBEMRAE0RAFkRAEsRAP/EAB8AAAEFAQEBAQEBAAAAAAAAAAABAgMEBQYHCAkKC//EALUQAAIBAwMCBAMFBQQEAAABfQECAw"
    "AEEQUSITFBBhNRYQcicRQygZGhCCNCscEVUtHwJDNicoIJChYXGBkaJSYnKCkqNDU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3e"
    "Hl6g4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TFxsfIycrS09TV1tfY2drh4uPk5ebn6Onq8fLz9PX29/j5+v/aAA4EQwBN"
    "AFkASwAAPwDwz4Pf8sfwryL/AIVJ/wBOv/jtfSfj3/lpX2XX2b8Hv+WP4Uf8Kk/6df8Ax2vn/wAe/wDLSivjL4Pf8sfwr7Y/4RrSf+fevoDx7/y"
    "0or7N+D3/ACx/Cj/hGtJ/596+f/Hv/LSiv//Z"
)


def _encode(path: Path, frames, *, fmt: str | None = None, codec: str = "libx264", options=None, rate=24) -> Path:
    """Encode RGB frames (each (h, w, 3) uint8) with one stream; returns ``path``."""
    first = frames[0]
    with av.open(str(path), "w", format=fmt, options=options or {}) as box:
        s = box.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = first.shape[1], first.shape[0], "yuv420p"
        if codec == "libx264":
            s.options = {"crf": "12", "preset": "ultrafast"}
        for i, rgb in enumerate(frames):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            f.pts = i
            for p in s.encode(f):
                box.mux(p)
        for p in s.encode(None):
            box.mux(p)
    return path


def textured(n: int, size=(64, 48)) -> list[np.ndarray]:
    return [scene_frame(size[0], size[1], i) for i in range(n)]


def flat_clip(path: Path, value: int, frames: int = 6) -> Path:
    """A shot of one flat grey level (0: all black, 255: all white)."""
    return _encode(path, [np.full((48, 64, 3), value, np.uint8)] * frames)


def faststart_cut(path: Path, frames: int = 48, keep: float = 2 / 3) -> Path:
    """An MP4 with its index first (faststart) cut off in the middle of the picture data."""
    whole = path.with_name("whole-" + path.name)
    _encode(whole, textured(frames), options={"movflags": "faststart"})
    data = whole.read_bytes()
    whole.unlink()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def first_frame_cut(path: Path) -> Path:
    """A faststart MP4 cut in the middle of its first frame: the index promises frames, none decodes."""
    whole = _encode(path.with_name("whole-" + path.name), textured(6), options={"movflags": "faststart"})
    with av.open(str(whole)) as box:
        first = next(box.demux(video=0))
        cut = first.pos + first.size // 2
    data = whole.read_bytes()
    whole.unlink()
    path.write_bytes(data[:cut])
    return path


def moov_missing(path: Path) -> Path:
    """An MP4 cut in half with its index at the end: the index is gone."""
    whole = make_clip(path.with_name("whole-" + path.name), frames=12)
    data = whole.read_bytes()
    whole.unlink()
    path.write_bytes(data[: len(data) // 2])
    return path


def raw_h264(path: Path, frames: int = 12) -> Path:
    """An Annex B elementary stream: no container, no timestamps."""
    return _encode(path, textured(frames), fmt="h264")


def resolution_change(path: Path) -> Path:
    """MPEG-TS whose picture grows from 64x48 to 96x64 half-way (two segments back to back)."""
    data = b""
    for size, start in (((64, 48), 0), ((96, 64), 6)):
        buf = io.BytesIO()
        with av.open(buf, "w", format="mpegts") as box:
            s = box.add_stream("mpeg2video", rate=24)
            s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
            for i in range(6):
                f = av.VideoFrame.from_ndarray(scene_frame(size[0], size[1], i), format="rgb24")
                f = f.reformat(format="yuv420p")
                f.pts = start + i
                for p in s.encode(f):
                    box.mux(p)
            for p in s.encode(None):
                box.mux(p)
        data += buf.getvalue()
    path.write_bytes(data)
    return path


def audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as box:
        s = box.add_stream("aac", rate=48000)
        s.layout = "stereo"
        for i in range(8):
            f = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
            f.sample_rate, f.pts = 48000, i * 1024
            for p in s.encode(f):
                box.mux(p)
        for p in s.encode(None):
            box.mux(p)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def forged_png(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width x height`` RGB with only a few rows of data (a bomb's header,
    made cheaply: a real 20000x20000 one takes seconds to compress)."""
    idat = zlib.compress(b"\x00" * (1 + 3 * 64) * 4)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def forged_tiff(path: Path, width: int, height: int) -> Path:
    """A real little-endian TIFF whose width and height tags are rewritten to ``width x height``."""
    ok, buf = cv2.imencode(".tif", np.zeros((4, 4, 3), np.uint8))
    assert ok
    data = bytearray(buf.tobytes())
    ifd = int.from_bytes(data[4:8], "little")
    for k in range(int.from_bytes(data[ifd : ifd + 2], "little")):
        e = ifd + 2 + 12 * k
        tag = int.from_bytes(data[e : e + 2], "little")
        if tag in (256, 257):
            data[e + 2 : e + 4] = (4).to_bytes(2, "little")  # LONG
            data[e + 8 : e + 12] = (width if tag == 256 else height).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


def huge_frames_in_mov(path: Path, width: int = 16000, height: int = 12000) -> Path:
    """A QuickTime file of PNG frames whose own headers declare ``width x height`` (192 M pixels):
    decoding one frame would allocate ~0.6 GB, converting it to RGBA ~0.8 GB more."""
    packet_data = forged_png(width, height)
    with av.open(str(path), "w") as box:
        s = box.add_stream("png", rate=24)
        s.width, s.height, s.pix_fmt = 64, 48, "rgb24"
        for i in range(2):
            p = av.Packet(packet_data)
            p.stream, p.pts, p.dts, p.time_base, p.is_keyframe = s, i, i, Fraction(1, 24), True
            box.mux(p)
    return path


def huge_y4m(path: Path) -> Path:
    """A YUV4MPEG2 header declaring 40000x40000 frames, with a few kilobytes of data."""
    path.write_bytes(b"YUV4MPEG2 W40000 H40000 F24:1 Ip A1:1 C420jpeg\nFRAME\n" + b"\x80" * 4096)
    return path


def edl(path: Path, *lines: str, rate_header: bool = True) -> Path:
    head = ["TITLE: hostile", "FCM: NON-DROP FRAME", ""] if rate_header else ["TITLE: hostile", ""]
    path.write_text("\n".join([*head, *lines]) + "\n")
    return path


EVENT = "{n}  {reel:<8} V     C        {src_in} {src_out} {rec_in} {rec_out}"


def event(n: str = "001", reel: str = "A001", src=("01:00:00:05", "01:00:00:10"), rec=None) -> str:
    rec = rec or ("00:00:00:00", "00:00:00:05")
    return EVENT.format(n=n, reel=reel, src_in=src[0], src_out=src[1], rec_in=rec[0], rec_out=rec[1])


def pickle_preset(path: Path) -> Path:
    """A "preset" that is a pickle whose loading would run a command."""

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    path.write_bytes(pickle.dumps({"lut": Boom()}))
    return path


def damaged_preset(good: Path, path: Path, damage: str) -> Path:
    """A copy of a valid preset file, damaged: ``truncated``, ``hash`` (a value changed), ``future``
    (a newer schema) or ``float8`` (a tensor's type changed)."""
    data = good.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) * 2 // 3])
        return path
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = bytearray(data[8 + n :])
    if damage == "hash":
        body[len(body) // 2] ^= 0x55  # one byte of a tensor
    elif damage == "future":
        header["__metadata__"]["schema_version"] = "99"
    elif damage == "float8":  # an image's bytes read as 8-bit floats, a type NumPy cannot hold
        name = next(k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "U8")
        header[name]["dtype"] = "F8_E5M2"
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(body))
    return path
