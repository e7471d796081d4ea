"""Footage as it comes from an edit: black frames, fades, dissolves and title cards.

The input is ``<shared>/samples/video/01_psd_testvideo.mp4`` (PySceneDetect's test video: nature
footage with cuts, fades to and from black, title cards on black and a dissolve around frames
529-558). It is first transcoded with PyAV, all its frames, to a lossless FFV1 .mkv at ``--width``
(default 480, aspect kept, even height) in a scratch folder; that clip is graded through the library,
``grade_file(clip, reference, GradeOptions(...))``, against one reference still (``--reference``,
default ``<shared>/samples/pairs/28_reference.png``, an autumn photo), in four configurations:

* ``fast`` and ``learned``: one look per shot (learned with ``--steps`` training steps, default 40);
* ``fast scene`` and ``learned scene``: the same with ``save_preset``/``library``/``force_preset``
  (one look for the whole file, saved to a scratch library).

Source and outputs are decoded with PyAV (rgb24) and converted to CIELAB (``grade.color.srgb_to_lab``);
per configuration (and, as the baseline, for the ungraded source itself):

* the reference's **black level**: L* at its 1st percentile, and the median a*, b* of its darkest 2 %;
* **black frames**: source frames whose mean luma (RGB mean, 0-255) is below 4 (black, and title
  cards on black). Their count; the median over them of ΔE2000 (``grade.color.delta_e2000``) between
  the output frame's median Lab and the reference's black level (``black ΔE``); the largest output
  99th-percentile L* above the black level's L* (``brighter by``: lifted blacks, or text); the median
  of the output frames' median chroma C*ab (``black fog``: a colour cast on black);
* **fades**: runs of >= 6 source frames whose mean L* changes in one direction by more than 0.5 L* at
  every step, and whose dark end (or the frame just beyond it) is near black (mean luma < 8). On the
  output's mean L* over the same frames, a step going the wrong way by more than 0.3 L* is a
  violation (``fade viol.``: violating steps / all steps of all fades), and ``fade fog`` is the median
  of the output frames' median chroma over the darkest third of each fade (median over all fades);
* frames graded (the report's ``frames``) and the wall seconds of ``grade_file``.

It also runs ``grade.shots.detect_shots`` on the clip: our shots (start, end, key frame, flat) and
transitions, and our cuts (the start of every shot but the first) matched one to one within
``--tolerance`` frames (default 2) with PySceneDetect's published cuts
(``testvideo.mp4.<Detector>.default.json`` beside the clip): matched, missed and extra per detector.
Our shots also start at black runs and title cards and split dissolves, so extra cuts are expected
there: each of our cuts is listed with the edit event (black/title run, fade, dissolve) it falls in.

Before and after: ``--label NAME`` (default ``now``) names the run in the tables and the JSON, and the
script runs against another source tree of the package through ``PYTHONPATH`` (a git worktree of an
older commit): names that older code may lack are looked up with defaults, and only the
``GradeOptions`` fields both have are passed. The header prints where ``grade`` was imported from.

Run (from the repository root; ~3-4 min on 2 cores at the defaults)::

    python benchmarks/edits.py [--width 480] [--steps 40] [--label now] [--json edits.json]
    git worktree add /tmp/before <commit>
    PYTHONPATH=/tmp/before python benchmarks/edits.py --label before --json edits_before.json
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from common import ffv1_copy, fmt, make_parser, print_system, save_json, shared_dir, system_info, table
from shots import match_cuts

VIDEO = Path("samples/video/01_psd_testvideo.mp4")
REFERENCE = Path("samples/pairs/28_reference.png")
DETECTORS = ("AdaptiveDetector", "ContentDetector", "HistogramDetector")
# (name, mode, one look for the whole file)
CONFIGS = (
    ("fast", "fast", False),
    ("learned", "learned", False),
    ("fast scene", "fast", True),
    ("learned scene", "learned", True),
)
PRESET = "bench-scene"
BLACK_LUMA = 4.0  # a source frame whose mean RGB (0-255) is below this is a black frame
NEAR_BLACK_LUMA = 8.0  # a fade's dark end must be below this
FADE_MIN_FRAMES = 6
FADE_STEP = 0.5  # L*: every step of a fade in the source changes the mean L* by more than this
WRONG_STEP = 0.3  # L*: an output step going the other way by more than this is a violation
TITLE_P99 = 5.0  # L*: a black run whose frames reach a 99th-percentile L* above this holds text (a title card)
DISSOLVE = (529, 559)  # the test video's dissolve, frames [start, end)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- material


def transcode(source: Path, target: Path, width: int) -> dict[str, Any]:
    """All frames of ``source`` at ``width`` (if smaller; aspect kept, even height) as lossless FFV1 .mkv."""
    return ffv1_copy(source, target, width)


def reference_black(path: Path) -> dict[str, float]:
    """The reference's black level: L* at its 1st percentile, median a*, b* of its darkest 2 %."""
    from grade.color import srgb_to_lab

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read the reference: {path}")
    lab = srgb_to_lab(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float64) / 255.0).reshape(-1, 3)
    dark = lab[lab[:, 0] <= np.percentile(lab[:, 0], 2)]
    return {
        "L": float(np.percentile(lab[:, 0], 1)),
        "a": float(np.median(dark[:, 1])),
        "b": float(np.median(dark[:, 2])),
    }


def frame_stats(path: Path) -> dict[str, np.ndarray]:
    """Per frame of a video: mean luma (RGB mean, 0-255), mean L*, median L*a*b* (per channel),
    99th-percentile L*, median chroma C*ab."""
    from grade.color import srgb_to_lab

    rows = []
    with av.open(str(path)) as box:
        stream = box.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in box.decode(stream):
            rgb = frame.to_ndarray(format="rgb24")
            lab = srgb_to_lab(rgb / 255.0).reshape(-1, 3)
            chroma = np.hypot(lab[:, 1], lab[:, 2])
            med = np.median(lab, axis=0)
            rows.append(
                (rgb.mean(), lab[:, 0].mean(), med[0], med[1], med[2], np.percentile(lab[:, 0], 99), np.median(chroma))
            )
    a = np.asarray(rows, dtype=np.float64).reshape(-1, 7)
    return {
        "luma": a[:, 0],
        "L": a[:, 1],
        "median_lab": a[:, 2:5],
        "p99_L": a[:, 5],
        "chroma": a[:, 6],
    }


# ---------------------------------------------------------------- edit events of the source


def runs_of(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs ``[start, end)`` where ``mask`` is true."""
    runs, start = [], None
    for i, m in enumerate(mask):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(mask)))
    return runs


def black_runs(src: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Runs of black frames in the source, ``title`` where they hold text (a title card), else ``black``."""
    out = []
    for s, e in runs_of(src["luma"] < BLACK_LUMA):
        kind = "title" if float(src["p99_L"][s:e].max()) > TITLE_P99 else "black"
        out.append({"kind": kind, "start": s, "end": e})
    return out


def find_fades(src: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Runs of >= FADE_MIN_FRAMES source frames whose mean L* moves one way by more than FADE_STEP at
    every step, with a near-black dark end (the run's darkest frame or the one just beyond it)."""
    mean_l, luma = src["L"], src["luma"]
    steps = np.diff(mean_l)
    fades = []
    for sign, kind in ((1, "fade-in"), (-1, "fade-out")):
        for s, e in runs_of(sign * steps > FADE_STEP):  # steps [s, e) join frames s .. e
            first, last = s, e  # frames [first, last] inclusive
            if last - first + 1 < FADE_MIN_FRAMES:
                continue
            dark, beyond = (first, first - 1) if sign > 0 else (last, last + 1)
            near = luma[dark] < NEAR_BLACK_LUMA or (0 <= beyond < len(luma) and luma[beyond] < NEAR_BLACK_LUMA)
            if near:
                fades.append({"kind": kind, "start": first, "end": last + 1})
    return sorted(fades, key=lambda f: f["start"])


# ---------------------------------------------------------------- metrics


def black_metrics(src: dict[str, np.ndarray], out: dict[str, np.ndarray], black: dict[str, float]) -> dict[str, Any]:
    from grade.color import delta_e2000

    idx = np.flatnonzero(src["luma"] < BLACK_LUMA)
    idx = idx[idx < len(out["luma"])]
    if len(idx) == 0:
        return {"frames": 0, "delta_e": None, "brighter_by": None, "fog": None}
    level = np.array([black["L"], black["a"], black["b"]])
    de = delta_e2000(out["median_lab"][idx], level)
    return {
        "frames": len(idx),
        "delta_e": float(np.median(de)),
        "brighter_by": float((out["p99_L"][idx] - black["L"]).max()),
        "fog": float(np.median(out["chroma"][idx])),
    }


def fade_metrics(src: dict[str, np.ndarray], out: dict[str, np.ndarray], fades: list[dict[str, Any]]) -> dict[str, Any]:
    per_fade, violations, steps, fogs = [], 0, 0, []
    for f in fades:
        s, e = f["start"], min(f["end"], len(out["L"]))
        if e - s < 2:
            continue
        sign = 1 if f["kind"] == "fade-in" else -1
        d = sign * np.diff(out["L"][s:e])
        bad = int((d < -WRONG_STEP).sum())
        third = max(1, -(-(e - s) // 3))
        darkest = slice(s, s + third) if sign > 0 else slice(e - third, e)
        fog = float(np.median(out["chroma"][darkest]))
        bright = float(out["chroma"][e - 1 if sign > 0 else s])  # for scale: the look's chroma, undarkened
        per_fade.append(
            {
                **f,
                "steps": len(d),
                "violations": bad,
                "fog": fog,
                "bright_chroma": bright,
                "out_L": out["L"][s:e].round(2).tolist(),
            }
        )
        violations += bad
        steps += len(d)
        fogs.append(fog)
    return {
        "fades": per_fade,
        "steps": steps,
        "violations": violations,
        "violation_rate": violations / steps if steps else None,
        "fog": float(np.median(fogs)) if fogs else None,
    }


# ---------------------------------------------------------------- grading


def grade_config(
    clip: Path, reference: Path, work: Path, name: str, mode: str, scene: bool, steps: int
) -> tuple[Path, float, int, list[str]]:
    """Grade ``clip`` in one configuration; the output, wall seconds, frames graded and warnings."""
    from grade.pipeline import GradeOptions, grade_file

    extra: dict[str, Any] = {}
    if mode == "learned":
        extra["steps"] = steps
    if scene:
        extra.update(save_preset=PRESET, library=work / "library", force_preset=True)
    options = GradeOptions(mode=mode, force=True, codec="ffv1", **extra)
    out = work / f"{name.replace(' ', '_')}.mkv"
    t = time.perf_counter()
    report = grade_file(clip, reference, options, output=out)
    seconds = time.perf_counter() - t
    return out, seconds, report.frames, list(getattr(report, "warnings", []))


# ---------------------------------------------------------------- shots


def events_at(frame: int, events: list[dict[str, Any]], tolerance: int) -> str:
    """The edit events (``kind a-b``) a cut at ``frame`` falls in or borders (within ``tolerance``)."""
    hits = [
        f"{e['kind']} {e['start']}-{e['end'] - 1}"
        for e in events
        if e["start"] - tolerance <= frame < e["end"] + tolerance
    ]
    return ", ".join(hits) or "-"


def compare_shots(clip: Path, videos: Path, events: list[dict[str, Any]], tolerance: int) -> dict[str, Any]:
    from grade.shots import detect_shots

    t = time.perf_counter()
    result = detect_shots(clip)
    seconds = time.perf_counter() - t
    transitions = list(getattr(result, "transitions", []) or [])
    shots = [
        {"index": s.index, "start": s.start, "end": s.end, "key_frame": s.key_frame, "flat": getattr(s, "flat", None)}
        for s in result.shots
    ]
    trans = [{"kind": t.kind, "start": t.start, "end": t.end} for t in transitions]
    print(f"\nour shots ({len(shots)}, analysis {seconds:.1f} s)")
    print(
        table(
            ["shot", "start", "end", "frames", "key frame", "flat", "starts at"],
            [
                [
                    s["index"],
                    s["start"],
                    s["end"],
                    s["end"] - s["start"],
                    s["key_frame"],
                    "-" if s["flat"] is None else ("yes" if s["flat"] else "no"),
                    events_at(s["start"], events, tolerance) if s["index"] else "",
                ]
                for s in shots
            ],
        )
    )
    if transitions:
        print("\nour transitions")
        print(
            table(
                ["kind", "start", "end", "frames"],
                [[t["kind"], t["start"], t["end"], t["end"] - t["start"]] for t in trans],
            )
        )
    else:
        print("\nour transitions: none (or not reported by this version)")

    detected = [s["start"] for s in shots][1:]
    rows, comparisons, matched_by = [], {}, {d: [] for d in detected}
    for detector in DETECTORS:
        reference = json.loads((videos / f"testvideo.mp4.{detector}.default.json").read_text())["cuts"]
        pairs = match_cuts(detected, reference, tolerance)
        matched_d, matched_r = {d for d, _ in pairs}, {r for _, r in pairs}
        missed = [r for r in reference if r not in matched_r]
        extra = [d for d in detected if d not in matched_d]
        for d in matched_d:
            matched_by[d].append(detector.removesuffix("Detector"))
        rows.append(
            [
                detector,
                " ".join(map(str, reference)),
                len(pairs),
                " ".join(map(str, missed)) or "-",
                " ".join(map(str, extra)) or "-",
            ]
        )
        comparisons[detector] = {"reference": reference, "matched": pairs, "missed": missed, "extra": extra}
    print(f"\nour cuts: {' '.join(map(str, detected)) or '-'}  (matched within +-{tolerance} frames)")
    print(table(["PySceneDetect", "cuts", "matched", "missed", "extra (ours)"], rows))
    cut_rows = [[d, " ".join(matched_by[d]) or "-", events_at(d, events, tolerance)] for d in detected]
    print("\nour cuts and the edit events they fall in (source: black/title runs, fades; the dissolve)")
    print(table(["cut", "matched by", "at"], cut_rows))
    raw = {
        "seconds": seconds,
        "shots": shots,
        "transitions": trans,
        "cuts": detected,
        "comparisons": comparisons,
        "cuts_at": {str(d): {"matched_by": matched_by[d], "at": events_at(d, events, tolerance)} for d in detected},
    }
    return raw


# ---------------------------------------------------------------- main


def grade_source() -> dict[str, Any]:
    """Where ``grade`` is imported from, its version and (if it is a git checkout) its commit."""
    import grade

    root = Path(grade.__file__).resolve().parents[1]
    done = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return {
        "file": grade.__file__,
        "version": getattr(grade, "__version__", None),
        "commit": done.stdout.strip() if done.returncode == 0 else None,
    }


def metric_row(label: str, name: str, m: dict[str, Any]) -> list[Any]:
    b, f = m["black"], m["fades"]
    return [
        name,
        label,
        m.get("frames", "-"),
        m.get("seconds"),
        b["frames"],
        b["delta_e"],
        b["brighter_by"],
        b["fog"],
        f"{len(f['fades'])}/{f['steps']}",
        f"{f['violations']} ({fmt(f['violation_rate'], 2)})",
        f["fog"],
    ]


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--reference", type=Path, help=f"reference still (default: <shared>/{REFERENCE})")
    parser.add_argument("--width", type=int, default=480, help="width of the transcoded clip (default 480)")
    parser.add_argument("--steps", type=int, default=40, help="learned mode: training steps per look (default 40)")
    parser.add_argument("--tolerance", type=int, default=2, help="frames a cut may be off (default 2)")
    parser.add_argument("--label", default="now", help="name of this run in the tables and the JSON (default now)")
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=[c[0].replace(" ", "-") for c in CONFIGS],
        help="configurations to run (default: all; fast, learned, fast-scene, learned-scene)",
    )
    args = parser.parse_args(argv)
    shared = shared_dir(args.shared)
    source = shared / VIDEO
    reference = (args.reference or shared / REFERENCE).expanduser().resolve()
    if not source.is_file():
        sys.exit(f"missing {source}")
    configs = [c for c in CONFIGS if not args.configs or c[0].replace(" ", "-") in args.configs]

    info = system_info()
    print_system(info)
    where = grade_source()
    print(f"label {args.label}  grade {where['version']} from {where['file']} (commit {where['commit'] or '-'})")
    black = reference_black(reference)
    print(
        f"reference {reference.name}: black level L* {black['L']:.2f} (1st percentile), "
        f"a* {black['a']:.2f} b* {black['b']:.2f} (median of the darkest 2 %)"
    )
    raw: dict[str, Any] = {
        "system": info,
        "label": args.label,
        "grade": where,
        "reference": str(reference),
        "black_level": black,
        "width": args.width,
        "steps": args.steps,
        "tolerance": args.tolerance,
        "configs": {},
    }

    with tempfile.TemporaryDirectory(prefix="grade-edits-") as tmp:
        work = Path(tmp)
        clip = work / "clip.mkv"
        t = time.perf_counter()
        raw["clip"] = transcode(source, clip, args.width)
        c = raw["clip"]
        print(
            f"clip {source.name} -> {c['width']}x{c['height']} FFV1, {c['frames']} frames at {c['fps']:.3f} fps "
            f"(transcode {time.perf_counter() - t:.1f} s)"
        )
        src = frame_stats(clip)
        runs = black_runs(src)
        fades = find_fades(src)
        events = [*runs, *fades, {"kind": "dissolve", "start": DISSOLVE[0], "end": DISSOLVE[1]}]
        events.sort(key=lambda e: (e["start"], e["end"]))
        raw["events"] = events
        print("source edit events: " + ", ".join(f"{e['kind']} {e['start']}-{e['end'] - 1}" for e in events))

        raw["shots"] = compare_shots(clip, shared / VIDEO.parent, events, args.tolerance)

        results = {"source": {"black": black_metrics(src, src, black), "fades": fade_metrics(src, src, fades)}}
        for name, mode, scene in configs:
            log(f"[{args.label}] grading: {name}")
            out, seconds, frames, warnings = grade_config(clip, reference, work, name, mode, scene, args.steps)
            stats = frame_stats(out)
            results[name] = {
                "frames": frames,
                "seconds": seconds,
                "warnings": warnings,
                "black": black_metrics(src, stats, black),
                "fades": fade_metrics(src, stats, fades),
            }
            log(f"[{args.label}] {name}: {frames} frames in {seconds:.1f} s")
            out.unlink(missing_ok=True)
        raw["configs"] = results

    headers = [
        "config",
        "label",
        "frames",
        "seconds",
        "black frames",
        "black ΔE",
        "brighter by",
        "black fog C*",
        "fades/steps",
        "fade viol.",
        "fade fog C*",
    ]
    print(
        f"\nmetrics ({args.label}; black level L* {black['L']:.2f} a* {black['a']:.2f} b* {black['b']:.2f}; "
        f"the source row is the ungraded clip)"
    )
    print(table(headers, [metric_row(args.label, name, m) for name, m in results.items()]))
    fade_rows = []
    for name, m in results.items():
        for f in m["fades"]["fades"]:
            fade_rows.append(
                [
                    name,
                    f"{f['kind']} {f['start']}-{f['end'] - 1}",
                    f["steps"],
                    f["violations"],
                    f["fog"],
                    f["bright_chroma"],
                ]
            )
    print(
        f"\nfades ({args.label}): wrong-way steps (> {WRONG_STEP} L*), fog of the darkest third, and for scale the "
        "median chroma of the fade's brightest frame"
    )
    print(table(["config", "fade", "steps", "violations", "fog C*", "bright end C*"], fade_rows))
    for name, m in results.items():
        for w in m.get("warnings", []):
            print(f"warning ({name}): {w}")
    save_json(args.json, raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
