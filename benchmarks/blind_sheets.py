"""Blind judging of grades (issue #8): unlabelled sheets for a judge, and the key decoded afterwards.

``make`` reads the pictures that ``quality.py --keep DIR`` kept (``NN_content.png``,
``NN_reference.*``, ``NN_<method>.png``; several folders may be given, e.g. the sample pairs and
``--bundled``) and writes one sheet per pair, in random order: the original and the reference on top,
and the grades of ``--methods`` below as A, B, C... in a random order of their own. The key
(``key.json``, sheet -> pair and letter -> method) is written beside the sheets; the judge must not see it.

``decode`` reads the judge's scores, a JSON object ``{"sheet01": {"A": 3, "B": 4, "C": 2, "best": "B"},
...}`` (1-5 as for a client; ``best`` the one they would ship, optional: without it every top score
counts), and prints the scores per pair and method, and per method the mean score, on how many sheets
it was best and worst, and how many it got 4 or more on (deliverable).

    python benchmarks/blind_sheets.py make KEEP [KEEP ...] --out SHEETS [--seed N] [--methods fast,hm-mkl-hm,learned]
    python benchmarks/blind_sheets.py decode SHEETS/key.json SCORES.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

import cv2
import numpy as np
from common import table

HEIGHT = 300  # pixels of each picture on a sheet
METHODS = "fast,hm-mkl-hm,learned"


def _labelled(path: Path, label: str) -> np.ndarray:
    img = cv2.imread(str(path))
    if img is None:
        raise SystemExit(f"cannot read {path}")
    img = cv2.resize(img, (round(img.shape[1] * HEIGHT / img.shape[0]), HEIGHT), interpolation=cv2.INTER_AREA)
    band = np.full((28, img.shape[1], 3), 255, np.uint8)
    cv2.putText(band, label, (6, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
    return np.vstack([band, img])


def _row(images: list[np.ndarray], width: int) -> np.ndarray:
    gap = np.full((images[0].shape[0], 8, 3), 255, np.uint8)
    parts = [p for img in images for p in (img, gap)][:-1]
    row = np.hstack(parts)
    return np.hstack([row, np.full((row.shape[0], width - row.shape[1], 3), 255, np.uint8)])


def _pairs(folder: Path, methods: list[str]) -> dict[str, dict[str, Path]]:
    found = {}
    for content in sorted(folder.glob("*_content.png")):
        name = content.name[: -len("_content.png")]
        refs = sorted(folder.glob(f"{name}_reference.*"))
        graded = {m: folder / f"{name}_{m}.png" for m in methods}
        if refs and all(p.exists() for p in graded.values()):
            found[name] = {"content": content, "reference": refs[0], **graded}
    return found


def make(folders: list[Path], out: Path, methods: list[str], seed: int) -> None:
    rng = random.Random(seed)
    pairs: dict[str, dict[str, Path]] = {}
    for folder in folders:
        pairs.update(_pairs(folder, methods))
    if not pairs:
        raise SystemExit(f"no pair with all of {', '.join(methods)} in {', '.join(map(str, folders))}")
    order = list(pairs)
    rng.shuffle(order)
    out.mkdir(parents=True, exist_ok=True)
    key = {}
    for n, name in enumerate(order, 1):
        letters = [chr(ord("A") + i) for i in range(len(methods))]
        shuffled = methods[:]
        rng.shuffle(shuffled)
        top = [_labelled(pairs[name]["content"], "original"), _labelled(pairs[name]["reference"], "reference")]
        bottom = [_labelled(pairs[name][m], letter) for letter, m in zip(letters, shuffled)]
        width = max(sum(i.shape[1] + 8 for i in row) - 8 for row in (top, bottom))
        sheet = f"sheet{n:02d}"
        gap = np.full((12, width, 3), 255, np.uint8)
        cv2.imwrite(str(out / f"{sheet}.png"), np.vstack([_row(top, width), gap, _row(bottom, width)]))
        key[sheet] = {"pair": name, **dict(zip(letters, shuffled))}
    (out / "key.json").write_text(json.dumps(key, indent=1))
    print(f"{len(order)} sheets in {out}; the key is {out / 'key.json'} (keep it from the judge)")


def decode(key_path: Path, scores_path: Path) -> None:
    key, scores = json.loads(key_path.read_text()), json.loads(scores_path.read_text())
    methods = sorted({m for entry in key.values() for k, m in entry.items() if k != "pair"})
    per: dict[str, dict[str, int]] = {}
    best: dict[str, list[str]] = {}
    for sheet, entry in sorted(key.items(), key=lambda kv: kv[1]["pair"]):
        given = scores.get(sheet)
        if given is None:
            raise SystemExit(f"no scores for {sheet}")
        per[entry["pair"]] = {entry[letter]: int(v) for letter, v in given.items() if letter != "best"}
        if given.get("best"):
            best[entry["pair"]] = [entry[given["best"]]]
        else:
            top = max(per[entry["pair"]].values())
            best[entry["pair"]] = [m for m, v in per[entry["pair"]].items() if v == top]
    rows = [[pair, *(per[pair][m] for m in methods), ", ".join(best[pair])] for pair in per]
    print(table(["pair", *methods, "best"], rows))
    summary = []
    for m in methods:
        got = [per[p][m] for p in per]
        worst = sum(1 for p in per if per[p][m] == min(per[p].values()) and len(set(per[p].values())) > 1)
        summary.append(
            [m, statistics.fmean(got), sum(m in best[p] for p in per), worst, sum(v >= 4 for v in got), len(got)]
        )
    print()
    print(table(["method", "mean score", "best on", "worst on", "deliverable (>= 4)", "sheets"], summary))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    mk = sub.add_parser("make", help="write the sheets and their key")
    mk.add_argument("folders", type=Path, nargs="+", help="folders that quality.py --keep wrote")
    mk.add_argument("--out", type=Path, required=True)
    mk.add_argument("--methods", default=METHODS)
    mk.add_argument("--seed", type=int, default=0)
    dec = sub.add_parser("decode", help="decode a judge's scores with the key")
    dec.add_argument("key", type=Path)
    dec.add_argument("scores", type=Path)
    args = parser.parse_args(argv)
    if args.command == "make":
        make(args.folders, args.out, [m for m in args.methods.split(",") if m], args.seed)
    else:
        decode(args.key, args.scores)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
