"""Cut detection of ``grade.shots.detect_shots`` against PySceneDetect's published outputs.

On ``<shared>/samples/video/01_psd_testvideo.mp4`` (PySceneDetect's own test video) the detected
cuts (the start frame of every shot but the first) are matched one to one with the cuts that
PySceneDetect's Adaptive, Content and Histogram detectors produce with default settings (stored
beside it as ``testvideo.mp4.<Detector>.default.json``), within ``--tolerance`` frames, giving
precision and recall per reference. It also reports the analysis time (median of ``--repeats``)
and frames per second, the key frame chosen for each shot, and runs on ``04_cotracker_bear.mp4``,
a single handheld shot (one shot expected).

Run::

    python benchmarks/shots.py [--tolerance 2] [--repeats 3] [--json shots.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from common import make_parser, median_time, print_system, save_json, shared_dir, system_info, table

from grade.shots import ShotList, detect_shots

VIDEOS = Path("samples/video")
CUTS_VIDEO = "01_psd_testvideo.mp4"
ONE_SHOT_VIDEO = "04_cotracker_bear.mp4"
DETECTORS = ("AdaptiveDetector", "ContentDetector", "HistogramDetector")


def match_cuts(detected: list[int], reference: list[int], tolerance: int) -> list[tuple[int, int]]:
    """One-to-one pairs ``(detected, reference)`` at most ``tolerance`` frames apart, closest first."""
    candidates = sorted((abs(d - r), d, r) for d in detected for r in reference if abs(d - r) <= tolerance)
    used_d: set[int] = set()
    used_r: set[int] = set()
    pairs = []
    for _, d, r in candidates:
        if d not in used_d and r not in used_r:
            used_d.add(d)
            used_r.add(r)
            pairs.append((d, r))
    return sorted(pairs)


def analyse(path: Path, repeats: int) -> tuple[ShotList, float, list[float]]:
    seconds, runs, result = median_time(lambda: detect_shots(path), repeats)
    return result, seconds, runs


def shot_rows(result: ShotList) -> list[list[object]]:
    return [
        [s.index, s.start, s.end, s.frames, f"{s.start_tc}-{s.end_tc}", s.key_frame, s.key_tc] for s in result.shots
    ]


def report_video(name: str, result: ShotList, seconds: float, runs: list[float]) -> dict[str, Any]:
    print(
        f"\n{name}: {result.frames} frames, {len(result.shots)} shots, analysis {seconds:.2f} s "
        f"(median of {len(runs)}), {result.frames / seconds:.0f} frames/s"
    )
    print(table(["shot", "start", "end", "frames", "timecode", "key frame", "key tc"], shot_rows(result)))
    return {
        "frames": result.frames,
        "seconds": seconds,
        "runs": runs,
        "fps": result.frames / seconds,
        "shots": [s.model_dump() for s in result.shots],
    }


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--tolerance", type=int, default=2, help="frames a cut may be off (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed analyses per video (median, default 3)")
    args = parser.parse_args(argv)
    videos = shared_dir(args.shared) / VIDEOS
    info = system_info()
    print_system(info)
    raw: dict[str, Any] = {"system": info, "tolerance": args.tolerance}

    result, seconds, runs = analyse(videos / CUTS_VIDEO, args.repeats)
    raw[CUTS_VIDEO] = report_video(CUTS_VIDEO, result, seconds, runs)
    detected = [s.start for s in result.shots][1:]
    rows, comparisons = [], {}
    for detector in DETECTORS:
        reference = json.loads((videos / f"testvideo.mp4.{detector}.default.json").read_text())["cuts"]
        pairs = match_cuts(detected, reference, args.tolerance)
        matched_d, matched_r = {d for d, _ in pairs}, {r for _, r in pairs}
        precision = len(pairs) / len(detected) if detected else float("nan")
        recall = len(pairs) / len(reference) if reference else float("nan")
        missed = [r for r in reference if r not in matched_r]
        extra = [d for d in detected if d not in matched_d]
        rows.append(
            [
                detector,
                " ".join(map(str, reference)),
                len(pairs),
                precision,
                recall,
                " ".join(map(str, missed)) or "-",
                " ".join(map(str, extra)) or "-",
            ]
        )
        comparisons[detector] = {
            "reference": reference,
            "matched": pairs,
            "precision": precision,
            "recall": recall,
            "missed": missed,
            "extra": extra,
        }
    raw[CUTS_VIDEO].update(detected=detected, comparisons=comparisons)
    print(f"\ndetected cuts: {' '.join(map(str, detected)) or '-'}  (match within +-{args.tolerance} frames)")
    print(table(["reference", "cuts", "matched", "precision", "recall", "missed", "extra"], rows))

    result, seconds, runs = analyse(videos / ONE_SHOT_VIDEO, args.repeats)
    raw[ONE_SHOT_VIDEO] = report_video(ONE_SHOT_VIDEO, result, seconds, runs)
    ok = len(result.shots) == 1
    print(f"one shot expected: {'yes' if ok else f'NO ({len(result.shots)} shots)'}")
    save_json(args.json, raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
