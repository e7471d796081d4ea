"""Conform benchmark: the sample EDLs end to end, and the cost of a conform against grading events one by one.

1. Each EDL in ``../shared/samples/edl`` is parsed; media are generated to match it (one clip per
   reel/clip name, 160x90, carrying the timecode the edit's source in/out need, built from frames
   of ``../shared/samples/video``) and the edit is conformed (fast look, a reference from the
   pairs). Prints events, relinked, rendered, and seconds.
2. Throughput: 20 events of ~1 s (no handles) cut from two real clips (640 px wide), graded
   (A) by ``grade conform`` (one scene: one look fitted once), (B) one by one with
   ``grade_file(event_clip, reference)`` (each fits its own look), (C) one by one with the conform's
   scene preset (render only). Medians of alternating runs; the issue's bound is A <= 1.3 x B.

    python benchmarks/conform.py [--runs 3] [--events 20] [--mode fast|learned]
"""

from __future__ import annotations

import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from common import make_parser, print_system, shared_dir, system_info, table, write_frames

from grade.conform import ConformSettings, read_edit, run_conform
from grade.pipeline import GradeOptions, grade_file


def _frames(video: Path, n: int, width: int) -> list[np.ndarray]:
    out = []
    with av.open(str(video)) as box:
        s = box.streams.video[0]
        h = round(s.codec_context.height * width / s.codec_context.width / 2) * 2
        for f in box.decode(s):
            out.append(f.to_ndarray(format="rgb24", width=width, height=h))
            if len(out) >= n:
                break
    return [out[i % len(out)] for i in range(n)]  # short clips loop


def write_clip(path: Path, frames: list[np.ndarray], rate: int, tc: str | None) -> Path:
    return write_frames(path, frames, fps=rate, options={"crf": "16", "preset": "veryfast"}, timecode=tc)


def _tc(frames: int, rate: int) -> str:
    s, f = divmod(frames, rate)
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}:{f:02d}"


def sample_edls(shared: Path, work: Path, reference: Path, pool: list[np.ndarray]) -> list[list]:
    rows = []
    for edl in sorted((shared / "samples" / "edl").glob("*.edl")):
        rate = 25 if "25fps" in edl.name else 24
        edit = read_edit(edl, rate)
        media = work / f"media-{edl.stem}"
        media.mkdir()
        needs: dict[str, tuple[int, int]] = {}  # media name -> (first, last) source timecode frame needed
        for e in edit.events:
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", (e.reel or e.name).rstrip("."))
            a, b = needs.get(name, (e.src_in, e.src_out))
            needs[name] = (min(a, e.src_in - 12), max(b, e.src_out + 12))
        for name, (a, b) in needs.items():
            n = b - a
            frames = [pool[i % len(pool)] for i in range(n)]
            write_clip(media / f"{name}.mp4", frames, rate, _tc(max(0, a), rate))
        t = time.perf_counter()
        report = run_conform(
            edl,
            work / f"out-{edl.stem}",
            ConformSettings(media=[media], look=reference, rate=rate, match=["reel", "clip"]),
            GradeOptions(mode="fast"),
        )
        seconds = time.perf_counter() - t
        done = [e for e in report.events if e.status == "done"]
        rows.append(
            [
                edl.name,
                len(edit.events),
                sum(e.transition_in is not None for e in edit.events),
                sum(e.cdl is not None for e in edit.events),
                len(done),
                sum(e.frames for e in done),
                f"{seconds:.1f}",
            ]
        )
    return rows


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--mode", choices=["fast", "learned"], default="fast")
    parser.add_argument("--skip-edls", action="store_true")
    args = parser.parse_args()
    shared = shared_dir(args.shared)
    print_system(system_info())
    reference = shared / "samples" / "pairs" / "08_reference.png"
    work = Path(tempfile.mkdtemp(prefix="grade-conform-bench-"))
    try:
        if not args.skip_edls:
            pool = _frames(shared / "samples" / "video" / "01_psd_testvideo.mp4", 96, 160)
            rows = sample_edls(shared, work, reference, pool)
            print("\n## The sample EDLs, relinked against generated media and conformed (fast look)\n")
            print(table(["EDL", "events", "dissolves", "CDLs", "rendered", "frames", "seconds"], rows))

        # 20 events of 24 frames from two real clips, 640 px wide, timecode 01:00:00:00
        import opentimelineio as otio

        media = work / "media"
        media.mkdir()
        clips = {
            "A": write_clip(
                media / "A.mp4", _frames(shared / "samples/video/01_psd_testvideo.mp4", 260, 640), 24, "01:00:00:00"
            ),
            "B": write_clip(
                media / "B.mp4", _frames(shared / "samples/video/04_cotracker_bear.mp4", 260, 640), 24, "01:00:00:00"
            ),
        }
        track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
        events = []
        for i in range(args.events):
            reel = "A" if i % 2 == 0 else "B"
            start = 3600 * 24 + (i // 2) * 24
            c = otio.schema.Clip(
                name=f"ev{i + 1}",
                source_range=otio.opentime.TimeRange(
                    otio.opentime.RationalTime(start, 24), otio.opentime.RationalTime(24, 24)
                ),
            )
            c.metadata["cmx_3600"] = {"reel": reel}
            track.append(c)
            events.append((reel, start - 3600 * 24))
        timeline = otio.schema.Timeline(name="bench")
        timeline.tracks.append(track)
        edl = work / "bench.edl"
        otio.adapters.write_to_file(timeline, str(edl), adapter_name="cmx_3600")
        singles = []
        for i, (reel, first) in enumerate(events):
            with av.open(str(clips[reel])) as box:
                frames = [f.to_ndarray(format="rgb24") for f in box.decode(video=0)][first : first + 24]
            singles.append(write_clip(work / f"single{i + 1}.mp4", frames, 24, None))

        options = GradeOptions(mode=args.mode, force=True)
        times: dict[str, list[float]] = {"A": [], "B": [], "C": []}
        preset = None
        for run in range(args.runs):
            out = work / f"conform{run}"
            t = time.perf_counter()
            run_conform(edl, out, ConformSettings(media=[media], look=reference, handles=0, match=["reel"]), options)
            times["A"].append(time.perf_counter() - t)
            preset = next((out / ".looks").glob("*.gpreset"))
            t = time.perf_counter()
            for i, s in enumerate(singles):
                grade_file(s, reference, options, output=work / f"b{i}.mp4")
            times["B"].append(time.perf_counter() - t)
            t = time.perf_counter()
            popts = GradeOptions(preset=str(preset), force=True)
            for i, s in enumerate(singles):
                grade_file(s, None, popts, output=work / f"c{i}.mp4")
            times["C"].append(time.perf_counter() - t)
            print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), file=sys.stderr)
        med = {k: statistics.median(v) for k, v in times.items()}
        n = args.events * 24
        print(
            f"\n## Conform throughput: {args.events} events x 24 frames, 640 px, {args.mode} look, "
            f"{args.runs} alternating runs (medians)\n"
        )
        print(
            table(
                ["run", "median s", "frames/s", "vs B"],
                [
                    [
                        "A grade conform (one scene, look fitted once)",
                        f"{med['A']:.2f}",
                        f"{n / med['A']:.1f}",
                        f"{med['A'] / med['B']:.2f}",
                    ],
                    ["B grade_file per event (each fits its look)", f"{med['B']:.2f}", f"{n / med['B']:.1f}", "1.00"],
                    [
                        "C grade_file per event with the scene preset",
                        f"{med['C']:.2f}",
                        f"{n / med['C']:.1f}",
                        f"{med['C'] / med['B']:.2f}",
                    ],
                ],
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
