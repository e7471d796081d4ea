"""Render speed of ``grade``'s fast mode against a plain decode + re-encode of the same clip.

It builds a 1920x1080 H.264 test clip (``--seconds`` long, 29.97 fps by default) from
``<shared>/samples/video/01_psd_testvideo.mp4`` (frames upscaled, source looped if needed), then
times, alternating, ``--repeats`` times each:

* A, baseline: a PyAV transcode loop, decode -> libx264 (crf 16, preset medium, yuv420p,
  the codec settings ``grade`` uses for .mp4), threaded decoder and encoder;
* B, grade: ``grade_file(clip, reference, GradeOptions(mode="fast"), output=...mp4)``.

It reports the median wall seconds of each, the ratio B/A (target <= 1.5), the size of grade's
output against the baseline's (x264 spends more time on a saturated, contrasty grade than on the
source's look: same settings, more to encode) and the median per-stage seconds of grade's report.
``--reference all`` repeats this for the reference of every pair in ``<shared>/samples/pairs``
and reports the median ratio over them as well.

``--decompose`` times two more runs in each round, to show where B's time goes:

* C, the graded picture's own cost: the baseline transcode run on B's output (what the same
  settings cost on the graded picture instead of the source);
* D, the render alone: ``GradeOptions(mode="fast", joint=True)``, which analyses the whole clip
  first, fits one look and only then renders; its render stage is a grade with the analysis for
  free (one lookup table instead of one per shot).

Run::

    python benchmarks/speed.py [--seconds 10] [--repeats 3] [--reference all] [--decompose] [--json speed.json]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
from av.video.frame import PictureType
from common import copy_video, make_parser, print_system, save_json, shared_dir, system_info, table, timed

from grade.pipeline import GradeOptions, GradeReport, grade_file

SOURCE = Path("samples/video/01_psd_testvideo.mp4")
REFERENCE = Path("samples/pairs/34_reference.jpg")
X264_OPTIONS = {"crf": "16", "preset": "medium"}  # grade's defaults for .mp4 (grade.io.video.choose_codec)
STAGES = ("reference", "analyse", "fit", "render")


def build_clip(source: Path, target: Path, seconds: float, rate: Fraction, size: tuple[int, int]) -> int:
    """Upscaled frames of ``source`` (looped as needed) as H.264 crf 18 at ``rate``; returns the frame count."""
    opts = {"crf": "18", "preset": "medium"}
    frames = max(1, round(seconds * rate))
    return copy_video(source, target, codec="libx264", options=opts, size=size, frames=frames, rate=rate, loop=True)[
        "frames"
    ]


def transcode(source: Path, target: Path) -> int:
    """Baseline: decode and re-encode every frame with grade's mp4 settings; returns the frame count."""
    frames = 0
    with av.open(str(source)) as box, av.open(str(target), "w") as out:
        vin = box.streams.video[0]
        vin.thread_type = "AUTO"
        vout = out.add_stream("libx264", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = vin.width, vin.height, "yuv420p"
        vout.time_base = vin.time_base
        vout.codec_context.time_base = vin.time_base
        vout.options = dict(X264_OPTIONS)
        vout.thread_type = "AUTO"
        for frame in box.decode(vin):
            frame.pict_type = PictureType.NONE  # the encoder picks frame types (as ffmpeg does)
            out.mux(vout.encode(frame))
            frames += 1
        out.mux(vout.encode(None))
    return frames


def count_frames(path: Path) -> int:
    with av.open(str(path)) as box:
        return sum(1 for _ in box.decode(video=0))


def references(shared: Path, choice: str | None) -> list[Path]:
    """The references to grade with: one file, or ``all`` of ``<shared>/samples/pairs``."""
    if choice == "all":
        return sorted((shared / "samples/pairs").glob("*_reference.*"))
    return [Path(choice) if choice else shared / REFERENCE]


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the test clip (default 10)")
    parser.add_argument("--fps", type=Fraction, default=Fraction(30000, 1001), help="frame rate (30000/1001)")
    parser.add_argument("--size", default="1920x1080", help="test clip size WxH (default 1920x1080)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each, alternating (default 3)")
    parser.add_argument(
        "--reference", help=f"reference still, or 'all' for every pair's reference (default <shared>/{REFERENCE})"
    )
    parser.add_argument(
        "--decompose", action="store_true", help="also time C (B's output transcoded) and D (render alone)"
    )
    args = parser.parse_args(argv)
    shared = shared_dir(args.shared)
    refs = references(shared, args.reference)
    width, height = (int(v) for v in args.size.lower().split("x"))
    info = system_info()
    print_system(info)

    options = GradeOptions(mode="fast", force=True)
    joint = GradeOptions(mode="fast", force=True, joint=True)
    rows, results, decomposed = [], [], []
    with tempfile.TemporaryDirectory(prefix="grade-speed-") as tmp:
        clip, out_a, out_b = Path(tmp) / "clip.mp4", Path(tmp) / "baseline.mp4", Path(tmp) / "graded.mp4"
        out_c = Path(tmp) / "other.mp4"
        build_s, frames = timed(lambda: build_clip(shared / SOURCE, clip, args.seconds, args.fps, (width, height)))
        print(f"test clip: {width}x{height}, {frames} frames at {float(args.fps):.3f} fps (built in {build_s:.1f} s)")
        for reference in refs:
            baseline: list[float] = []
            graded: list[float] = []
            reports: list[GradeReport] = []
            parts: dict[str, list[float]] = {"C": [], "D total": [], "D render": []}
            for n in range(max(1, args.repeats)):
                seconds, frames_a = timed(lambda: transcode(clip, out_a))
                baseline.append(seconds)
                seconds, report = timed(lambda ref=reference: grade_file(clip, ref, options, output=out_b))
                graded.append(seconds)
                reports.append(report)
                say = f"{reference.name} run {n + 1}: baseline {baseline[-1]:.2f} s, grade {graded[-1]:.2f} s"
                if args.decompose:
                    parts["C"].append(timed(lambda: transcode(out_b, out_c))[0])
                    seconds, report_d = timed(lambda ref=reference: grade_file(clip, ref, joint, output=out_c))
                    parts["D total"].append(seconds)
                    parts["D render"].append(report_d.seconds["render"])
                    say += f", C {parts['C'][-1]:.2f} s, D {seconds:.2f} s (render {parts['D render'][-1]:.2f} s)"
                print(say, file=sys.stderr)
            if args.decompose:
                a = statistics.median(baseline)
                decomposed.append([reference.name, a, *[statistics.median(v) / a for v in parts.values()]])
            frames_b = count_frames(out_b)
            if not frames_a == frames_b == frames:
                print(f"warning: frame counts differ: clip {frames}, baseline {frames_a}, grade {frames_b}")
            a, b = statistics.median(baseline), statistics.median(graded)
            stages = {s: statistics.median(r.seconds.get(s, 0.0) for r in reports) for s in STAGES}
            # the encoder's work grows with what it is given: a saturated, contrasty grade costs x264 more
            size_ratio = out_b.stat().st_size / out_a.stat().st_size
            rows.append([reference.name, a, b, b / a, size_ratio, *[stages[s] for s in STAGES[1:]]])
            results.append(
                {
                    "reference": reference.name,
                    "baseline_seconds": baseline,
                    "grade_seconds": graded,
                    "ratio": b / a,
                    "output_size_ratio": size_ratio,
                    "grade_stages": stages,
                    "decompose_seconds": parts if args.decompose else None,
                    "grade_reports": [r.model_dump(mode="json") for r in reports],
                }
            )

    print()
    head = ["reference", "A transcode s", "B grade s", "B/A", "size B/A", "analyse s", "fit s", "render s"]
    print(table(head, rows))
    ratios = [r[3] for r in rows]
    overall = statistics.median(ratios)
    spread = f"(min {min(ratios):.3f}, max {max(ratios):.3f})"
    label = "B/A" if len(rows) == 1 else f"median B/A over {len(rows)} references {spread}"
    print(f"\n{label} = {overall:.3f}  (target <= 1.5: {'met' if overall <= 1.5 else 'NOT met'})")
    print("(analysis and fitting overlap the render: B is wall time, stages are each stage's own)")
    if decomposed:
        print()
        print(table(["reference", "A transcode s", "C/A graded picture", "D/A sequential", "D render / A"], decomposed))
        print("(C: B's output transcoded like the source; D: analyse, fit one look, then render)")
    save_json(
        args.json,
        {
            "system": info,
            "width": width,
            "height": height,
            "frames": frames,
            "fps": float(args.fps),
            "median_ratio": overall,
            "references": results,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
