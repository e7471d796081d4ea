"""Choosing the encoder, its options and pixel format for an output file, and the container rules."""

from __future__ import annotations

import difflib
import io
import re
from pathlib import Path

import av
import av.error

from grade.errors import InputError
from grade.io.decode import VideoInfo, reason, yuv_matrix

# Containers a graded video can be written to (MXF is read, not written: its muxer takes only a few
# codec, rate and audio combinations, and fails late on the others).
OUTPUT_EXTENSIONS = {".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".nut"}


# Extensions FFmpeg does not map to their muxer by itself.
_MUXER = {".qt": "mov"}


_CODEC_ALIASES = {
    "h264": "libx264",
    "x264": "libx264",
    "avc": "libx264",
    "hevc": "libx265",
    "h265": "libx265",
    "x265": "libx265",
    "prores": "prores_ks",
    "vp9": "libvpx-vp9",
    "av1": "libsvtav1",
    "ffv1": "ffv1",
    "png": "png",
    "mjpeg": "mjpeg",
}


# finishing codecs: (encoder, options, pixel format), whatever the source's depth
_FINISHING = {
    "prores4444": ("prores_ks", {"profile": "4", "vendor": "apl0"}, "yuv444p10le"),
    "prores422hq": ("prores_ks", {"profile": "3", "vendor": "apl0"}, "yuv422p10le"),
    "prores_hq": ("prores_ks", {"profile": "3", "vendor": "apl0"}, "yuv422p10le"),
    "dnxhr_hqx": ("dnxhd", {"profile": "dnxhr_hqx"}, "yuv422p10le"),
    "dnxhr_hq": ("dnxhd", {"profile": "dnxhr_hq"}, "yuv422p"),
    "hevc10": ("libx265", {"preset": "medium", "x265-params": "log-level=error"}, "yuv420p10le"),
}


def _spelling(name: str) -> str:
    return re.sub(r"[\s_\-.]", "", name.lower())


_FINISHING_SPELLINGS = {_spelling(k): k for k in _FINISHING}
DNXHR_MIN = (256, 120)  # FFmpeg's DNxHR encoder refuses smaller frames


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
    Finishing codecs fix their own format: ``prores4444`` (4:4:4 10-bit), ``prores422hq``,
    ``dnxhr_hqx`` (4:2:2 10-bit; ``dnxhd`` picks it for deep sources, ``dnxhr_hq`` for 8-bit ones) and
    ``hevc10`` (4:2:0 10-bit).

    Raises:
        InputError: unknown or unavailable codec.
    """
    name = codec.lower() if codec else _CONTAINER_DEFAULT.get(output.suffix.lower(), "libx264")
    name = _FINISHING_SPELLINGS.get(_spelling(name), name)  # ProRes-4444, prores_422_hq, DNxHR HQX
    if name in ("dnxhd", "dnxhr"):  # DNxHD's fixed bitrate/size table fails on most frames: DNxHR takes any size
        name = "dnxhr_hqx" if info.is_high_bit_depth else "dnxhr_hq"
    if name in _FINISHING:
        encoder, opts, pix = _FINISHING[name]
        opts = dict(opts)
        if encoder == "libx265":
            opts["crf"] = str(18 if crf is None else crf)
        if encoder == "dnxhd" and (info.width < DNXHR_MIN[0] or info.height < DNXHR_MIN[1]):
            raise InputError(
                f"{codec}: DNxHR needs frames of at least {DNXHR_MIN[0]}x{DNXHR_MIN[1]}, not {info.width}x{info.height}"
            )
        if pix.startswith(("yuv420", "yuv422")) and (info.width % 2 or info.height % 2):
            raise InputError(f"{codec}: {pix} needs even frame sizes, not {info.width}x{info.height}")
        _check_container(output, encoder)
        return encoder, opts, pix
    name = _CODEC_ALIASES.get(name, name)
    try:
        enc = av.Codec(name, "w")
    except (av.error.FFmpegError, ValueError):
        known = [*_FINISHING, *_CODEC_ALIASES]
        near = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(near)}" if near else f"; known: {', '.join(known)} or an FFmpeg encoder name"
        raise InputError(f"unknown video codec: {codec or name}{hint}") from None
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


def muxer_of(output: Path) -> str | None:
    return _MUXER.get(output.suffix.lower())


def _check_container(output: Path, encoder: str) -> None:
    """Refuse, before any work, an encoder the output's container cannot hold (H.264 in .webm...)."""
    fmt = muxer_of(output) or _guess_format(output)
    if fmt is None:
        return
    try:
        with av.open(io.BytesIO(), "w", format=fmt) as box:
            box.add_stream(encoder, rate=24)
    except ValueError as e:
        raise InputError(f"cannot write {encoder} video into {output.suffix}: {reason(e)}") from None
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


def container_family(fmt_name: str, suffix: str) -> str:
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


def native_yuv420(info: VideoInfo, target: Path, codec: str | None, crf: int | None) -> bool:
    """True when frames can be graded in their own 8-bit 4:2:0 YCbCr, with no RGB round trip:
    the source and the output are both 8-bit 4:2:0 at even sizes, and the output is read with the source's
    matrix (JPEG is read as BT.601 whatever its tags: an HD source's BT.709 planes are converted)."""
    if info.pix_fmt not in ("yuv420p", "yuvj420p") or info.width % 2 or info.height % 2:
        return False
    encoder, _, pix = choose_codec(target, codec, crf, info)
    return pix == "yuv420p" and (encoder != "mjpeg" or yuv_matrix(info) == 5)
