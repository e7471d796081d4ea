"""Quality of ``grade``'s fast mode on still pairs, against classical colour transfer.

For every pair ``NN_content.*`` / ``NN_reference.*`` in ``<shared>/samples/pairs`` (with the
optional ``NN_content_seg.png`` / ``NN_reference_seg.png`` semantic masks) it grades the content
four ways:

* ``content``    ungraded (the content itself: the starting point);
* ``mkl``        Monge-Kantorovich linear transfer in RGB (color-matcher), clipped to [0, 1];
* ``hm-mkl-hm``  histogram match, MKL, histogram match (color-matcher), clipped;
* ``fast``       ``grade.pipeline.grade_file(..., GradeOptions(mode="fast"))``.

Each result is scored by ``<shared>/eval/gradeeval.py pair`` (look and region: distance to the
reference's colours, lower is better; structure: edges kept, 1 is best; affine: residual of the
best local affine colour map, 0 is photorealistic). Printed: a per-pair table, the mean per
method, and the time each method took per pair (for ``fast``: fit + render from its report).

Run (needs the ``bench`` extra: ``pip install -e .[bench]``)::

    python benchmarks/fast_quality.py [--sheet sheet.png] [--json fast_quality.json]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from color_matcher import ColorMatcher
from common import (
    evaluate_pair,
    make_parser,
    median_time,
    print_system,
    read_rgb,
    save_json,
    shared_dir,
    system_info,
    table,
    write_rgb,
)

from grade.pipeline import GradeOptions, grade_file

METHODS = ("content", "mkl", "hm-mkl-hm", "fast")
METRICS = ("look", "region", "structure", "affine")
THUMB_HEIGHT = 96


@dataclass
class Pair:
    name: str
    content: Path
    reference: Path
    content_mask: Path | None = None
    reference_mask: Path | None = None


@dataclass
class Result:
    pair: str
    method: str
    seconds: float | None  # median of runs
    runs: list[float] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)


def find_pairs(folder: Path) -> list[Pair]:
    """``NN_content.*`` with a matching ``NN_reference.*``, masks when both exist."""
    pairs = []
    for content in sorted(folder.glob("*_content.*")):
        name = content.name.split("_content.")[0]
        refs = sorted(folder.glob(f"{name}_reference.*"))
        if not refs:
            continue
        cmask, rmask = folder / f"{name}_content_seg.png", folder / f"{name}_reference_seg.png"
        masks = (cmask, rmask) if cmask.exists() and rmask.exists() else (None, None)
        pairs.append(Pair(name, content, refs[0], *masks))
    return pairs


# A grader writes its result for ``pair`` to ``out`` and returns the seconds of each of ``repeats`` runs.
Grader = Callable[[Pair, Path, int], list[float]]


def color_matcher_grade(method: str) -> Grader:
    """color-matcher ``method`` from content to reference, clipped; timed: the transfer itself."""

    def run(pair: Pair, out: Path, repeats: int) -> list[float]:
        src, ref = read_rgb(pair.content), read_rgb(pair.reference)
        _, runs, result = median_time(lambda: ColorMatcher().transfer(src=src, ref=ref, method=method), repeats)
        write_rgb(out, np.clip(result, 0.0, 1.0))
        return runs

    return run


def fast_grade(pair: Pair, out: Path, repeats: int) -> list[float]:
    """``grade`` fast mode through the library; timed: fit + render from its report."""
    runs = []
    for _ in range(max(1, repeats)):
        report = grade_file(pair.content, pair.reference, GradeOptions(mode="fast", force=True), output=out)
        runs.append(report.seconds["fit"] + report.seconds["render"])
    return runs


GRADERS: dict[str, Grader] = {
    "mkl": color_matcher_grade("mkl"),
    "hm-mkl-hm": color_matcher_grade("hm-mkl-hm"),
    "fast": fast_grade,
}


def thumbnail(path: Path, label: str) -> np.ndarray:
    """A labelled RGB uint8 thumbnail, THUMB_HEIGHT high (plus a label strip)."""
    rgb = read_rgb(path)
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (max(1, round(w * THUMB_HEIGHT / h)), THUMB_HEIGHT), interpolation=cv2.INTER_AREA)
    small = (np.clip(small, 0, 1) * 255 + 0.5).astype(np.uint8)
    strip = np.full((16, small.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, label, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([strip, small])


def contact_sheet(rows: list[list[np.ndarray]], gap: int = 4) -> np.ndarray:
    """Rows of thumbnails, left-aligned on a white background."""
    width = max(sum(t.shape[1] for t in r) + gap * (len(r) + 1) for r in rows)
    bands = []
    for r in rows:
        band = np.full((r[0].shape[0] + gap, width, 3), 255, np.uint8)
        x = gap
        for t in r:
            band[gap:, x : x + t.shape[1]] = t
            x += t.shape[1] + gap
        bands.append(band)
    return np.vstack([*bands, np.full((gap, width, 3), 255, np.uint8)])


def mean_rows(results: list[Result]) -> list[list[object]]:
    rows: list[list[object]] = []
    for method in METHODS:
        mine = [r for r in results if r.method == method]
        cells: list[object] = [f"mean {method}"]
        for metric in METRICS:
            values = [r.scores[metric] for r in mine if metric in r.scores]
            cells.append(statistics.fmean(values) if values else None)
        secs = [r.seconds for r in mine if r.seconds is not None]
        cells.append(statistics.fmean(secs) if secs else None)
        rows.append(cells)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--sheet", type=Path, metavar="PATH", help="also write a contact sheet PNG here")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method and pair (median)")
    parser.add_argument("--pairs", nargs="*", metavar="NN", help="only these pairs (e.g. 03 34)")
    args = parser.parse_args(argv)
    shared = shared_dir(args.shared)
    pairs = [p for p in find_pairs(shared / "samples" / "pairs") if not args.pairs or p.name in args.pairs]
    if not pairs:
        sys.exit("no pairs found")
    info = system_info()
    print_system(info)

    results: list[Result] = []
    sheet_rows: list[list[np.ndarray]] = []
    with tempfile.TemporaryDirectory(prefix="grade-bench-") as tmp:
        for pair in pairs:
            graded: dict[str, Path] = {"content": pair.content}
            runs: dict[str, list[float]] = {"content": []}
            for method, grader in GRADERS.items():
                graded[method] = Path(tmp) / f"{pair.name}_{method}.png"
                runs[method] = grader(pair, graded[method], args.repeats)
            for method in METHODS:
                masks = (pair.content_mask, pair.reference_mask)
                scores = evaluate_pair(shared, graded[method], pair.content, pair.reference, *masks)
                median = statistics.median(runs[method]) if runs[method] else None
                results.append(Result(pair.name, method, median, runs[method], scores))
            if args.sheet:
                sheet_rows.append(
                    [thumbnail(pair.content, f"{pair.name} content"), thumbnail(pair.reference, "reference")]
                    + [thumbnail(graded[m], m) for m in METHODS[1:]]
                )
            print(f"pair {pair.name} done", file=sys.stderr)

    rows = [[r.pair, r.method, *(r.scores.get(m) for m in METRICS), r.seconds] for r in results]
    print()
    print(table(["pair", "method", *METRICS, "seconds"], rows))
    print()
    print(table(["method", *METRICS, "seconds"], mean_rows(results)))
    n_region = len({r.pair for r in results if "region" in r.scores})
    print(
        f"\n{len(pairs)} pairs (region: the {n_region} with masks). look/region: lower is better; "
        f"structure: higher; affine: lower.\nseconds (median of {args.repeats}): mkl/hm-mkl-hm = transfer; "
        "fast = fit + render (report.seconds; render includes PNG encoding)."
    )

    if args.sheet:
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.sheet), cv2.cvtColor(contact_sheet(sheet_rows), cv2.COLOR_RGB2BGR))
        print(f"contact sheet: {args.sheet}")
    save_json(args.json, {"system": info, "results": [asdict(r) for r in results]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
