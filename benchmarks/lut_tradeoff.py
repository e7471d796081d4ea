"""How close to a 3D LUT the learned look can be made, and what its regional look costs for it.

For each weight of the training's LUT-consistency term (``LossWeights.lut``, 0 by default: see
``grade.losses.lut_consistency_loss``), every pair ``NN_content`` / ``NN_reference`` of
``<shared>/samples/pairs`` is graded in learned mode and saved as a preset, exactly as
``grade CONTENT --look REFERENCE --save-preset NAME`` does it, with only that weight changed. Reported
per pair and as means:

* ``ΔE``: the preset's ``lut_error`` (mean CIEDE2000 of its fitted 33-point LUT from the full look on
  the stored key frame: what ``grade presets show`` prints; issue #5's target is <= 2.0);
* ``look``, ``region``, ``structure``: ``gradeeval.py pair`` on the graded content (region on the
  pairs with masks; issue #3's target is region <= 0.85 x hm-mkl-hm = 5.88 on these pairs).

Run (~4 min a weight on 2 cores)::

    python benchmarks/lut_tradeoff.py [--weights 0 0.25 1 4] [--pairs 08 34] [--json tradeoff.json]
"""

from __future__ import annotations

import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import evaluate_pair, make_parser, print_system, save_json, shared_dir, system_info, table

import grade.shotgrade as shotgrade
from grade.losses import LossWeights
from grade.pipeline import GradeOptions, grade_file
from grade.presets import read_preset
from grade.train import TrainSettings


def grade_pair(shared: Path, n: str, weight: float, out: Path) -> dict:
    pairs = shared / "samples" / "pairs"
    content = next(pairs.glob(f"{n}_content.*"))
    reference = next(pairs.glob(f"{n}_reference.*"))
    masks = pairs / f"{n}_content_seg.png", pairs / f"{n}_reference_seg.png"
    has_masks = all(m.exists() for m in masks)
    graded = out / f"{n}.png"
    t = time.perf_counter()
    options = GradeOptions(force=True, save_preset=f"p{n}", force_preset=True, library=out / "lib")
    report = grade_file(content, reference, options, output=graded)
    seconds = time.perf_counter() - t
    error = read_preset(report.preset_saved).manifest.lut_error
    scores = evaluate_pair(shared, graded, content, reference, *(masks if has_masks else (None, None)))
    return {
        "pair": n,
        "weight": weight,
        "de_mean": error.mean_de2000,
        "de_p95": error.p95_de2000,
        "look": scores["look"],
        "region": scores.get("region"),
        "structure": scores["structure"],
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.25, 1.0, 4.0], help="LUT-term weights")
    parser.add_argument("--pairs", nargs="*", metavar="NN", help="only these pairs (default: all)")
    args = parser.parse_args(argv)
    shared = shared_dir(args.shared)
    info = system_info()
    print_system(info)
    names = args.pairs or sorted(p.name.split("_")[0] for p in (shared / "samples" / "pairs").glob("*_content.*"))
    rows: list[dict] = []
    default_settings = shotgrade.TrainSettings
    try:
        with tempfile.TemporaryDirectory(prefix="grade-tradeoff-") as tmp:
            for weight in args.weights:
                # the pipeline's trainer settings, with only the LUT term's weight changed
                shotgrade.TrainSettings = functools.partial(TrainSettings, weights=LossWeights(lut=weight))
                out = Path(tmp) / f"w{weight}"
                out.mkdir()
                for n in names:
                    rows.append(grade_pair(shared, n, weight, out))
                    r = rows[-1]
                    print(f"weight {weight}: pair {n} ΔE {r['de_mean']:.2f} region {r['region']} look {r['look']:.2f}")
    finally:
        shotgrade.TrainSettings = default_settings
    print()
    print(
        table(
            ["weight", "pair", "ΔE mean", "ΔE p95", "look", "region", "structure"],
            [[r["weight"], r["pair"], r["de_mean"], r["de_p95"], r["look"], r["region"], r["structure"]] for r in rows],
        )
    )
    summary = []
    for weight in args.weights:
        sel = [r for r in rows if r["weight"] == weight]
        regions = [r["region"] for r in sel if r["region"] is not None]
        summary.append(
            [
                weight,
                statistics.mean(r["de_mean"] for r in sel),
                statistics.mean(r["look"] for r in sel),
                statistics.mean(regions) if regions else None,
                min(r["structure"] for r in sel),
            ]
        )
    print()
    print(table(["weight", "ΔE mean", "look mean", "region mean", "structure min"], summary))
    if args.json:
        save_json(args.json, {"system": info, "rows": rows, "summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
