"""Quality of ``grade``'s fast and learned modes on still pairs, against classical colour transfer.

For every pair ``NN_content.*`` / ``NN_reference.*`` in ``<shared>/samples/pairs`` (with the
optional ``NN_content_seg.png`` / ``NN_reference_seg.png`` semantic masks) it grades the content
with each of ``--methods`` (default: all):

* ``content``    ungraded (the content itself: the starting point);
* ``mkl``        Monge-Kantorovich linear transfer in RGB (color-matcher), clipped to [0, 1];
* ``hm-mkl-hm``  histogram match, MKL, histogram match (color-matcher), clipped;
* ``fast``       ``grade.pipeline.grade_file(..., GradeOptions(mode="fast"))``;
* ``learned``    ``grade.pipeline.grade_file(..., GradeOptions(mode="learned"))`` (trains a look per
  pair, ~20 s on 2 cores: leave it out of ``--methods`` for a quick run).

Each result is scored by ``<shared>/eval/gradeeval.py pair`` (look and region: distance to the
reference's colours, lower is better; structure: edges kept, 1 is best; affine: residual of the
best local affine colour map, 0 is photorealistic). Printed: a per-pair table, the mean per
method, the time each method took per pair (for ``fast`` and ``learned``: fit + render from the
report; ``learned`` runs once, it is deterministic), the learned mode's training seconds
(``report.seconds["fit"]``: the fast fit plus training), and the learned mode's targets, met or not.

Run (needs the ``bench`` extra: ``pip install -e .[bench]``)::

    python benchmarks/quality.py [--methods content,mkl,fast] [--sheet sheet.png] [--json quality.json] [--keep DIR]
"""

from __future__ import annotations

import shutil
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

METHODS = ("content", "mkl", "hm-mkl-hm", "fast", "learned")
METRICS = ("look", "region", "wash", "structure", "affine")
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
    train_seconds: float | None = None  # learned: report.seconds["fit"] (fast fit + training)


def bundled_pairs(folder: Path) -> list[Pair]:
    """The bundled sample's shot key frames (written into ``folder``) against its reference still:
    material the project may redistribute, for the contact sheet committed under ``benchmarks/``."""
    from grade.shots import detect_shots

    root = Path(__file__).resolve().parents[1] / "samples"
    pairs = []
    for n, key in enumerate(detect_shots(root / "sample.mp4").keys, 1):
        content = folder / f"sample{n}_content.png"
        cv2.imwrite(str(content), cv2.cvtColor(key, cv2.COLOR_RGB2BGR))
        pairs.append(Pair(f"sample{n}", content, root / "reference.jpg", None, None))
    return pairs


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


@dataclass
class Graded:
    """What a grader did for one pair: the seconds of each timed run, and the training seconds."""

    runs: list[float]
    train_seconds: float | None = None


# A grader writes its result for ``pair`` to ``out``, running ``repeats`` times (timed).
Grader = Callable[[Pair, Path, int], Graded]


def color_matcher_grade(method: str) -> Grader:
    """color-matcher ``method`` from content to reference, clipped; timed: the transfer itself."""

    def run(pair: Pair, out: Path, repeats: int) -> Graded:
        src, ref = read_rgb(pair.content), read_rgb(pair.reference)
        _, runs, result = median_time(lambda: ColorMatcher().transfer(src=src, ref=ref, method=method), repeats)
        write_rgb(out, np.clip(result, 0.0, 1.0))
        return Graded(runs)

    return run


def grade_mode(mode: str, once: bool = False) -> Grader:
    """``grade`` in ``mode`` through the library; timed: fit + render from its report (one run if ``once``)."""

    def run(pair: Pair, out: Path, repeats: int) -> Graded:
        runs, fits = [], []
        for _ in range(1 if once else max(1, repeats)):
            report = grade_file(pair.content, pair.reference, GradeOptions(mode=mode, force=True), output=out)
            runs.append(report.seconds["fit"] + report.seconds["render"])
            fits.append(report.seconds["fit"])
        return Graded(runs, statistics.median(fits) if mode == "learned" else None)

    return run


GRADERS: dict[str, Grader] = {
    "mkl": color_matcher_grade("mkl"),
    "hm-mkl-hm": color_matcher_grade("hm-mkl-hm"),
    "fast": grade_mode("fast"),
    "learned": grade_mode("learned", once=True),  # ~20 s a pair, deterministic
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


def mean_score(results: list[Result], method: str, metric: str) -> float | None:
    values = [r.scores[metric] for r in results if r.method == method and metric in r.scores]
    return statistics.fmean(values) if values else None


def mean_rows(results: list[Result], methods: list[str]) -> list[list[object]]:
    rows: list[list[object]] = []
    for method in methods:
        mine = [r for r in results if r.method == method]
        secs = [r.seconds for r in mine if r.seconds is not None]
        trains = [r.train_seconds for r in mine if r.train_seconds is not None]
        rows.append(
            [
                f"mean {method}",
                *(mean_score(results, method, m) for m in METRICS),
                statistics.fmean(secs) if secs else None,
                statistics.fmean(trains) if trains else None,
            ]
        )
    return rows


def target_rows(results: list[Result]) -> list[list[object]]:
    """The learned mode's targets: ``[target, measured, from, bound, verdict]`` (``-`` where a method was not run)."""

    def ratio(metric: str, other: str) -> tuple[float | None, str]:
        mine, theirs = mean_score(results, "learned", metric), mean_score(results, other, metric)
        if mine is None or not theirs:
            return None, f"no {metric} of learned and {other}"
        return mine / theirs, f"{mine:.3f} / {theirs:.3f}"

    trains = [r.train_seconds for r in results if r.method == "learned" and r.train_seconds is not None]
    checks = [
        ("mean region(learned) / region(hm-mkl-hm)", *ratio("region", "hm-mkl-hm"), "<= 0.85", lambda v: v <= 0.85),
        ("mean look(learned) / look(mkl)", *ratio("look", "mkl"), "<= 0.80", lambda v: v <= 0.8),
        ("mean structure(learned)", mean_score(results, "learned", "structure"), "", ">= 0.97", lambda v: v >= 0.97),
        ("mean affine(learned)", mean_score(results, "learned", "affine"), "", "<= 0.5", lambda v: v <= 0.5),
        ("median training s", statistics.median(trains) if trains else None, "", "<= 30", lambda v: v <= 30),
    ]
    return [
        [name, value, detail or "-", bound, "-" if value is None else ("met" if ok(value) else "NOT met")]
        for name, value, detail, bound, ok in checks
    ]


def parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        sys.exit(f"unknown method(s): {', '.join(unknown)} (choose from {', '.join(METHODS)})")
    return [m for m in METHODS if m in methods]  # the table's order


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--sheet", type=Path, metavar="PATH", help="also write a contact sheet PNG here")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs per method and pair (median; learned runs once)"
    )
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="also keep every graded image here (NN_method.png), e.g. for judging"
    )
    parser.add_argument("--pairs", nargs="*", metavar="NN", help="only these pairs (e.g. 03 34)")
    parser.add_argument(
        "--bundled",
        action="store_true",
        help="grade the bundled sample's key frames against its reference instead of the shared pairs "
        "(redistributable: the committed contact sheet is made this way)",
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated methods to run (default: {','.join(METHODS)})",
    )
    args = parser.parse_args(argv)
    methods = parse_methods(args.methods)
    shared = shared_dir(args.shared)
    info = system_info()
    print_system(info)

    results: list[Result] = []
    sheet_rows: list[list[np.ndarray]] = []
    with tempfile.TemporaryDirectory(prefix="grade-bench-") as tmp:
        found = bundled_pairs(Path(tmp)) if args.bundled else find_pairs(shared / "samples" / "pairs")
        pairs = [p for p in found if not args.pairs or p.name in args.pairs]
        if not pairs:
            sys.exit("no pairs found")
        for pair in pairs:
            graded: dict[str, Path] = {"content": pair.content}
            done: dict[str, Graded] = {"content": Graded([])}
            for method in (m for m in methods if m in GRADERS):
                graded[method] = Path(tmp) / f"{pair.name}_{method}.png"
                done[method] = GRADERS[method](pair, graded[method], args.repeats)
            for method in methods:
                masks = (pair.content_mask, pair.reference_mask)
                scores = evaluate_pair(shared, graded[method], pair.content, pair.reference, *masks)
                runs = done[method].runs
                median = statistics.median(runs) if runs else None
                results.append(Result(pair.name, method, median, runs, scores, done[method].train_seconds))
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                for method, path in graded.items():
                    shutil.copyfile(path, args.keep / f"{pair.name}_{method}.png")
                shutil.copyfile(pair.reference, args.keep / f"{pair.name}_reference{pair.reference.suffix}")
            if args.sheet:
                sheet_rows.append(
                    [thumbnail(pair.content, f"{pair.name} content"), thumbnail(pair.reference, "reference")]
                    + [thumbnail(graded[m], m) for m in methods if m != "content"]
                )
            print(f"pair {pair.name} done", file=sys.stderr)

    headers = [*METRICS, "seconds", "train s"]
    rows = [[r.pair, r.method, *(r.scores.get(m) for m in METRICS), r.seconds, r.train_seconds] for r in results]
    print()
    print(table(["pair", "method", *headers], rows))
    print()
    print(table(["method", *headers], mean_rows(results, methods)))
    n_region = len({r.pair for r in results if "region" in r.scores})
    print(
        f"\n{len(pairs)} pairs (region: the {n_region} with masks). look/region: lower is better; "
        f"structure: higher; affine: lower.\nseconds: median of {args.repeats} for mkl/hm-mkl-hm (transfer) "
        "and fast (fit + render), one run for learned (fit + render);\nrender includes PNG encoding."
    )
    trains = [r.train_seconds for r in results if r.train_seconds is not None]
    if trains:
        print(
            "train s: learned report.seconds['fit'] (fast fit + training); "
            f"median over pairs {statistics.median(trains):.2f} s"
        )
    if "learned" in methods:
        print()
        print(table(["learned target", "measured", "from", "bound", "verdict"], target_rows(results)))

    if args.sheet:
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.sheet), cv2.cvtColor(contact_sheet(sheet_rows), cv2.COLOR_RGB2BGR))
        print(f"contact sheet: {args.sheet}")
    save_json(
        args.json,
        {
            "system": info,
            "methods": methods,
            "results": [asdict(r) for r in results],
            "targets": target_rows(results) if "learned" in methods else None,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
