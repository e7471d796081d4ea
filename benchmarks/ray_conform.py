"""Ray engine benchmark: ``grade conform --engine ray`` against the local process pool (``--jobs 2``).

N events (default 40) of synthetic media (two reels built with ``tests/clips.py``, ``--size``) are
conformed with one .cube look (render only: no look to train) by (A) the local pool, ``--jobs 2``,
(B) ``--engine ray`` on a local instance with as many CPUs as the machine has cores, started once
beforehand, and (C) ``--engine ray`` starting and stopping its own instance, as a CLI run without
``--ray-address`` does; Ray's start-up (``ray.init`` + ``ray.shutdown``) is also timed on its own.
Medians of ``--runs`` interleaved runs; the target is B <= 1.15 x A. One more run with a reference still
(``--mode fast``) times the scene look's fitting, shown separately (it runs once per scene, on the
driver, whatever the engine). Per-event figures (the workers' own seconds) are printed for the farm
estimate.

    python benchmarks/ray_conform.py [--events 40] [--runs 3] [--frames 12] [--size 160x90]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import REPO_ROOT, make_parser, print_system, save_json, system_info, table

sys.path.insert(0, str(REPO_ROOT / "tests"))

import opentimelineio as otio  # noqa: E402
from clips import make_still, scene_frame, write_frames  # noqa: E402

from grade.conform import ConformSettings, run_conform  # noqa: E402
from grade.cube import write_cube  # noqa: E402
from grade.lut import identity_lut  # noqa: E402
from grade.pipeline import GradeOptions  # noqa: E402

RATE = 24
HOUR = 3600 * RATE


def build(work: Path, events: int, frames: int, size: tuple[int, int] = (160, 90)) -> tuple[Path, Path, Path, Path]:
    """Two reels of media, an EDL of ``events`` events of ``frames`` frames, a mild .cube and a still."""
    media = work / "media"
    media.mkdir()
    length = max(60, (events // 2 + 1) * 3 + frames + 4)
    for reel, scene, tc in (("A001", 0, "01:00:00:00"), ("B002", 1, "02:00:00:00")):
        images = [scene_frame(size[0], size[1], i, scene) for i in range(length)]
        write_frames(media / f"{reel}.mp4", images, fps=RATE, options={"crf": "16", "preset": "ultrafast"}, timecode=tc)
    track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    for i in range(events):
        reel, start = ("A001", HOUR) if i % 2 == 0 else ("B002", 2 * HOUR)
        offset = (i // 2 * 3) % (length - frames - 1)
        c = otio.schema.Clip(
            name=f"shot{i + 1:03d}",
            source_range=otio.opentime.TimeRange(
                otio.opentime.RationalTime(start + offset, RATE), otio.opentime.RationalTime(frames, RATE)
            ),
        )
        c.metadata["cmx_3600"] = {"reel": reel}
        track.append(c)
    timeline = otio.schema.Timeline(name="bench", global_start_time=otio.opentime.RationalTime(10 * HOUR, RATE))
    timeline.tracks.append(track)
    edl = work / "cut.edl"
    otio.adapters.write_to_file(timeline, str(edl), adapter_name="cmx_3600")
    lut = identity_lut(17)
    lut[2] = lut[2] * 0.9 + 0.05
    write_cube(work / "mild.cube", lut)
    return media, edl, work / "mild.cube", make_still(work / "ref.png", size=(80, 60), scene=1)


def conform(edl: Path, media: Path, out: Path, engine: str, look: Path, mode: str = "fast"):
    settings = ConformSettings(media=[media], look=look, handles=0, engine=engine)
    options = GradeOptions(jobs=2, mode=mode, codec="ffv1", device="cpu")
    t = time.perf_counter()
    report = run_conform(edl, out, settings, options)
    seconds = time.perf_counter() - t
    assert all(e.status == "done" for e in report.events), [e.status for e in report.events]
    return seconds, report


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frames", type=int, default=12, help="frames per event (default 12)")
    parser.add_argument("--size", default="160x90", help="frame size WxH of the media (default 160x90)")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    import ray

    info = system_info()
    print_system(info)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="grade-ray-bench-") as d:
        work = Path(d)
        media, edl, cube, still = build(work, args.events, args.frames, size)

        starts = []
        for _ in range(max(1, args.runs)):  # Ray's own start-up and shut-down, nothing rendered
            t = time.perf_counter()
            ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            ray.shutdown()
            starts.append(time.perf_counter() - t)

        local, remote, cold, per_local, per_ray = [], [], [], [], []
        for r in range(max(1, args.runs)):
            seconds, _ = conform(edl, media, work / f"cold-{r}", "ray", cube)  # starts and stops its own instance
            cold.append(seconds)
            ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            conform(edl, media, work / f"warm-{r}", "ray", cube)  # warm-up: workers started, imports cached
            for engine, times, per in (("local", local, per_local), ("ray", remote, per_ray)):
                seconds, report = conform(edl, media, work / f"{engine}-{r}", engine, cube)
                times.append(seconds)
                per.append(statistics.median(e.seconds for e in report.events))
            ray.shutdown()
        fitted, _ = conform(edl, media, work / "fitted", "local", still)  # + fitting the scene's look once

    a, b, c = statistics.median(local), statistics.median(remote), statistics.median(cold)
    start = statistics.median(starts)
    train = max(0.0, fitted - a)
    rows = [
        ["local pool, --jobs 2", a, a / args.events, statistics.median(per_local), 1.0],
        ["ray, local instance (warm)", b, b / args.events, statistics.median(per_ray), b / a],
        ["ray starting its own instance", c, c / args.events, statistics.median(per_ray), c / a],
    ]
    print(f"\n{args.events} events x {args.frames} frames, {args.size}, ffv1, one .cube look, {cores} cores")
    print(table(["engine", "wall s (median)", "wall s / event", "worker s / event", "x local"], rows))
    print(f"\nRay start-up + shut-down: {start:.2f} s (median of {len(starts)})")
    print(f"scene look fitting (fast, one scene, {args.events} events' key frames): {train:.2f} s")
    print(f"ratio ray/local: {b / a:.3f} (target <= 1.15); starting its own instance {c / a:.3f}")
    save_json(
        args.json,
        {
            "system": info,
            "events": args.events,
            "frames": args.frames,
            "size": args.size,
            "ray_cold_s": cold,
            "local_s": local,
            "ray_s": remote,
            "ray_start_s": starts,
            "per_event_local_s": per_local,
            "per_event_ray_s": per_ray,
            "fitting_s": train,
        },
    )


if __name__ == "__main__":
    main()
