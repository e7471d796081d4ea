"""The temporal issue's targets: flicker, structure, render speed and memory of the learned mode's stabiliser.

1. Temporal stability. Every clip in ``<shared>/samples/video`` (``--clips`` picks some) is cut to its
   first ``--frames`` frames (default 150, ~5 s; shorter clips are kept whole) at its native size
   (``--width W`` downscales), as a lossless FFV1 .mkv in the scratch folder. The clip gets a fixed
   reference still: the ``*_reference.*`` files of ``<shared>/samples/pairs``, sorted, round-robin
   over the sorted clips (the table names it). One learned look is trained per clip, once:
   ``grade_file(clip, ref, GradeOptions(mode="learned", save_preset=..., stabilise=False))`` (one look
   for all shots of the clip, saved to a scratch library), which also writes the *unstabilised*
   output; the saved preset then renders the *stabilised* output (``GradeOptions(preset=..., stabilise=True)``,
   the same look), and the preset's ``fitted_lut`` (the look distilled into one 3D LUT) is written
   as a .cube and applied with ``grade_file(clip, lut.cube)``: the *fixed LUT* output. All outputs are
   FFV1 (lossless), so the codec adds no temporal noise. ``<shared>/eval/gradeeval.py video`` scores
   the source and the three outputs on all their frames (warp error: lower = less flicker); the
   per-frame ``structure`` of each output against its source is computed with gradeeval's own
   ``structure`` (imported from its path), frames decoded as gradeeval does and fitted to its
   ``MAX_SIDE`` (the size ``pair`` scores at).
   Targets, per clip: warp(stabilised) <= 1.05 x warp(fixed LUT) and < warp(unstabilised);
   structure of the stabilised output: mean >= 0.97, min >= 0.93. Also shown: the fitted LUT's error
   against the look (ΔE2000 on the key frames, from the preset) and its roughness (largest second
   difference between neighbouring nodes), which tell how fair the fixed-LUT comparison is.
2. Throughput. A 1920x1080 H.264 clip built as ``speed.py`` builds it (``--seconds``, from
   ``01_psd_testvideo.mp4``); timed alternating ``--repeats`` times each: (A) ``speed.py``'s plain
   PyAV decode + libx264 re-encode (grade's .mp4 settings), (B) ``grade_file(clip, None,
   GradeOptions(preset=<learned preset>, stabilise=True))`` (no training: the preset of part 1's first
   clip), (C) the same with ``stabilise=False`` (the network on every frame). Medians, frames/s,
   throughput ratio B/A (target >= 0.5), and the report's ``stabiliser_ms_per_frame`` and
   ``network_frames`` (B runs the network only where the stabiliser cannot carry the field).
3. Memory. 3840x2160 H.264 clips of ``--uhd-seconds`` (default 2 and 4 s; built like ``speed.py``'s but
   with x264 ``ultrafast``) graded with the learned preset and the stabiliser (grade's default .mp4
   output, libx264 medium; ``--uhd-codec ffv1`` writes .mkv with that codec instead), each in a fresh
   process started through a small launcher (see ``learned_speed.py``): its ``ru_maxrss``. Target <= 2 GB,
   and flat in clip length (the longer clip's peak within 5 % of the shorter's).

Run::

    python benchmarks/temporal.py [--clips 01 04] [--frames 150] [--quick] [--json temporal.json]

``--quick`` (a smoke test, ~8 min here): 48 frames, 30 training steps, a 2 s 1080p clip timed once,
4K clips of 1 and 2 s. ``--parts`` runs some of quality, speed, memory (speed and memory without
quality train their preset on the first clip). The full run took ~20 min on a busy 2-core machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import av
from common import copy_video, ffv1_copy, fmt, make_parser, save_json, shared_dir, system_info, timed
from speed import X264_OPTIONS, build_clip, count_frames, transcode

from grade.cube import write_cube
from grade.pipeline import GradeOptions, GradeReport, grade_file
from grade.presets import read_preset

VIDEOS = Path("samples/video")
PAIRS = Path("samples/pairs")
SPEED_SOURCE = VIDEOS / "01_psd_testvideo.mp4"
EVAL = Path("eval/gradeeval.py")
VARIANTS = ("source", "unstabilised", "stabilised", "fixed LUT")
GB_MIB = 1024.0  # 1 GB, as MiB
TARGET_PEAK_MIB = 2 * GB_MIB
FLAT_TOL = 0.05  # the longer 4K clip's peak may exceed the shorter's by this fraction
# A child's ru_maxrss starts at the high-water mark of the process that exec'd it (Linux copies it at exec),
# so the 4K runs are started through this small launcher (its own peak is ~10 MiB), as in learned_speed.py.
LAUNCHER = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"


# ---------------------------------------------------------------- helpers


def md_table(headers: list[str], rows: list[list[Any]], digits: int = 3) -> str:
    """A markdown table (floats to ``digits`` decimals)."""
    cells = [[c if isinstance(c, str) else fmt(c, digits) for c in r] for r in rows]
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|",
    ]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_gradeeval(shared: Path) -> ModuleType:
    """``gradeeval.py`` imported as a module from where it lies (never copied)."""
    spec = importlib.util.spec_from_file_location("gradeeval", shared / EVAL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def evaluate_video(shared: Path, graded: Path, original: Path, frames: int) -> dict[str, float]:
    """Run ``eval/gradeeval.py video`` on all ``frames`` and return its JSON line."""
    cmd = [sys.executable, str(shared / EVAL), "video", str(graded), str(original), "--max-frames", str(frames)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"gradeeval failed ({done.returncode}) on {graded}: {done.stderr.strip()[-400:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def structure_per_frame(ge: ModuleType, graded: Path, original: Path, frames: int) -> list[float]:
    """gradeeval's ``structure`` of each graded frame against its source frame (both decoded to RGB
    float and fitted to ``MAX_SIDE`` as gradeeval does), streamed frame by frame."""
    scores: list[float] = []
    with av.open(str(graded)) as g_box, av.open(str(original)) as o_box:
        for g, o in zip(g_box.decode(video=0), o_box.decode(video=0)):
            gi = ge.fit(g.to_ndarray(format="rgb24").astype("float32") / 255.0, ge.MAX_SIDE)
            oi = ge.fit(o.to_ndarray(format="rgb24").astype("float32") / 255.0, ge.MAX_SIDE)
            scores.append(ge.structure(gi, oi))
            if len(scores) >= frames:
                break
    return scores


def cut_clip(source: Path, target: Path, frames: int, width: int | None) -> dict[str, Any]:
    """The first ``frames`` frames of ``source`` (downscaled to ``width`` if smaller) as lossless FFV1 .mkv."""
    return ffv1_copy(source, target, width, frames)


def build_uhd(source: Path, target: Path, seconds: float, rate: Fraction) -> int:
    """A 3840x2160 H.264 clip like ``speed.build_clip``'s but with x264 ``ultrafast`` (4K medium is slow here)."""
    opts = {"crf": "18", "preset": "ultrafast"}
    frames = max(1, round(seconds * rate))
    return copy_video(
        source, target, codec="libx264", options=opts, size=(3840, 2160), frames=frames, rate=rate, loop=True
    )["frames"]


def lut_roughness(lut) -> float:
    """Largest |second difference| between neighbouring nodes of a ``(3, N, N, N)`` LUT, along any axis
    (0 for an affine map; a smooth grade stays well below 0.1)."""
    worst = 0.0
    for axis in (1, 2, 3):
        n = lut.shape[axis]
        d2 = lut.narrow(axis, 2, n - 2) - 2 * lut.narrow(axis, 1, n - 2) + lut.narrow(axis, 0, n - 2)
        worst = max(worst, float(d2.abs().max()))
    return worst


def train_preset(clip: Path, reference: Path, library: Path, name: str, output: Path, steps: int | None):
    """Train one learned look for the whole clip (saved as preset ``name``), rendering it unstabilised
    to ``output`` (FFV1); returns the preset's path and the report."""
    options = GradeOptions(
        mode="learned", save_preset=name, library=library, stabilise=False, codec="ffv1", force=True, steps=steps
    )
    report = grade_file(clip, reference, options, output=output)
    return Path(report.preset_saved), report


# ---------------------------------------------------------------- 1. temporal stability


def quality_part(args, shared: Path, tmp: Path, clips: list[Path], refs: list[Path]) -> tuple[list[dict], Path | None]:
    ge = load_gradeeval(shared)
    library = tmp / "library"
    results = []
    first_preset = None
    for n, source in enumerate(clips):
        ref = refs[n % len(refs)]
        stem = source.stem
        clip = tmp / f"{stem}.cut.mkv"
        cut = cut_clip(source, clip, args.frames, args.width)
        log(f"{stem}: {cut['width']}x{cut['height']}, {cut['frames']} frames; training against {ref.name}")
        out = {v: tmp / f"{stem}.{v.replace(' ', '_')}.mkv" for v in VARIANTS[1:]}
        out["source"] = clip
        preset, rep_u = train_preset(clip, ref, library, f"b-{stem}"[:64], out["unstabilised"], args.steps)
        first_preset = first_preset or preset
        opts_s = GradeOptions(preset=str(preset), stabilise=True, codec="ffv1", force=True)
        render_s, rep_s = timed(partial(grade_file, clip, None, opts_s, output=out["stabilised"]))
        cube = tmp / f"{stem}.cube"
        saved = read_preset(preset)
        write_cube(cube, saved.fitted_lut, title=f"b-{stem}")
        grade_file(clip, cube, GradeOptions(codec="ffv1", force=True), output=out["fixed LUT"])
        log(f"{stem}: evaluating")
        scores = {v: evaluate_video(shared, out[v], clip, cut["frames"]) for v in VARIANTS}
        struct = {v: structure_per_frame(ge, out[v], clip, cut["frames"]) for v in VARIANTS[1:]}
        results.append(
            {
                "clip": stem,
                "reference": ref.name,
                **cut,
                "shots": len(rep_s.shots),
                "train_seconds": rep_u.seconds.get("fit"),
                "stabilised_render_seconds": render_s,
                "stabiliser_ms_per_frame": rep_s.stabiliser_ms_per_frame,
                "lut_error": saved.manifest.lut_error.model_dump() if saved.manifest.lut_error else None,
                "lut_roughness": lut_roughness(saved.fitted_lut),
                "scores": scores,
                "structure": struct,
            }
        )
    return results, first_preset


def print_quality(results: list[dict]) -> list[list[Any]]:
    print("\n## 1. Temporal stability (gradeeval `video`, all frames; FFV1 lossless outputs)\n")
    print(
        md_table(
            [
                "clip",
                "size (native)",
                "frames",
                "shots",
                "reference",
                "train s",
                "stab ms/frame",
                "fixed LUT ΔE2000 mean / p95",
                "fixed LUT roughness",
            ],
            [
                [
                    r["clip"],
                    f"{r['width']}x{r['height']} ({r['native'][0]}x{r['native'][1]})",
                    r["frames"],
                    r["shots"],
                    r["reference"],
                    r["train_seconds"],
                    r["stabiliser_ms_per_frame"],
                    f"{r['lut_error']['mean_de2000']:.1f} / {r['lut_error']['p95_de2000']:.1f}"
                    if r["lut_error"]
                    else "-",
                    r["lut_roughness"],
                ]
                for r in results
            ],
            2,
        )
    )
    rows = []
    for r in results:
        for v in VARIANTS:
            s, st = r["scores"][v], r["structure"].get(v)
            rows.append(
                [
                    r["clip"],
                    v,
                    s["warp"],
                    s["warp_floor"],
                    s["rte"],
                    statistics.fmean(st) if st else None,
                    min(st) if st else None,
                ]
            )
    print()
    print(md_table(["clip", "output", "warp", "warp floor", "rte", "structure mean", "structure min"], rows, digits=4))
    print(
        "\nwarp: gradeeval's warping error (x1000 MSE, lower = less flicker); warp floor: the same for a fixed 65^3 LUT"
        " gradeeval fits to that output; rte = warp / floor.\nstructure: gradeeval's `structure` per frame against"
        " the source (frames at gradeeval's MAX_SIDE), mean and min over frames."
    )
    checks = []
    for r in results:
        w = {v: r["scores"][v]["warp"] for v in VARIANTS}
        st = r["structure"]["stabilised"]
        ratio = w["stabilised"] / max(w["fixed LUT"], 1e-12)
        checks += [
            [r["clip"], "warp(stab) / warp(fixed LUT)", ratio, "<= 1.05", verdict(ratio <= 1.05)],
            [
                r["clip"],
                "warp(stab) / warp(unstab)",
                w["stabilised"] / max(w["unstabilised"], 1e-12),
                "< 1",
                verdict(w["stabilised"] < w["unstabilised"]),
            ],
            [
                r["clip"],
                "structure mean (stab)",
                statistics.fmean(st),
                ">= 0.97",
                verdict(statistics.fmean(st) >= 0.97),
            ],
            [r["clip"], "structure min (stab)", min(st), ">= 0.93", verdict(min(st) >= 0.93)],
        ]
    print()
    print(md_table(["clip", "target", "measured", "bound", "verdict"], checks, digits=4))
    return checks


# ---------------------------------------------------------------- 2. throughput


def speed_part(args, shared: Path, tmp: Path, preset: Path) -> dict[str, Any]:
    clip = tmp / "hd.mp4"
    build_s, frames = timed(lambda: build_clip(shared / SPEED_SOURCE, clip, args.seconds, args.fps, (1920, 1080)))
    log(f"1080p clip: {frames} frames (built in {build_s:.1f} s)")
    runs: dict[str, list[float]] = {"A": [], "B": [], "C": []}
    reports: dict[str, list[GradeReport]] = {"B": [], "C": []}
    outs = {k: tmp / f"hd.{k}.mp4" for k in runs}
    for n in range(max(1, args.repeats)):
        seconds, _ = timed(lambda: transcode(clip, outs["A"]))
        runs["A"].append(seconds)
        for key, stabilise in (("B", True), ("C", False)):
            options = GradeOptions(preset=str(preset), stabilise=stabilise, force=True)
            seconds, report = timed(partial(grade_file, clip, None, options, output=outs[key]))
            runs[key].append(seconds)
            reports[key].append(report)
        log(f"run {n + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in runs.items()))
    counts = {k: count_frames(p) for k, p in outs.items()}
    return {
        "frames": frames,
        "fps": float(args.fps),
        "counts": counts,
        "runs": runs,
        "stages": {
            k: {s: statistics.median(r.seconds.get(s, 0.0) for r in reps) for s in ("look", "analyse", "render")}
            for k, reps in reports.items()
        },
        "stabiliser_ms_per_frame": [r.stabiliser_ms_per_frame for r in reports["B"]],
        "network_frames": [r.network_frames for r in reports["B"]],
        "encoder": reports["B"][-1].encoder,
        "pix_fmt": reports["B"][-1].pix_fmt,
    }


def print_speed(s: dict[str, Any]) -> list[list[Any]]:
    frames = s["frames"]
    med = {k: statistics.median(v) for k, v in s["runs"].items()}
    names = {
        "A": "A decode + re-encode (libx264 " + ", ".join(f"{k} {v}" for k, v in X264_OPTIONS.items()) + ")",
        "B": "B grade, learned preset, stabilise=True",
        "C": "C grade, learned preset, stabilise=False",
    }
    print(f"\n## 2. Throughput (1920x1080, {frames} frames at {s['fps']:.3f} fps, {len(s['runs']['A'])} runs each)\n")
    rows = []
    for k, v in s["runs"].items():
        stages = s["stages"].get(k)
        rows.append(
            [
                names[k],
                med[k],
                frames / med[k],
                med["A"] / med[k],
                ", ".join(f"{x:.2f}" for x in v),
                stages["analyse"] if stages else None,
                stages["render"] if stages else None,
            ]
        )
    print(
        md_table(["run", "median s", "frames/s", "throughput / A", "runs (s)", "analyse s", "render s"], rows, digits=2)
    )
    stab = statistics.median(x for x in s["stabiliser_ms_per_frame"] if x is not None)
    extra = 1000 * (med["B"] - med["C"]) / frames
    ratio = med["A"] / med["B"]
    print(
        f"\nstabiliser_ms_per_frame (B's report, median): {stab:.2f} ms; wall-clock B - C: {extra:.1f} ms/frame."
        f"\nencoder {s['encoder']} {s['pix_fmt']}; frame counts {s['counts']}"
        f"\nB ran the network on {s['network_frames']} of {frames} frames (the stabiliser carried the field on"
        " the others)"
    )
    print(f"stabiliser's share of the learned render: throughput B / C = {med['C'] / med['B']:.3f}")
    checks = [["throughput B / A", ratio, ">= 0.5", verdict(ratio >= 0.5)]]
    print()
    print(md_table(["target", "measured", "bound", "verdict"], checks))
    return checks


# ---------------------------------------------------------------- 3. memory


def status_kib(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def child_uhd(preset: Path, clip: Path, out: Path, codec: str | None) -> int:
    """In a fresh process: grade ``clip`` with the preset and the stabiliser, print memory figures (KiB) as JSON."""
    before = status_kib("VmRSS")
    seconds, report = timed(
        lambda: grade_file(
            clip, None, GradeOptions(preset=str(preset), stabilise=True, codec=codec, force=True), output=out
        )
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fields = {"frames": report.frames, "encoder": report.encoder, "stab_ms": report.stabiliser_ms_per_frame}
    print(json.dumps({"seconds": seconds, "before_kib": before, "peak_kib": peak, **fields}))
    return 0


def memory_part(args, shared: Path, tmp: Path, preset: Path) -> list[dict[str, Any]]:
    results = []
    for seconds in args.uhd_seconds:
        suffix = ".mkv" if args.uhd_codec else ".mp4"
        clip, out = tmp / f"uhd{seconds:g}.mp4", tmp / f"uhd{seconds:g}.graded{suffix}"
        build_s, frames = timed(partial(build_uhd, shared / SPEED_SOURCE, clip, seconds, args.fps))
        log(f"4K clip {seconds:g} s: {frames} frames (built in {build_s:.1f} s); grading in a fresh process")
        cmd = [sys.executable, __file__, "--child-uhd", str(preset), str(clip), str(out), args.uhd_codec or ""]
        done = subprocess.run([sys.executable, "-c", LAUNCHER, *cmd], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"4K child failed ({done.returncode}): {done.stderr.strip()[-600:]}")
        results.append({"clip_seconds": seconds, **json.loads(done.stdout.strip().splitlines()[-1])})
        clip.unlink()
        out.unlink(missing_ok=True)
    return results


def print_memory(results: list[dict[str, Any]], codec: str | None) -> list[list[Any]]:
    output = f"{codec} .mkv output" if codec else "grade's default .mp4 output"
    print(f"\n## 3. Peak memory, 3840x2160, learned preset + stabiliser, {output} (fresh process)\n")
    rows = [
        [
            f"{r['clip_seconds']:g} s",
            r["frames"],
            r["seconds"],
            r["frames"] / r["seconds"],
            r["stab_ms"],
            r["before_kib"] / 1024,
            r["peak_kib"] / 1024,
            verdict(r["peak_kib"] / 1024 <= TARGET_PEAK_MIB),
        ]
        for r in results
    ]
    headers = ["clip", "frames", "seconds", "frames/s", "stab ms/frame", "RSS before MiB", "peak MiB", "<= 2 GB"]
    print(md_table(headers, rows, digits=1))
    print(
        f"\npeak: ru_maxrss of the child after grade_file (Python, torch, preset, decoder, "
        f"{results[0]['encoder']}, frames in flight); RSS before: after imports, before grade_file."
    )
    checks = [
        [f"peak ({r['clip_seconds']:g} s clip)", r["peak_kib"] / 1024, "<= 2048 MiB", x[-1]]
        for r, x in zip(results, rows)
    ]
    if len(results) > 1:
        growth = results[-1]["peak_kib"] / results[0]["peak_kib"] - 1
        first, last = results[0]["clip_seconds"], results[-1]["clip_seconds"]
        checks.append(
            [
                f"peak growth {first:g} s -> {last:g} s",
                100 * growth,
                f"<= {100 * FLAT_TOL:g} %",
                verdict(growth <= FLAT_TOL),
            ]
        )
    print()
    print(md_table(["target", "measured", "bound", "verdict"], checks, digits=1))
    return checks


# ---------------------------------------------------------------- main


def pick_clips(folder: Path, wanted: list[str] | None) -> list[Path]:
    clips = sorted(folder.glob("*.mp4"))
    if wanted:
        clips = [c for c in clips if any(c.name.startswith(w) for w in wanted)]
    return clips


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--clips", nargs="*", metavar="PREFIX", help="only these clips (name prefixes, e.g. 01 04)")
    parser.add_argument("--frames", type=int, help="frames kept per clip in part 1 (default 150; --quick 48)")
    parser.add_argument("--width", type=int, help="downscale part 1's clips to this width (default: native size)")
    parser.add_argument("--steps", type=int, help="training steps (default: the trainer's; --quick 30)")
    parser.add_argument("--seconds", type=float, help="length of the 1080p clip (default 4.5; --quick 2)")
    parser.add_argument("--fps", type=Fraction, default=Fraction(30000, 1001), help="built clips' rate (30000/1001)")
    parser.add_argument("--repeats", type=int, help="timed runs of A, B, C, alternating (default 3; --quick 1)")
    parser.add_argument(
        "--uhd-seconds", type=float, nargs="+", help="4K clip lengths for the memory part (default 2 4; --quick 1 2)"
    )
    parser.add_argument(
        "--parts", default="quality,speed,memory", help="comma-separated parts to run (default quality,speed,memory)"
    )
    parser.add_argument("--quick", action="store_true", help="short clips, fewer steps and runs (a smoke test)")
    parser.add_argument(
        "--uhd-codec", help="memory part: this codec into .mkv (e.g. ffv1) instead of grade's default .mp4 (libx264)"
    )
    parser.add_argument("--child-uhd", nargs=4, metavar=("PRESET", "CLIP", "OUT", "CODEC"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_uhd:
        preset, clip, out, codec = args.child_uhd
        return child_uhd(Path(preset), Path(clip), Path(out), codec or None)
    quick = args.quick
    args.frames = args.frames or (48 if quick else 150)
    args.steps = args.steps or (30 if quick else None)
    args.seconds = args.seconds or (2.0 if quick else 4.5)
    args.repeats = args.repeats or (1 if quick else 3)
    args.uhd_seconds = args.uhd_seconds or ([1.0, 2.0] if quick else [2.0, 4.0])
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    shared = shared_dir(args.shared)
    clips = pick_clips(shared / VIDEOS, args.clips)
    refs = sorted((shared / PAIRS).glob("*_reference.*"))
    if not clips or not refs:
        sys.exit("no clips or no reference stills found")
    if parts - {"quality"} and "quality" not in parts:
        clips = clips[:1]  # speed and memory need one learned preset: trained on the first clip

    info = system_info()
    print("# grade temporal benchmark\n")
    print(f"machine: {info['cpu']}, {info['cores']} cores (torch threads {info['torch_threads']}); date {info['date']}")
    print(
        f"load average at start {fmt(info['load_average'], 2)}; "
        + ", ".join(f"{k} {info[k]}" for k in ("python", "torch", "av", "cv2", "numpy"))
    )
    print(f"command: python benchmarks/temporal.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    results: dict[str, Any] = {"system": info, "args": {k: str(v) for k, v in vars(args).items()}}
    checks: list[list[Any]] = []
    elapsed: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="grade-temporal-") as tmp_name:
        tmp = Path(tmp_name)
        t = time.perf_counter()
        if "quality" in parts:
            quality, preset = quality_part(args, shared, tmp, clips, refs)
            results["quality"] = quality
            checks += print_quality(quality)
        else:
            clip = tmp / "train.cut.mkv"
            cut_clip(clips[0], clip, args.frames, args.width)
            log(f"training a preset on {clips[0].name} against {refs[0].name}")
            preset, _ = train_preset(
                clip, refs[0], tmp / "library", f"b-{clips[0].stem}"[:64], tmp / "train.mkv", args.steps
            )
        elapsed["quality" if "quality" in parts else "training"] = time.perf_counter() - t
        results["preset"] = read_preset(preset).manifest.model_dump(
            mode="json", include={"name", "key_frames", "lut_error"}
        )
        if "speed" in parts:
            t = time.perf_counter()
            results["speed"] = speed_part(args, shared, tmp, preset)
            checks += print_speed(results["speed"])
            elapsed["speed"] = time.perf_counter() - t
        if "memory" in parts:
            t = time.perf_counter()
            results["memory"] = memory_part(args, shared, tmp, preset)
            checks += print_memory(results["memory"], args.uhd_codec)
            elapsed["memory"] = time.perf_counter() - t
    missed = [c for c in checks if c[-1] != "met"]
    print(
        f"\n{len(checks) - len(missed)} of {len(checks)} targets met" + (f"; missed: {len(missed)}" if missed else "")
    )
    print("elapsed: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in elapsed.items()))
    results["elapsed_seconds"] = elapsed
    results["checks"] = checks
    save_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
