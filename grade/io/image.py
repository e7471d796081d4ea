"""Stills in and out (OpenCV): 8- and 16-bit, grey, RGB and RGBA; alpha is carried through."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from grade.errors import InputError, OutputError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".ppm", ".pgm", ".pnm"}
MAX_PIXELS = 150_000_000  # larger stills are refused before decoding (decompression bombs)


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


@dataclass
class Still:
    """A decoded still: ``rgb`` ``(H, W, 3)`` uint8 or uint16, optional ``alpha`` ``(H, W)``."""

    rgb: np.ndarray
    alpha: np.ndarray | None = None

    @property
    def bit_depth(self) -> int:
        return 16 if self.rgb.dtype == np.uint16 else 8

    def as_float(self) -> np.ndarray:
        """``(H, W, 3)`` float32 in [0, 1]."""
        return self.rgb.astype(np.float32) / (65535.0 if self.rgb.dtype == np.uint16 else 255.0)


def _declared_size(path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG/JPEG/TIFF/WebP/BMP/PNM header without decoding (None if unknown)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64 * 1024)
    except OSError:
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    other = _tiff_size(path, head) or _webp_bmp_pnm_size(head)
    if other:
        return other
    if head[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(head):
            if head[i] != 0xFF:
                i += 1
                continue
            marker = head[i + 1]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                return int.from_bytes(head[i + 7 : i + 9], "big"), int.from_bytes(head[i + 5 : i + 7], "big")
            i += 2 + int.from_bytes(head[i + 2 : i + 4], "big")
    return None


def _tiff_size(path: Path, head: bytes) -> tuple[int, int] | None:
    """The largest width x height among a TIFF's first IFDs (classic TIFF; None if unknown)."""
    if head[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    order = "little" if head[:2] == b"II" else "big"
    best = None
    try:
        with open(path, "rb") as f:
            offset = int.from_bytes(head[4:8], order)
            for _ in range(8):  # a few pages: enough to see the big one of a multi-page bomb
                if offset == 0:
                    break
                f.seek(offset)
                count = int.from_bytes(f.read(2), order)
                entries = f.read(12 * min(count, 512))
                dims = {}
                for k in range(0, len(entries) - 11, 12):
                    tag = int.from_bytes(entries[k : k + 2], order)
                    kind = int.from_bytes(entries[k + 2 : k + 4], order)
                    if tag in (256, 257):
                        raw = entries[k + 8 : k + 10] if kind == 3 else entries[k + 8 : k + 12]
                        dims[tag] = int.from_bytes(raw, order)
                if 256 in dims and 257 in dims and (best is None or dims[256] * dims[257] > best[0] * best[1]):
                    best = (dims[256], dims[257])
                offset = int.from_bytes(f.read(4), order) if count <= 512 else 0
    except OSError:
        return best
    return best


def _webp_bmp_pnm_size(head: bytes) -> tuple[int, int] | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
        kind = head[12:16]
        if kind == b"VP8X":
            return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
        if kind == b"VP8L":
            bits = int.from_bytes(head[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        if kind == b"VP8 ":
            return int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
    if head[:2] == b"BM" and len(head) >= 26:
        return abs(int.from_bytes(head[18:22], "little", signed=True)), abs(
            int.from_bytes(head[22:26], "little", signed=True)
        )
    if head[:1] == b"P" and head[1:2] in b"123456" and len(head) > 3:
        words = []
        for line in head[2:512].split(b"\n"):
            words += line.split(b"#", 1)[0].split()
            if len(words) >= 2:
                break
        if len(words) >= 2 and words[0].isdigit() and words[1].isdigit():
            return int(words[0]), int(words[1])
    return None


def read_image(path: str | Path, *, what: str = "image") -> Still:
    """Decode a still.

    Raises:
        InputError: missing, empty, not an image, too large.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    if path.is_dir():
        raise InputError(f"{what} is a directory: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"{what} is an empty file: {path}")
    size = _declared_size(path)
    if size and size[0] * size[1] > MAX_PIXELS:
        raise InputError(f"{what} is too large ({size[0]}x{size[1]} pixels, limit {MAX_PIXELS:,}): {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error:  # OpenCV's own size limit, or a decoder that gave up loudly
        img = None
    if img is None or img.size == 0:
        if data[:4].tobytes() == b"\x76\x2f\x31\x01":
            raise InputError(f"{what} is OpenEXR, which this OpenCV build cannot read (use a 16-bit PNG/TIFF): {path}")
        raise InputError(f"{what} is not a readable image: {path}")
    if img.dtype not in (np.uint8, np.uint16):
        if img.dtype == np.float32 or img.dtype == np.float64:
            img = (np.clip(img, 0, 1) * 65535 + 0.5).astype(np.uint16)
        else:
            raise InputError(f"{what} has an unsupported sample type ({img.dtype}): {path}")
    alpha = None
    if img.ndim == 2:
        rgb = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        alpha = img[:, :, 3].copy()
        rgb = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    elif img.shape[2] == 3:
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        rgb = cv2.cvtColor(img[:, :, :1], cv2.COLOR_GRAY2RGB)
    return Still(np.ascontiguousarray(rgb), alpha)


def fit_side(img: np.ndarray, side: int) -> np.ndarray:
    """Downscale ``(H, W, C)`` so its long side is at most ``side`` (area filter); never upscale."""
    h, w = img.shape[:2]
    s = side / max(h, w)
    if s >= 1:
        return img
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def thumbnail(rgb: np.ndarray, side: int) -> np.ndarray:
    """``rgb`` with its long side at most ``side``, as uint8 (16-bit images keep their top 8 bits)."""
    small = fit_side(rgb, side)
    return small if small.dtype == np.uint8 else (small >> 8).astype(np.uint8)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8/uint16/float -> ``(3, H, W)`` float32 in [0, 1]."""
    if rgb.dtype == np.uint8:
        x = rgb.astype(np.float32) / 255.0
    elif rgb.dtype == np.uint16:
        x = rgb.astype(np.float32) / 65535.0
    else:
        x = rgb.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(x[..., :3])).permute(2, 0, 1).contiguous()


def check_rgb(frame: object, what: str = "frame") -> np.ndarray:
    """``frame`` if it is an RGB array ``(H, W, 3)`` of uint8, uint16 or float32 (in [0, 1]); else an
    InputError naming ``what``."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or min(frame.shape[:2]) < 1:
        shape = getattr(frame, "shape", None)
        raise InputError(f"{what}: expected an RGB array of shape (H, W, 3), got {shape or type(frame).__name__}")
    if frame.dtype not in (np.uint8, np.uint16, np.float32):
        raise InputError(f"{what}: expected uint8, uint16 or float32 in [0, 1], got {frame.dtype}")
    return frame


def as_uint8(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 from uint8, uint16 (top 8 bits) or float in [0, 1] (clipped, NaN as 0)."""
    if rgb.dtype == np.uint8:
        return rgb
    if rgb.dtype == np.uint16:
        return (rgb >> 8).astype(np.uint8)
    return (np.clip(np.nan_to_num(rgb), 0, 1) * 255 + 0.5).astype(np.uint8)


def load_reference(path: str | Path | np.ndarray, side: int = 512) -> tuple[torch.Tensor, np.ndarray]:
    """The reference still at working resolution: ``(3, h, w)`` tensor and an RGB uint8 thumbnail.
    ``path`` may also be the still itself, an RGB array (uint8, uint16, or float32 in [0, 1]).

    Raises:
        InputError: the reference is missing, a video, or not an image.
    """
    if isinstance(path, np.ndarray):
        rgb = check_rgb(path, "reference")
        small = fit_side(as_uint8(rgb) if rgb.dtype == np.float32 else rgb, side)
        return to_tensor(small), thumbnail(small, side)
    path = Path(path)
    if path.exists() and not is_image_path(path) and path.suffix.lower() in VIDEO_HINTS:
        raise InputError(f"reference is a video, not a still image: {path} (export a frame as PNG/JPEG)")
    still = read_image(path, what="reference")
    small = fit_side(still.rgb, side)
    return to_tensor(small), thumbnail(small, side)


VIDEO_HINTS = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mxf", ".ts", ".mts"}


def encode_image(path: Path, rgb: np.ndarray, alpha: np.ndarray | None = None, quality: int = 95) -> bytes:
    """Encode RGB (uint8/uint16) with optional alpha in the format named by ``path``'s extension."""
    ext = path.suffix.lower()
    if ext in (".jpg", ".jpeg", ".webp", ".bmp", ".ppm") and rgb.dtype == np.uint16:
        rgb = (rgb >> 8).astype(np.uint8)  # these formats hold 8 bits
        alpha = None if alpha is None else (alpha >> 8).astype(np.uint8) if alpha.dtype == np.uint16 else alpha
    if alpha is not None and ext in (".png", ".tif", ".tiff", ".webp"):
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
        bgr[:, :, 3] = alpha.astype(rgb.dtype)
    else:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    try:
        ok, buf = cv2.imencode(ext, bgr, params)
    except cv2.error:
        ok = False
    if not ok:
        raise OutputError(f"cannot encode an image as {ext}: {path}")
    return buf.tobytes()


def write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
