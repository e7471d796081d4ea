"""Regenerate the bundled sample (the files beside this script) from CC-BY-4.0 photographs.

The sample is made by the project from two photographs by Aitzol Berasategi (2018, CC-BY-4.0),
shipped in Debian's ``lomiri-wallpapers-16.04`` package (under /usr/share/backgrounds):
  aitzgorri_by_Aitzol_Berasategi.jpg (autumn afternoon, meadow below the Aitzgorri ridge)
      -> sample.mp4: a wide shot of the whole photograph, then a closer shot of its right part
  sunset_by_Aitzol_Berasategi.jpg (mountain meadow at sunset)
      -> reference.jpg: the middle band (sky glow, ranges, meadow), without the signpost at the left
Run:  apt-get install lomiri-wallpapers-16.04 && python samples/make_sample.py
or, without installing it:  apt-get download lomiri-wallpapers-16.04 &&
      dpkg-deb -x lomiri-wallpapers-16.04_*.deb /tmp/lw && python samples/make_sample.py /tmp/lw
(the argument is a folder holding the .jpg files, or a root with usr/share/backgrounds under it).
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

W, H, FPS, SECONDS_PER_SHOT = 480, 270, 24, 2
REF_LONG_SIDE = 768
HERE = Path(__file__).resolve().parent


def _source_dir() -> Path:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/")
    for d in (root, root / "usr/share/backgrounds"):
        if (d / "sunset_by_Aitzol_Berasategi.jpg").is_file():
            return d
    sys.exit(f"no lomiri-wallpapers-16.04 photographs under {root} (see this script's docstring)")


def _photo(name: str, width: int | None = None, box: tuple[float, float, float, float] = (0, 0, 1, 1)) -> np.ndarray:
    """The photograph ``name``, cropped to ``box`` (x0, y0, x1, y1 as fractions), ``width`` pixels wide."""
    img = cv2.imread(str(_source_dir() / f"{name}_by_Aitzol_Berasategi.jpg"), cv2.IMREAD_COLOR)
    h, w = img.shape[:2]
    img = img[round(box[1] * h) : round(box[3] * h), round(box[0] * w) : round(box[2] * w)]
    if width is not None:  # downscale once with area averaging, so the per-frame warp barely resamples
        img = cv2.resize(img, (width, round(img.shape[0] * width / img.shape[1])), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _ken_burns(img: np.ndarray, t: float, zoom: tuple[float, float], pan: tuple[float, float]) -> np.ndarray:
    h, w = img.shape[:2]
    z = zoom[0] + (zoom[1] - zoom[0]) * t
    cw, ch = w / z, w / z * H / W
    ch = min(ch, h)
    cx = (w - cw) / 2 + pan[0] * t * (w - cw) / 2
    cy = (h - ch) / 2 + pan[1] * t * (h - ch) / 2
    m = np.array([[W / cw, 0, -cx * W / cw], [0, H / ch, -cy * H / ch]], np.float32)
    return cv2.warpAffine(img, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def main() -> None:
    shots = [
        (_photo("aitzgorri", 640), (1.03, 1.2), (0.4, -0.3)),  # wide: ridge, larches, meadow
        (_photo("aitzgorri", 640, (0.35, 0.05, 1, 1)), (1.15, 1.0), (-0.4, 0.0)),  # medium: fir and oaks
    ]
    out = HERE / "sample.mp4"
    n = FPS * SECONDS_PER_SHOT
    with av.open(str(out), "w") as box:
        vs = box.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        vs.options = {"crf": "23", "preset": "slow"}
        vs.codec_context.color_primaries = vs.codec_context.color_trc = vs.codec_context.colorspace = 1
        vs.codec_context.color_range = 1
        audio = box.add_stream("aac", rate=48000)
        audio.layout = "stereo"
        audio.bit_rate = 64000
        i = 0
        for img, zoom, pan in shots:
            for k in range(n):
                rgb = _ken_burns(img, k / (n - 1), zoom, pan)
                f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                    format="yuv420p", dst_colorspace=1, dst_color_range=1
                )
                f.pts, f.time_base = i, Fraction(1, FPS)
                i += 1
                for p in vs.encode(f):
                    box.mux(p)
        for p in vs.encode(None):
            box.mux(p)
        # a quiet two-chord pad, so the sample shows that audio is carried through untouched
        total = int(48000 * i / FPS)
        t = np.arange(total) / 48000
        half = total // 2
        chord = np.where(np.arange(total) < half, 1.0, 0.0)
        sig = chord * (np.sin(2 * np.pi * 220 * t) + np.sin(2 * np.pi * 277.2 * t)) + (1 - chord) * (
            np.sin(2 * np.pi * 196 * t) + np.sin(2 * np.pi * 246.9 * t)
        )
        sig = (0.08 * sig * np.minimum(1, np.minimum(t, t[-1] - t) * 4)).astype(np.float32)
        step, pts = 1024, 0
        for s0 in range(0, total, step):
            chunk = np.ascontiguousarray(np.stack([sig[s0 : s0 + step]] * 2))
            af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            af.sample_rate, af.pts = 48000, pts
            pts += chunk.shape[1]
            for p in audio.encode(af):
                box.mux(p)
        for p in audio.encode(None):
            box.mux(p)
    ref = _photo("sunset", box=(0.05, 0.15, 1, 0.85))
    scale = REF_LONG_SIDE / max(ref.shape[:2])
    ref = cv2.resize(ref, (round(ref.shape[1] * scale), round(ref.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(HERE / "reference.jpg"), cv2.cvtColor(ref, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    ref_path = HERE / "reference.jpg"
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB) and {ref_path} ({ref_path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
