"""Video in and out with PyAV: the front of :mod:`grade.io`'s video modules.

* :mod:`grade.io.decode`: :func:`probe` a file, :func:`iter_frames` / :func:`decode_video` (the one decode
  loop: analysis, key frames, the conform's assembly);
* :mod:`grade.io.codecs`: :func:`choose_codec` for an output file and the container rules;
* :mod:`grade.io.encode`: :func:`render_video` (decode -> grade -> encode, streamed) and :class:`FrameEncoder`
  (the one video encoder, with the source's colour tags);
* :mod:`grade.io.streams`: audio and subtitles copied or re-encoded;
* :mod:`grade.io.timecode`: SMPTE timecode.
"""

from grade.io.codecs import OUTPUT_EXTENSIONS, choose_codec, native_yuv420, same_family_codec, x264_lookahead
from grade.io.decode import (
    MAX_VIDEO_PIXELS,
    Frame,
    VideoInfo,
    decode_video,
    iter_frames,
    probe,
    range_of,
    rgb_format,
    yuv_matrix,
)
from grade.io.encode import FrameEncoder, render_video
from grade.io.streams import RenderStats
from grade.io.timecode import frames_timecode, shift_timecode, timecode_frames

__all__ = [
    "MAX_VIDEO_PIXELS",
    "OUTPUT_EXTENSIONS",
    "Frame",
    "FrameEncoder",
    "RenderStats",
    "VideoInfo",
    "choose_codec",
    "decode_video",
    "frames_timecode",
    "iter_frames",
    "native_yuv420",
    "probe",
    "range_of",
    "render_video",
    "rgb_format",
    "same_family_codec",
    "shift_timecode",
    "timecode_frames",
    "x264_lookahead",
    "yuv_matrix",
]
