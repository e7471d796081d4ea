"""What grading 8-bit 4:2:0 video in its own YCbCr saves against grading it through RGB (issue #11,
item 6: the RGB path agrees better with ``ffmpeg -vf lut3d``, the native one with the ideal).

Per 1920x1080 frame, a 33-point LUT look, torch on one thread (as a render runs it):

* ``native``: ``YuvTable.apply_yuv420`` on the decoded planes (what ``grade`` does);
* ``rgb``: the planes to RGBA with the BT.709 matrix, ``PackedTable.apply_rgba``, and back to yuv420p
  for the encoder (PyAV's swscale both ways, as a render through RGB does it).

Medians of ``--repeats`` interleaved runs, in ms, and their ratio. Run (~10 s)::

    python benchmarks/yuv_native.py [--repeats 15] [--json yuv.json]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import av
import numpy as np
import torch
from common import make_parser, print_system, save_json, system_info, table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from clips import scene_frame  # noqa: E402

from grade.lut import PackedTable, YuvTable  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=15, help="interleaved runs per path (median)")
    args = parser.parse_args(argv)
    info = system_info()
    print_system(info)
    torch.set_num_threads(1)
    g = torch.linspace(0, 1, 33)
    r, gg, b = torch.meshgrid(g, g, g, indexing="ij")
    lut = torch.stack([r**0.8, gg * 0.9 + 0.05, b**1.2 * 0.95]).float()  # an asymmetric look
    rgb = np.ascontiguousarray(np.tile(scene_frame(480, 270, 2, 0), (4, 4, 1)))  # 1920x1080
    planes = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p", dst_colorspace=1).to_ndarray()
    native_table, rgb_table = YuvTable(lut, 1, False), PackedTable(lut)

    def native() -> np.ndarray:
        return native_table.apply_yuv420(planes, 1080, 1920)

    def through_rgb() -> np.ndarray:
        rgba = av.VideoFrame.from_ndarray(planes, format="yuv420p").to_ndarray(format="rgba", src_colorspace=1)
        graded = av.VideoFrame.from_ndarray(rgb_table.apply_rgba(rgba), format="rgba")
        return graded.reformat(format="yuv420p", dst_colorspace=1).to_ndarray()

    paths = {"native": native, "rgb": through_rgb}
    times: dict[str, list[float]] = {k: [] for k in paths}
    for fn in paths.values():
        fn()  # warm-up
    for _ in range(args.repeats):
        for name, fn in paths.items():
            t = time.perf_counter()
            fn()
            times[name].append(1000 * (time.perf_counter() - t))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(table(["path", "ms / 1080p frame (median)"], [[k, f"{v:.2f}"] for k, v in med.items()]))
    print(f"rgb / native: {med['rgb'] / med['native']:.2f}x")
    save_json(args.json, {"system": info, "ms": med, "ratio": med["rgb"] / med["native"]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
