"""Regenerate the bundled sample (the files beside this script) from public-domain / CC0 stills.

The sample is made by the project from images shipped in scikit-image's data folder:
  chelsea.png (CC0, Stefan van der Walt), coffee.png (CC0, Rachel Michetti) -> sample.mp4
  rocket.jpg (public domain, SpaceX)                                           -> reference.jpg
Run:  pip install scikit-image && python samples/make_sample.py
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

W, H, FPS, SECONDS_PER_SHOT = 480, 270, 24, 2
HERE = Path(__file__).resolve().parent


def _skimage_image(name: str) -> np.ndarray:
    import skimage

    img = cv2.imread(os.path.join(os.path.dirname(skimage.__file__), "data", name), cv2.IMREAD_COLOR)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _ken_burns(img: np.ndarray, t: float, zoom: tuple[float, float], pan: tuple[float, float]) -> np.ndarray:
    h, w = img.shape[:2]
    z = zoom[0] + (zoom[1] - zoom[0]) * t
    cw, ch = w / z, w / z * H / W
    ch = min(ch, h)
    cx = (w - cw) / 2 + pan[0] * t * (w - cw) / 2
    cy = (h - ch) / 2 + pan[1] * t * (h - ch) / 2
    m = np.array([[W / cw, 0, -cx * W / cw], [0, H / ch, -cy * H / ch]], np.float32)
    return cv2.warpAffine(img, m, (W, H), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)


def main() -> None:
    shots = [
        (_skimage_image("chelsea.png"), (1.05, 1.25), (0.4, -0.2)),
        (_skimage_image("coffee.png"), (1.2, 1.0), (-0.3, 0.1)),
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
    ref = _skimage_image("rocket.jpg")
    cv2.imwrite(str(HERE / "reference.jpg"), cv2.cvtColor(ref, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB) and {HERE / 'reference.jpg'}")


if __name__ == "__main__":
    main()
