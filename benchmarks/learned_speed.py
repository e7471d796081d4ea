"""Speed and memory of applying ``grade``'s learned look to full-resolution frames, and its training time.

A look is trained once through the library on ``<shared>/samples/pairs/08_content.png`` against
``08_reference.png`` (``fast_lut`` at a 512 long side, then ``train_look``), then:

* (a) the content, resized to 1920x1080, is graded as the video pipeline does, decode and encode
  excluded: ``look.apply_pixels(rgba, PackedTable(lut))`` on an 8-bit RGBA frame (the table built
  once, outside the timing), median of ``--repeats`` after 2 warm-ups, target <= 100 ms; the 4:2:0
  path ``look.apply_yuv420`` (what 8-bit 4:2:0 video to a 4:2:0 output uses) and the 16-bit path
  ``look.apply_pixels(rgb16)`` (no table) the same way; no stabiliser (the network on every call);
* (b) peak memory of one 3840x2160 apply (8-bit RGBA with table, and 16-bit), each in a fresh
  subprocess: its ``ru_maxrss`` after the apply minus its RSS right before it (the apply's own
  working memory), and the absolute peak (everything the process holds: Python, torch, the look,
  the frame, the table, the apply's temporaries) compared with the target <= 1.5 GB;
* (c) the training seconds and steps of that pair (``TrainReport``).

Run::

    python benchmarks/learned_speed.py [--repeats 10] [--json learned_speed.json]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import torch
from common import make_parser, median_time, print_system, save_json, shared_dir, system_info, table, timed

from grade.io.image import fit_side, read_image, to_tensor
from grade.lut import PackedTable, YuvTable
from grade.model.look import LearnedLook
from grade.train import train_look
from grade.transfer import fast_lut

PAIR = Path("samples/pairs")
CONTENT, REFERENCE = "08_content.png", "08_reference.png"
HD, UHD = (1920, 1080), (3840, 2160)
WARMUPS = 2
TARGET_MS = 100.0
TARGET_PEAK_MB = 1.5 * 1024  # 1.5 GB, as MiB
# A child's ru_maxrss starts at the high-water mark of the process that exec'd it (Linux copies it at
# exec), so a child started by this trained, torch-laden process would report this process's peak.
# The 4K runs are therefore started through this small launcher, whose own peak is ~10 MiB.
LAUNCHER = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"


def frame_rgba(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``rgb`` resized to ``size`` (W, H) as an 8-bit RGBA frame, alpha 255 (the video decoder's layout)."""
    big = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)
    return np.dstack([big, np.full(big.shape[:2], 255, np.uint8)])


def yuv420_frame(rgba: np.ndarray) -> np.ndarray:
    """An RGBA frame as BT.709 limited-range yuv420p planes ``(H * 3 // 2, W)`` (the decoder's 4:2:0 layout)."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgba[..., :3]), format="rgb24")
    return frame.reformat(format="yuv420p", dst_colorspace=1, dst_color_range=1).to_ndarray()


def frame_rgb16(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``rgb`` resized to ``size`` (W, H) as 16-bit RGB (the decoder's layout for deep sources)."""
    return cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR).astype(np.uint16) * 257


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (VmRSS, VmHWM)."""
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def child_4k(look_path: Path, content: Path, layout: str) -> int:
    """In a fresh process: grade one 3840x2160 frame, print the memory figures (KiB) as JSON."""
    look: LearnedLook = torch.load(look_path, weights_only=False)
    rgb = read_image(content).rgb
    if layout == "rgba":
        pixels, packed = frame_rgba(rgb, UHD), PackedTable(look.lut)
    else:
        pixels, packed = frame_rgb16(rgb, UHD), None
    del rgb
    gc.collect()
    setup_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:  # reset the high-water mark (Linux >= 4.0), so that the table build's temporaries do not count
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    before = status_kib("VmRSS")
    seconds, graded = timed(lambda: look.apply_pixels(pixels, packed))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "layout": layout,
                "shape": list(pixels.shape),
                "dtype": str(pixels.dtype),
                "out_shape": list(graded.shape),
                "seconds": seconds,
                "reset": reset,
                "setup_peak_kib": setup_peak,
                "before_kib": before,
                "peak_kib": peak,
                "vmhwm_kib": status_kib("VmHWM"),
            }
        )
    )
    return 0


def run_4k(look: LearnedLook, content: Path, layout: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="grade-learned-") as tmp:
        look_path = Path(tmp) / "look.pt"
        torch.save(look, look_path)
        cmd = [sys.executable, __file__, "--child-4k", layout, str(look_path), str(content)]
        done = subprocess.run([sys.executable, "-c", LAUNCHER, *cmd], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"4K child ({layout}) failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed_apply(fn, repeats: int) -> tuple[float, list[float]]:
    for _ in range(WARMUPS):
        fn()
    median, runs, _ = median_time(fn, repeats)
    return median, runs


@contextlib.contextmanager
def patched_u16_base():
    """The learned look's 16-bit base lookup through ``grid_sample`` in float, as before OpenColorIO's op."""
    import grade.model.look as look_module
    from grade.lut import apply_lut_u16_float

    kept = look_module.apply_lut_u16
    look_module.apply_lut_u16 = apply_lut_u16_float
    try:
        yield
    finally:
        look_module.apply_lut_u16 = kept


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=10, help="timed 1080p applies (median, default 10)")
    parser.add_argument("--child-4k", nargs=3, metavar=("LAYOUT", "LOOK", "CONTENT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_4k:
        layout, look_path, content = args.child_4k
        return child_4k(Path(look_path), Path(content), layout)
    pairs = shared_dir(args.shared) / PAIR
    info = system_info()
    print_system(info)

    # (c) training, through the library
    C, R = read_image(pairs / CONTENT).rgb, read_image(pairs / REFERENCE).rgb
    lut_s, lut = timed(lambda: fast_lut(to_tensor(fit_side(C, 512)), to_tensor(fit_side(R, 512))))
    look, report = train_look(to_tensor(C), to_tensor(R), lut)
    print(f"\npair 08: content {C.shape[1]}x{C.shape[0]}, reference {R.shape[1]}x{R.shape[0]}")
    print(
        table(
            ["training", "seconds", "steps", "stopped early", "loss first", "loss last"],
            [
                ["fast_lut (512)", lut_s, "-", "-", "-", "-"],
                ["train_look", report.seconds, report.steps, report.stopped_early, report.loss_first, report.loss_last],
            ],
        )
    )

    # (a) 1080p apply, decode/encode excluded
    rgba, rgb16 = frame_rgba(C, HD), frame_rgb16(C, HD)
    table_s, packed = timed(lambda: PackedTable(look.lut))
    t8, runs8 = timed_apply(lambda: look.apply_pixels(rgba, packed), args.repeats)
    t16, runs16 = timed_apply(lambda: look.apply_pixels(rgb16), args.repeats)
    with patched_u16_base():  # the 16-bit path as it was: the base table by grid_sample in float
        t16_torch, runs16_torch = timed_apply(lambda: look.apply_pixels(rgb16), args.repeats)
    planes = yuv420_frame(rgba)
    yuv_table = YuvTable(look.lut, 1, False)
    t420, runs420 = timed_apply(lambda: look.apply_yuv420(planes, *HD[::-1], yuv_table, 1, False), args.repeats)
    print(f"\n1920x1080 apply (median of {args.repeats} after {WARMUPS} warm-ups; PackedTable build {table_s:.2f} s)")
    paths = (
        ("8-bit RGBA + PackedTable", t8, runs8),
        ("8-bit 4:2:0 (BT.709) + YuvTable", t420, runs420),
        ("16-bit RGB (no table)", t16, runs16),
        ("16-bit RGB, base by grid_sample (before)", t16_torch, runs16_torch),
    )
    print(
        table(
            ["path", "median ms", "frames/s", "min ms", "max ms"],
            [
                [name, *(f"{v:.1f}" for v in (t * 1e3, 1 / t, min(runs) * 1e3, max(runs) * 1e3))]
                for name, t, runs in paths
            ],
        )
    )
    ok8 = t8 * 1e3 <= TARGET_MS
    print(f"8-bit 1080p apply {t8 * 1e3:.1f} ms (target <= {TARGET_MS:.0f} ms: {'met' if ok8 else 'NOT met'})")

    # (b) 4K memory, each layout in a fresh process
    mem = {layout: run_4k(look, pairs / CONTENT, layout) for layout in ("rgba", "rgb16")}
    rows = []
    for layout, m in mem.items():
        delta, peak = (m["peak_kib"] - m["before_kib"]) / 1024, m["peak_kib"] / 1024
        m.update(delta_mib=delta, peak_mib=peak, met=peak <= TARGET_PEAK_MB)
        rows.append(
            [
                "8-bit RGBA + table" if layout == "rgba" else "16-bit RGB",
                m["seconds"],
                m["before_kib"] / 1024,
                delta,
                peak,
                m["setup_peak_kib"] / 1024,
                "met" if m["met"] else "NOT met",
            ]
        )
    print("\n3840x2160 apply, one per fresh process (MiB)")
    print(
        table(
            ["path", "apply s (1 run)", "RSS before", "peak - before", "absolute peak", "setup peak", "<= 1.5 GB"],
            [[r[0], r[1], *(f"{v:.0f}" for v in r[2:6]), r[6]] for r in rows],
        )
    )
    reset = "done" if all(m["reset"] for m in mem.values()) else "NOT possible: the peak includes the setup"
    print(
        f"absolute peak: ru_maxrss after the apply, its high-water mark reset right before the apply ({reset});\n"
        "setup peak: ru_maxrss before that reset (look, frame, table build). Compared with 1.5 GB: the absolute peak."
    )
    save_json(
        args.json,
        {
            "system": info,
            "pair": [CONTENT, REFERENCE],
            "train": {
                "fast_lut_seconds": lut_s,
                "seconds": report.seconds,
                "steps": report.steps,
                "stopped_early": report.stopped_early,
                "loss_first": report.loss_first,
                "loss_last": report.loss_last,
            },
            "apply_1080p": {
                "table_build_seconds": table_s,
                "rgba_table": {"median_seconds": t8, "runs": runs8, "met": ok8},
                "rgb16": {"median_seconds": t16, "runs": runs16},
                "rgb16_grid_sample_base": {"median_seconds": t16_torch, "runs": runs16_torch},
            },
            "memory_4k": mem,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
