"""Training time of the learned look on an idle and on a busy machine, and what the thread policy does.

For each pair (``--pairs``, default 03 20 28 of ``<shared>/samples/pairs``), the material look is
trained through the library (``fast_lut`` at a 512 long side, then ``train_look``), in rounds that
alternate the conditions side by side in one run:

* ``idle``: nothing else running, the default thread policy (``TrainSettings.adapt_threads``:
  torch's threads are timed against one thread on the first steps and the faster trains the rest);
* ``busy fixed``: while another CPU-bound process runs (a subprocess doing float32 matrix products
  on as many threads as there are cores), torch's threads as they are (the policy of grade 0.1);
* ``busy adaptive``: the same load, the default policy.

Printed: the median training seconds per condition and pair, and the ratios.

Run::

    python benchmarks/busy_training.py [--rounds 3] [--pairs 03 20 28] [--json busy.json]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import cv2
import torch
from common import make_parser, print_system, read_rgb, save_json, shared_dir, system_info, table

from grade.model.look import LookSettings
from grade.train import TrainSettings, train_look
from grade.transfer import fast_lut

HOG = (
    "import os, torch\n"
    "torch.set_num_threads(os.cpu_count())\n"
    "a = torch.randn(1024, 1024)\n"
    "while True:\n"
    "    a = (a @ a).clamp(-1, 1)\n"
)


def load(path, side: int = 512) -> torch.Tensor:
    rgb = read_rgb(path)
    s = side / max(rgb.shape[:2])
    small = cv2.resize(rgb, (round(rgb.shape[1] * s), round(rgb.shape[0] * s)), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(small).permute(2, 0, 1).float().contiguous()


def train_seconds(key: torch.Tensor, ref: torch.Tensor, adapt: bool) -> float:
    lut = fast_lut(key, ref)
    t0 = time.perf_counter()
    train_look(key, ref, lut, LookSettings(), TrainSettings(adapt_threads=adapt))
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three conditions (median)")
    parser.add_argument("--pairs", nargs="*", default=["03", "20", "28"], metavar="NN")
    args = parser.parse_args(argv)
    shared = shared_dir(args.shared)
    info = system_info()
    print_system(info)
    folder = shared / "samples" / "pairs"
    pairs = {}
    for name in args.pairs:
        content = sorted(folder.glob(f"{name}_content.*"))[0]
        reference = sorted(folder.glob(f"{name}_reference.*"))[0]
        pairs[name] = (load(content), load(reference))
    conditions = ("idle", "busy fixed", "busy adaptive")
    times: dict[tuple[str, str], list[float]] = {(p, c): [] for p in pairs for c in conditions}
    for r in range(args.rounds):
        for name, (key, ref) in pairs.items():
            for cond in conditions:
                hog = None
                if cond.startswith("busy"):
                    hog = subprocess.Popen([sys.executable, "-c", HOG])
                    time.sleep(1.0)
                try:
                    times[(name, cond)].append(train_seconds(key, ref, adapt=cond != "busy fixed"))
                    print(f"round {r + 1} pair {name} {cond}: {times[(name, cond)][-1]:.1f} s", file=sys.stderr)
                finally:
                    if hog is not None:
                        hog.kill()
                        hog.wait()
    rows = []
    for name in pairs:
        med = {c: statistics.median(times[(name, c)]) for c in conditions}
        rows.append(
            [name, *(med[c] for c in conditions), med["busy fixed"] / med["idle"], med["busy adaptive"] / med["idle"]]
        )
    print(table(["pair", "idle s", "busy fixed s", "busy adaptive s", "fixed/idle", "adaptive/idle"], rows))
    save_json(args.json, {"system": info, "times": {f"{p} {c}": v for (p, c), v in times.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
