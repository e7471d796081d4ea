"""Helpers shared by the benchmark scripts (not a benchmark itself).

Sample material and the evaluator live outside the project, in ``../shared`` relative to the
repository root; they are read in place, never copied into the project.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the media helpers shared with the tests (tests/clips.py)
from clips import copy_video, write_frames  # noqa: E402, F401 (write_frames: for the benchmarks)

DEFAULT_SHARED = REPO_ROOT.parent / "shared"


def make_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser showing the script's docstring, with ``--shared DIR`` and ``--json PATH``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--shared",
        type=Path,
        default=DEFAULT_SHARED,
        help=f"folder holding samples/ and eval/ (default: {DEFAULT_SHARED})",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also save the raw results as JSON here")
    return parser


def shared_dir(path: Path) -> Path:
    """The shared folder, checked; exits with a one-line message when it is missing."""
    path = path.expanduser().resolve()
    if not (path / "samples").is_dir():
        sys.exit(f"no samples/ under {path} (pass --shared DIR)")
    return path


def read_rgb(path: Path) -> np.ndarray:
    """An image as RGB float32 ``(H, W, 3)`` in [0, 1] (8- or 16-bit, grey or with alpha)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"cannot read image: {path}")
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    img = cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB)
    return img.astype(np.float32) / scale


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    """Write RGB float in [0, 1] as an 8-bit image (values outside are clipped)."""
    u8 = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if not cv2.imwrite(str(path), cv2.cvtColor(u8, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write image: {path}")


def evaluate_pair(
    shared: Path,
    graded: Path,
    original: Path,
    reference: Path,
    original_mask: Path | None = None,
    reference_mask: Path | None = None,
) -> dict[str, float]:
    """Run ``eval/gradeeval.py pair`` and return its JSON line (look, structure, affine[, region])."""
    script = shared / "eval" / "gradeeval.py"
    cmd = [sys.executable, str(script), "pair", str(graded), str(original), str(reference)]
    if original_mask and reference_mask:
        cmd += ["--original-mask", str(original_mask), "--reference-mask", str(reference_mask)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        why = done.stderr.strip() or done.stdout.strip()
        raise RuntimeError(f"gradeeval failed ({done.returncode}) on {graded}: {why}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Wall seconds of one call, and its result."""
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def median_time(fn: Callable[[], T], repeats: int) -> tuple[float, list[float], T]:
    """Median wall seconds over ``repeats`` calls (at least one), every run's seconds, the last result."""
    runs: list[float] = []
    for _ in range(max(1, repeats)):
        seconds, result = timed(fn)
        runs.append(seconds)
    return statistics.median(runs), runs, result


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def system_info() -> dict[str, Any]:
    """Machine, date and library versions, for the header of a benchmark run."""
    import av
    import torch

    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "av": av.__version__,
        "cv2": cv2.__version__,
        "numpy": np.__version__,
    }


def print_system(info: dict[str, Any]) -> None:
    print(f"date {info['date']}  cpu {info['cpu']}  cores {info['cores']}", end="")
    print(f"  torch threads {info['torch_threads']}  load average {fmt(info['load_average'], 2)}")
    print("  ".join(f"{k} {info[k]}" for k in ("python", "torch", "av", "cv2", "numpy")))


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats to ``digits`` decimals, None/NaN as ``-``."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: first column left-aligned, the rest right-aligned."""
    cells = [list(map(str, headers))] + [[c if isinstance(c, str) else fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        padded = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def save_json(path: Path | None, data: Any) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"\nraw results: {path}")


def ffv1_copy(source: Path, target: Path, width: int | None = None, frames: int | None = None) -> dict:
    """``source`` as lossless FFV1 .mkv: its first ``frames`` frames (all by default), downscaled to
    ``width`` if smaller (aspect kept, even height). Returns frames, width, height, fps and native size."""
    return copy_video(source, target, width=width, frames=frames)
