"""The targets of the presets work, measured side by side on the shared samples.

1. **Fitted LUT vs the full look.** For every pair ``NN_content`` / ``NN_reference`` in
   ``<shared>/samples/pairs`` the learned look is trained exactly as
   ``grade_file(content, reference, GradeOptions(mode="learned"))`` trains it (the content at a 512
   long side as the key frame, ``fast_lut`` then ``train_look`` with default settings) and turned
   into a preset with ``grade.presets.build_preset``. Reported: the CIEDE2000 between the preset's
   fitted 33-point LUT and the full (spatially varying) look, mean and 95th percentile, as the
   manifest stores it (``lut_error``: on the 256-px key thumbnail the preset keeps) and at the
   content's full resolution (``LearnedLook.apply`` vs ``apply_lut(fitted)``); target mean <= 2.0
   per pair. ``spread`` is the mean CIEDE2000 between the full look's output and the mean output of
   all pixels of (nearly) the same input colour (RGB bins 2 code values wide): the part of the look
   a colour-to-colour table cannot hold, however fine (roughly a floor for any LUT's error; it errs
   low, a bin holding one pixel counts 0). The 17- and 65-point fits
   (``grade.presets.fit_look_lut``) are reported for the first ``--size-pairs`` pairs.
2. **Loading and using a preset.** ``read_preset`` on each saved learned preset (median of
   ``--repeats``, target <= 0.5 s) and its size; then, on a 2 s clip (frames 40-100 of
   ``01_psd_testvideo.mp4``, one shot, native 1280x720, cut with PyAV), the wall time of the command
   line ``grade CLIP --preset NAME`` against ``grade CLIP --look REF --mode learned`` (and the fast
   mode for scale): a preset should cost only the render.
3. **Warm start.** On the key frames ``detect_shots`` picks for two shots of ``01_psd_testvideo.mp4``
   (leaves on a rock: the shots holding frames 100 and 460): a look trained cold on the first key,
   then on the second key a cold training against ``train_look(..., init=look, settings=TrainSettings(steps=40))``
   (``--refine``; the preset's LUT is kept as the pipeline does), and the first look unchanged. Each
   graded second key is scored by gradeeval (look distance to the reference, structure, affine).
4. **Scene consistency.** Two segments of one clip (cut with PyAV, 640 wide) are graded in learned
   mode (a) separately, ``grade_file`` each, and (b) together, ``grade_files([a, b], ref,
   GradeOptions(mode="learned", joint=True))``. The key frame of each output
   (``report.shots[i].key_frame``) is decoded and gradeeval's look distance is measured between the
   graded key of segment 1 and that of segment 2 (the second taken as the "reference" of the
   first). Target: lower together than separately. Also the ungraded keys' distance and each
   graded key's distance to the reference. Scenes: ``bear`` (``04_cotracker_bear.mp4``, its first
   and last second) and ``leaves`` (``01_psd_testvideo.mp4``, shots 2 and 4); ``--scenes`` adds
   ``rock`` (two far-apart segments of one detected shot of the same clip).

Reference for 2-4: ``<shared>/samples/pairs/<--ref-pair>_reference.*`` (34 by default, the one
``speed.py`` uses); the preset timed in 2 is that pair's learned preset. Scratch files (cut clips,
graded outputs, presets) go to a temporary folder unless ``--out-dir`` is given.

Run (the full run takes ~13 min on 2 idle cores, 20+ when the machine is shared: the CPU-seconds
columns show how much of the machine a timing had; ``--quick``: two pairs, one scene, ~6 min)::

    python benchmarks/presets.py [--quick] [--pairs 08 34] [--out-dir DIR] [--json presets.json]
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import torch
from common import REPO_ROOT, evaluate_pair, fmt, make_parser, median_time, save_json, shared_dir, system_info, timed
from quality import Pair, find_pairs

from grade.color import delta_e2000, srgb_to_lab
from grade.io.image import fit_side, load_reference, read_image, to_tensor
from grade.library import Library
from grade.lut import apply_lut
from grade.model.look import LearnedLook, LookSettings
from grade.pipeline import REFINE_STEPS, GradeOptions, grade_file, grade_files
from grade.presets import KeyFrame, build_preset, fit_look_lut, read_preset
from grade.shots import detect_shots
from grade.train import TrainReport, TrainSettings, train_look
from grade.transfer import TransferSettings, fast_lut

PAIRS = Path("samples/pairs")
VIDEOS = Path("samples/video")
KEY_SIDE = 512  # the pipeline's key frames (GradeOptions.working_side)
TARGET_DE = 2.0
TARGET_LOAD_S = 0.5
OTHER_SIZES = (17, 65)
QUICK_PAIRS = ("08", "34")

# (clip, first frame, end frame, width or None for native)
CLI_CLIP = ("01_psd_testvideo.mp4", 40, 100, None)  # 2 s inside shot 2 (frames 0-30 are black)
WARM_CLIP, WARM_FRAMES = "01_psd_testvideo.mp4", (100, 460)  # shots 2 and 4: leaves on a rock
SCENE_WIDTH = 640


@dataclass(frozen=True)
class Scene:
    name: str
    clip: str
    first: tuple[int, int]  # frames [start, end)
    second: tuple[int, int]
    what: str


SCENES = (
    Scene("bear", "04_cotracker_bear.mp4", (0, 30), (52, 82), "one handheld shot: its first and last second"),
    Scene("leaves", "01_psd_testvideo.mp4", (45, 105), (430, 490), "shots 2 and 4: leaves on a rock"),
    Scene("rock", "01_psd_testvideo.mp4", (430, 490), (580, 640), "one detected shot: rock, then bark texture"),
)
DEFAULT_SCENES = ("bear", "leaves")  # one per clip; "rock" adds ~2 min


# ------------------------------------------------------------------------------------------ helpers


def md_table(headers: list[str], rows: list[list[Any]], digits: int = 3) -> str:
    """A markdown table: numbers right-aligned, floats to ``digits`` decimals, None as ``-``."""
    cells = [[c if isinstance(c, str) else fmt(c, digits) for c in r] for r in rows]
    numeric = [all(not isinstance(r[i], str) or r[i] == "-" for r in rows) for i in range(len(headers))]
    align = ["---:" if n and i else "---" for i, n in enumerate(numeric)]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(lines)


@dataclass
class Seconds:
    wall: float = 0.0
    cpu: float = 0.0  # user + system of this process (all threads) or of its finished children


def cpu_seconds(children: bool = False) -> float:
    t = os.times()
    return t.children_user + t.children_system if children else t.user + t.system


@contextlib.contextmanager
def clock(children: bool = False) -> Iterator[Seconds]:
    """Wall and CPU seconds of a block: on a shared machine, CPU s near cores x wall means it ran unhindered."""
    s = Seconds()
    wall, cpu = time.perf_counter(), cpu_seconds(children)
    yield s
    s.wall, s.cpu = time.perf_counter() - wall, cpu_seconds(children) - cpu


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def key_frame(path: Path) -> np.ndarray:
    """A still as the pipeline's key frame: RGB uint8, long side <= 512."""
    small = fit_side(read_image(path).rgb, KEY_SIDE)
    return small if small.dtype == np.uint8 else (small >> 8).astype(np.uint8)


def train_like_pipeline(
    keys: list[np.ndarray], reference: torch.Tensor, init: LearnedLook | None = None
) -> tuple[torch.Tensor, LearnedLook, TrainReport, Seconds]:
    """``grade.pipeline.fit_shots`` for one group of key frames (learned mode, seed 0, CPU).

    Cold: ``fast_lut`` then ``train_look`` with default settings. ``init`` (``--refine``): the look's LUT
    is kept and its network fine-tuned for ``REFINE_STEPS``. Returns the LUT, the look at full strength,
    the training report and the seconds of the whole fit.
    """
    with clock() as secs:
        tensors = [to_tensor(k) for k in keys]
        lut = init.lut if init is not None else fast_lut(tensors, reference, TransferSettings(seed=0))
        steps = REFINE_STEPS if init is not None else TrainSettings().steps
        look, report = train_look(
            tensors, reference, lut, LookSettings(), TrainSettings(seed=0, steps=steps), "cpu", init=init
        )
    return lut, look, report, secs


def as_hwc(x: torch.Tensor) -> np.ndarray:
    return x[0].permute(1, 2, 0).numpy()


def full_look(look: LearnedLook, rgb: np.ndarray) -> np.ndarray:
    """The look at full strength on an RGB image (float ``(H, W, 3)``), through ``LearnedLook.apply``."""
    with torch.inference_mode():
        return as_hwc(look.apply(to_tensor(rgb)[None]))


def lut_de(fitted: torch.Tensor, rgb: np.ndarray, graded: np.ndarray) -> np.ndarray:
    """Per-pixel CIEDE2000 between ``apply_lut(fitted, rgb)`` and the look's ``graded``."""
    with torch.inference_mode():
        z = as_hwc(apply_lut(fitted, to_tensor(rgb)[None]))
    return delta_e2000(srgb_to_lab(graded), srgb_to_lab(z)).reshape(-1)


def spread_de(rgb: np.ndarray, graded: np.ndarray, shift: int = 1) -> float:
    """Mean CIEDE2000 of each pixel's graded colour from the mean graded colour of its input-colour bin.

    Bins are ``2**shift`` code values wide per channel: what is left is (nearly) the same colour graded
    differently in different places, which no 3D LUT can reproduce. Roughly a floor for any LUT's error
    (it errs low: a bin holding one pixel counts 0).
    """
    u8 = rgb if rgb.dtype == np.uint8 else (rgb >> 8).astype(np.uint8)
    q = (u8.reshape(-1, 3) >> shift).astype(np.int64)
    bins = 256 >> shift
    idx = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    lab = srgb_to_lab(graded.reshape(-1, 3))
    counts = np.bincount(idx, minlength=bins**3).astype(np.float64)
    mean = np.stack([np.bincount(idx, lab[:, c], minlength=bins**3) for c in range(3)], -1)
    mean /= np.maximum(counts, 1)[:, None]
    return float(delta_e2000(lab, mean[idx]).mean())


def cut_clip(src: Path, dst: Path, frames: tuple[int, int], width: int | None = None) -> Path:
    """Frames ``[start, end)`` of ``src`` as H.264 (crf 12) at ``width`` (even height) or native size."""
    start, end = frames
    with av.open(str(src)) as box, av.open(str(dst), "w") as out:
        vin = box.streams.video[0]
        w, h = vin.codec_context.width, vin.codec_context.height
        if width:
            w, h = width, 2 * round(h * width / w / 2)
        rate = vin.average_rate
        vout = out.add_stream("libx264", rate=rate)
        vout.width, vout.height, vout.pix_fmt = w, h, "yuv420p"
        vout.time_base = 1 / rate
        vout.options = {"crf": "12", "preset": "fast"}
        for i, frame in enumerate(box.decode(vin)):
            if i >= end:
                break
            if i < start:
                continue
            rgb = frame.to_ndarray(format="rgb24")
            if (w, h) != (rgb.shape[1], rgb.shape[0]):
                rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
            new = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            new.pts, new.time_base = i - start, 1 / rate
            out.mux(vout.encode(new))
        out.mux(vout.encode(None))
    return dst


def read_frame(path: Path, index: int) -> np.ndarray:
    """Frame ``index`` (0-based, decode order) of a video as RGB uint8."""
    with av.open(str(path)) as box:
        for i, frame in enumerate(box.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="rgb24")
    raise ValueError(f"{path} has no frame {index}")


def write_png(path: Path, rgb: np.ndarray) -> Path:
    if rgb.dtype != np.uint8:
        rgb = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")
    return path


def look_distance(shared: Path, graded: Path, original: Path, reference: Path) -> float:
    return evaluate_pair(shared, graded, original, reference)["look"]


# ------------------------------------------------------------------------------ 1. fitted LUT error


@dataclass
class PairResult:
    pair: str
    size: str  # content W x H
    train_s: float
    train_cpu_s: float
    steps: int
    build_s: float  # build_preset: the 33-point fit and its error
    key_mean: float  # manifest lut_error (256-px key)
    key_p95: float
    full_mean: float  # at the content's full resolution
    full_p95: float
    spread_key: float
    spread_full: float
    preset_kib: float = 0.0
    load_s: float = 0.0
    load_runs: list[float] = field(default_factory=list)
    sizes: list[dict[str, Any]] = field(default_factory=list)  # 17/65-point fits


def measure_pair(pair: Pair, library: Library, other_sizes: bool, repeats: int) -> PairResult:
    key = key_frame(pair.content)
    reference, ref_thumb = load_reference(pair.reference, KEY_SIDE)
    lut, look, report, secs = train_like_pipeline([key], reference)
    learned = LearnedLook(lut, look.net, look.settings, 1.0)  # what _save_preset stores
    build_s, preset = timed(
        lambda: build_preset(
            f"pair{pair.name}",
            mode="learned",
            lut=lut,
            learned=learned,
            reference=ref_thumb,
            reference_name=pair.reference.name,
            keys=[key],
            key_frames=[KeyFrame(source=pair.content.name, frame=0, time=0)],
            train_settings={"steps": None, "seed": 0, "refined_from": None},
        )
    )
    err = preset.manifest.lut_error
    full = read_image(pair.content).rgb
    graded_full = full_look(learned, full)
    de_full = lut_de(preset.fitted_lut, full, graded_full)
    thumb = preset.keys[0]
    result = PairResult(
        pair=pair.name,
        size=f"{full.shape[1]}x{full.shape[0]}",
        train_s=secs.wall,
        train_cpu_s=secs.cpu,
        steps=report.steps,
        build_s=build_s,
        key_mean=err.mean_de2000,
        key_p95=err.p95_de2000,
        full_mean=float(de_full.mean()),
        full_p95=float(np.percentile(de_full, 95)),
        spread_key=spread_de(thumb, full_look(learned, thumb)),
        spread_full=spread_de(full, graded_full),
    )
    if other_sizes:
        for size in OTHER_SIZES:
            fit_s, (fitted, e) = timed(lambda size=size: fit_look_lut(learned, lut, preset.keys, size))
            d = lut_de(fitted, full, graded_full)
            result.sizes.append(
                {
                    "size": size,
                    "fit_s": fit_s,
                    "key_mean": e.mean_de2000,
                    "key_p95": e.p95_de2000,
                    "full_mean": float(d.mean()),
                    "full_p95": float(np.percentile(d, 95)),
                }
            )
    path = library.save(preset, force=True)
    result.preset_kib = path.stat().st_size / 1024
    result.load_s, result.load_runs, _ = median_time(lambda: read_preset(path), repeats)
    return result


# ------------------------------------------------------------------------ 2. preset on the command line


def run_cli(args: list[str], repeats: int) -> dict[str, Any]:
    """``python -m grade ARGS -q --json``: median wall seconds (process start to exit) and the last report."""
    runs, cpus, report = [], [], {}
    for _ in range(max(1, repeats)):
        with clock(children=True) as secs:
            done = subprocess.run(
                [sys.executable, "-m", "grade", *args, "--force", "-q", "--json"],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
        runs.append(secs.wall)
        cpus.append(secs.cpu)
        if done.returncode != 0:
            raise RuntimeError(f"grade {' '.join(args)} failed: {done.stderr.strip()[-400:]}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "wall_s": statistics.median(runs),
        "runs": runs,
        "cpu_s": statistics.median(cpus),
        "seconds": report["seconds"],
        "frames": report["frames"],
    }


def measure_cli(shared: Path, tmp: Path, reference: Path, library: Path, preset: str, repeats: int) -> dict:
    name, start, end, width = CLI_CLIP
    clip = cut_clip(shared / VIDEOS / name, tmp / "cli_clip.mp4", (start, end), width)
    out = str(tmp / "cli_out.mp4")
    base = [str(clip), "-o", out]
    runs = {
        f"--preset {preset}": (base + ["--preset", preset, "--library", str(library)], repeats),
        "--look REF --mode learned": (base + ["--look", str(reference), "--mode", "learned"], 1),
        "--look REF (fast)": (base + ["--look", str(reference)], repeats),
    }
    result = {}
    for label, (argv, n) in runs.items():
        log(f"cli: grade CLIP {label}")
        result[label] = run_cli(argv, n)
    with av.open(str(clip)) as box:
        s = box.streams.video[0]
        result["clip"] = f"{name} frames {start}-{end}, {s.codec_context.width}x{s.codec_context.height}"
    return result


# ----------------------------------------------------------------------------------------- 3. warm start


def measure_warm(shared: Path, tmp: Path, reference_path: Path) -> dict:
    clip = shared / VIDEOS / WARM_CLIP
    shots = detect_shots(clip)
    ia, ib = (shots.shot_of(f) for f in WARM_FRAMES)
    key_a, key_b = shots.keys[ia], shots.keys[ib]
    frames = (shots.shots[ia].key_frame, shots.shots[ib].key_frame)
    reference, _ = load_reference(reference_path, KEY_SIDE)
    log(f"warm start: cold look on key frame {frames[0]}")
    _, look_a, rep_a, secs_a = train_like_pipeline([key_a], reference)
    log(f"warm start: cold and refined on key frame {frames[1]}")
    _, cold, rep_cold, secs_cold = train_like_pipeline([key_b], reference)
    _, refined, rep_ref, secs_ref = train_like_pipeline([key_b], reference, init=look_a)
    original = write_png(tmp / "warm_key_b.png", key_b)
    rows = [{"label": "key frame B ungraded", "steps": None, "train_s": None, "cpu_s": None, "path": original}]
    for label, look, rep, secs in (
        ("look A as is (a preset)", look_a, None, None),
        ("cold train_look on B", cold, rep_cold, secs_cold),
        (f"refine A on B ({REFINE_STEPS} steps)", refined, rep_ref, secs_ref),
    ):
        path = write_png(tmp / f"warm_{len(rows)}.png", look.apply_pixels(key_b))
        rows.append(
            {
                "label": label,
                "steps": rep.steps if rep else 0,
                "train_s": secs.wall if secs else None,
                "cpu_s": secs.cpu if secs else None,
                "train_report_s": rep.seconds if rep else None,
                "path": path,
            }
        )
    for row in rows:
        row.update(evaluate_pair(shared, row.pop("path"), original, reference_path))
    return {
        "clip": WARM_CLIP,
        "key_frames": frames,
        "look_a": {"steps": rep_a.steps, "train_s": secs_a.wall, "cpu_s": secs_a.cpu},
        "rows": rows,
    }


# ---------------------------------------------------------------------------------- 4. scene consistency


def graded_key(report, source: Path, tmp: Path, tag: str) -> tuple[Path, Path, int]:
    """PNGs of the key frame (the longest shot's) of a graded output and of its source."""
    shot = max(report.shots, key=lambda s: s.end - s.start)
    graded = write_png(tmp / f"{tag}_graded.png", read_frame(Path(report.output), shot.key_frame))
    original = write_png(tmp / f"{tag}_original.png", read_frame(source, shot.key_frame))
    return graded, original, shot.key_frame


def measure_scene(scene: Scene, shared: Path, tmp: Path, reference: Path) -> dict:
    src = shared / VIDEOS / scene.clip
    a = cut_clip(src, tmp / f"{scene.name}_1.mp4", scene.first, SCENE_WIDTH)
    b = cut_clip(src, tmp / f"{scene.name}_2.mp4", scene.second, SCENE_WIDTH)
    result: dict[str, Any] = {"scene": scene.name, "what": scene.what, "clip": scene.clip}
    keys: dict[str, tuple[Path, Path]] = {}
    log(f"scene {scene.name}: separately")
    with clock() as secs:
        sep = [
            grade_file(s, reference, GradeOptions(mode="learned", force=True), output=tmp / f"{scene.name}_sep{n}.mp4")
            for n, s in enumerate((a, b), 1)
        ]
    result["separate_s"], result["separate_cpu_s"] = secs.wall, secs.cpu
    log(f"scene {scene.name}: together (joint)")
    outs = [tmp / f"{scene.name}_joint{n}.mp4" for n in (1, 2)]
    with clock() as secs:
        joint = grade_files([a, b], reference, GradeOptions(mode="learned", joint=True, force=True), outputs=outs)
    result["joint_s"], result["joint_cpu_s"] = secs.wall, secs.cpu
    result["shots"] = [len(r.shots) for r in sep]
    for label, reports in (("separate", sep), ("joint", joint)):
        pngs = [graded_key(r, s, tmp, f"{scene.name}_{label}{n}") for n, (r, s) in enumerate(zip(reports, (a, b)), 1)]
        keys[label] = (pngs[0][0], pngs[1][0])
        keys.setdefault("ungraded", (pngs[0][1], pngs[1][1]))
        result[f"key_frames_{label}"] = [p[2] for p in pngs]
        result[f"to_ref_{label}"] = [look_distance(shared, g, o, reference) for g, o, _ in pngs]
    for label, (g1, g2) in keys.items():
        result[f"between_{label}"] = look_distance(shared, g1, keys["ungraded"][0], g2)
    return result


# ----------------------------------------------------------------------------------------------- report


def print_header(info: dict[str, Any], args) -> None:
    print(f"**date** {info['date']} · **cpu** {info['cpu']} · **cores** {info['cores']}", end="")
    print(f" · torch threads {info['torch_threads']} · load average {fmt(info['load_average'], 2)}")
    print("  \n" + " · ".join(f"{k} {info[k]}" for k in ("python", "torch", "av", "cv2", "numpy")))
    print(f"  \ncommand: `python benchmarks/presets.py {' '.join(args)}`")


def print_pairs(results: list[PairResult]) -> None:
    print(f"\n### 1. Fitted 33-point LUT vs the full learned look (CIEDE2000; target mean <= {TARGET_DE})\n")
    rows = [
        [
            r.pair,
            r.size,
            r.train_s,
            r.train_cpu_s,
            r.steps,
            r.build_s,
            r.key_mean,
            r.key_p95,
            r.full_mean,
            r.full_p95,
            r.spread_key,
            r.spread_full,
            "met" if r.key_mean <= TARGET_DE and r.full_mean <= TARGET_DE else "NOT met",
        ]
        for r in results
    ]
    means = [statistics.fmean(getattr(r, k) for r in results) for k in ("key_mean", "key_p95", "full_mean")]
    p95_full = statistics.fmean(r.full_p95 for r in results)
    spreads = [statistics.fmean(getattr(r, k) for r in results) for k in ("spread_key", "spread_full")]
    rows.append(["mean", "", None, None, None, None, *means, p95_full, *spreads, ""])
    headers = [
        "pair",
        "content",
        "train s",
        "cpu s",
        "steps",
        "build s",
        "ΔE mean key256",
        "ΔE p95 key256",
        "ΔE mean full",
        "ΔE p95 full",
        "spread key256",
        "spread full",
        "mean ≤ 2.0",
    ]
    print(md_table(headers, rows, 2))
    print(
        "\nkey256: `preset.manifest.lut_error` (the stored 256-px key thumbnail); full: `LearnedLook.apply` vs "
        "`apply_lut(fitted)` on the content at full size. build s: `build_preset` (33-point fit + its error). "
        "train s: wall seconds of `fast_lut` + `train_look`, cpu s: the process's CPU seconds meanwhile (about "
        "2x wall when it had both cores). spread: mean ΔE2000 of the full look's output from the mean output of its "
        "input-colour bin (2 code values a side): the same colour graded differently in different places, which no "
        "3D LUT can hold (roughly a floor for any LUT; it errs low, a bin with one pixel counts 0)."
    )
    sized = [r for r in results if r.sizes]
    if sized:
        print("\n#### LUT size (fit_look_lut on the key thumbnail)\n")
        rows = []
        for r in sized:
            by = {s["size"]: s for s in r.sizes}
            by[33] = {
                "size": 33,
                "fit_s": r.build_s,
                "key_mean": r.key_mean,
                "key_p95": r.key_p95,
                "full_mean": r.full_mean,
                "full_p95": r.full_p95,
            }
            rows += [
                [r.pair, s, by[s]["fit_s"], by[s]["key_mean"], by[s]["key_p95"], by[s]["full_mean"], by[s]["full_p95"]]
                for s in sorted(by)
            ]
        headers = ["pair", "points", "fit s", "ΔE mean key256", "ΔE p95 key256", "ΔE mean full", "ΔE p95 full"]
        print(md_table(headers, rows, 2))
        print("\n(33: `build_preset`'s time, fit plus error; 17/65: `fit_look_lut`, fit plus error)")


def print_loading(results: list[PairResult], cli: dict | None, repeats: int) -> None:
    print(f"\n### 2. Loading a learned preset (target ≤ {TARGET_LOAD_S} s)\n")
    rows = [[r.pair, r.preset_kib, r.load_s * 1000, min(r.load_runs) * 1000] for r in results]
    print(md_table(["preset", "size KiB", f"read_preset ms (median of {repeats})", "min ms"], rows, 1))
    if cli is None:
        return
    print(f"\n#### Command line on a short clip ({cli['clip']})\n")
    rows = []
    for label, r in cli.items():
        if label == "clip":
            continue
        s = r["seconds"]
        runs = len(r["runs"])
        rows.append(
            [
                f"`grade CLIP {label}`",
                r["wall_s"],
                r["cpu_s"],
                runs,
                s.get("total"),
                s.get("look"),
                s.get("analyse"),
                s.get("fit"),
                s.get("render"),
                r["frames"],
            ]
        )
    headers = [
        "command",
        "wall s (median)",
        "cpu s",
        "runs",
        "in-process s",
        "look",
        "analyse",
        "fit",
        "render",
        "frames",
    ]
    print(md_table(headers, rows, 2))
    print(
        "\nwall: process start to exit (Python and torch import included); cpu s: the child's CPU seconds; "
        "the rest from the report's `seconds` "
        "(look: loading the preset or reference; fit: fast fit + training; render: decode, grade, encode)."
    )


def print_warm(warm: dict | None) -> None:
    if warm is None:
        return
    fa, fb = warm["key_frames"]
    a = warm["look_a"]
    print(
        f"\n### 3. Warm start: refining a look on another key frame ({warm['clip']}: look A trained cold on key "
        f"frame {fa} in {a['train_s']:.1f} s ({a['cpu_s']:.1f} cpu s) / {a['steps']} steps; B = key frame {fb})\n"
    )
    rows = [
        [r["label"], r["steps"], r["train_s"], r["cpu_s"], r["look"], r["structure"], r["affine"]] for r in warm["rows"]
    ]
    headers = ["look on key frame B", "steps", "train s", "cpu s", "look ↓", "structure ↑", "affine ↓"]
    print(md_table(headers, rows, 3))
    print(
        "\ntrain s: fast fit + training (refine keeps A's LUT: training only); "
        "scores: gradeeval `pair` against the reference."
    )


def print_scenes(scenes: list[dict]) -> None:
    if not scenes:
        return
    print("\n### 4. Scene consistency: look distance between the two graded key frames (lower: more alike)\n")
    rows = []
    for s in scenes:
        rows.append(
            [
                s["scene"],
                s["what"],
                " / ".join(map(str, s["key_frames_separate"])),
                s["between_ungraded"],
                s["between_separate"],
                s["between_joint"],
                statistics.fmean(s["to_ref_separate"]),
                statistics.fmean(s["to_ref_joint"]),
                f"{s['separate_s']:.1f} ({s['separate_cpu_s']:.0f})",
                f"{s['joint_s']:.1f} ({s['joint_cpu_s']:.0f})",
                "met" if s["between_joint"] < s["between_separate"] else "NOT met",
            ]
        )
    headers = [
        "scene",
        "segments",
        "key frames",
        "ungraded",
        "separately",
        "together",
        "to ref sep.",
        "to ref tog.",
        "sep. s (cpu)",
        "tog. s (cpu)",
        "together < separately",
    ]
    print(md_table(headers, rows, 2))
    print(
        f"\nsegments cut with PyAV at {SCENE_WIDTH} px wide; separately: `grade_file` each in learned mode; together: "
        "`grade_files([a, b], ref, GradeOptions(mode='learned', joint=True))`. Columns ungraded/separately/together: "
        "gradeeval look distance between key frame 1 and key frame 2 (taken as the reference); to ref: mean of the two "
        "graded key frames' look distance to the reference still; s: wall (CPU) seconds of the grading calls."
    )


def print_targets(results: list[PairResult], cli: dict | None, warm: dict | None, scenes: list[dict]) -> None:
    print("\n### Targets\n")
    rows = []
    miss_key = [r.pair for r in results if r.key_mean > TARGET_DE]
    miss_full = [r.pair for r in results if r.full_mean > TARGET_DE]
    for label, miss in (("key256", miss_key), ("full res", miss_full)):
        rows.append(
            [
                f"33-point LUT mean ΔE2000 ≤ {TARGET_DE} per pair ({label})",
                f"{len(results) - len(miss)} of {len(results)}",
                "all met" if not miss else "NOT met: " + ", ".join(miss),
            ]
        )
    worst = max(r.load_s for r in results)
    rows.append(
        [f"read_preset ≤ {TARGET_LOAD_S} s", f"max median {worst * 1000:.0f} ms", _verdict(worst, TARGET_LOAD_S)]
    )
    if cli:
        keys = [k for k in cli if k.startswith("--preset")]
        p, learned = cli[keys[0]], cli["--look REF --mode learned"]
        fast = cli["--look REF (fast)"]
        rows.append(
            [
                "preset run costs only the render",
                f"{p['wall_s']:.1f} s vs learned {learned['wall_s']:.1f} s, fast {fast['wall_s']:.1f} s "
                f"(fit {p['seconds'].get('fit', 0):.2f} s vs {learned['seconds'].get('fit', 0):.1f} s)",
                "met" if p["seconds"].get("fit", 0) < 1.0 else "NOT met",
            ]
        )
    if warm:
        r = {row["label"].split(" ")[0]: row for row in warm["rows"]}
        cold, ref = r["cold"], r["refine"]
        rows.append(
            [
                "refine: fewer steps, look as good",
                f"{ref['steps']} vs {cold['steps']} steps, {ref['train_s']:.1f} vs {cold['train_s']:.1f} s; "
                f"look {ref['look']:.2f} vs {cold['look']:.2f}",
                "met" if ref["train_s"] < cold["train_s"] and ref["look"] <= cold["look"] * 1.1 else "NOT met",
            ]
        )
    if scenes:
        ok = sum(s["between_joint"] < s["between_separate"] for s in scenes)
        rows.append(
            [
                "scene look: key frames closer together than separately",
                f"{ok} of {len(scenes)} scenes",
                "met" if ok == len(scenes) else "NOT met",
            ]
        )
    print(md_table(["target", "measured", "verdict"], rows))


def _verdict(value: float, bound: float) -> str:
    return "met" if value <= bound else "NOT met"


# ------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser(__doc__)
    parser.add_argument("--pairs", nargs="*", metavar="NN", help="only these pairs (e.g. 08 34; default: all)")
    parser.add_argument(
        "--quick", action="store_true", help=f"pairs {' '.join(QUICK_PAIRS)} (unless --pairs), one scene, 17/65 once"
    )
    parser.add_argument("--out-dir", type=Path, metavar="DIR", help="keep scratch files here (default: a temp dir)")
    parser.add_argument("--ref-pair", default="34", metavar="NN", help="reference of parts 2-4 (default 34)")
    parser.add_argument("--size-pairs", type=int, help="pairs with 17/65-point fits (default 2; 1 with --quick)")
    parser.add_argument("--repeats", type=int, default=5, help="read_preset timings (median; default 5)")
    parser.add_argument("--cli-repeats", type=int, default=3, help="runs of the preset and fast commands (default 3)")
    parser.add_argument(
        "--scenes",
        help=f"comma-separated scenes ({','.join(s.name for s in SCENES)}; default {','.join(DEFAULT_SCENES)}, "
        "--quick bear)",
    )
    parser.add_argument(
        "--skip", default="", help="comma-separated parts to leave out: cli, warm, scenes (the pairs always run)"
    )
    args = parser.parse_args(argv)
    shared = shared_dir(args.shared)
    found = {p.name: p for p in find_pairs(shared / PAIRS)}
    names = args.pairs or (list(QUICK_PAIRS) if args.quick else sorted(found))
    unknown = [n for n in [*names, args.ref_pair] if n not in found]
    if unknown:
        sys.exit(f"no such pair(s): {', '.join(unknown)} (have {', '.join(sorted(found))})")
    if args.ref_pair not in names:
        names.append(args.ref_pair)  # its preset is the one timed on the command line
    scene_names = args.scenes.split(",") if args.scenes else (["bear"] if args.quick else list(DEFAULT_SCENES))
    scenes = [s for s in SCENES if s.name in scene_names]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    size_pairs = args.size_pairs if args.size_pairs is not None else (1 if args.quick else 2)
    reference = found[args.ref_pair].reference

    info = system_info()
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="grade-presets-") as scratch:
        tmp = args.out_dir or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        library = Library(tmp / "library", shipped=None)
        results = []
        for n, name in enumerate(names):
            t = time.perf_counter()
            results.append(measure_pair(found[name], library, n < size_pairs, args.repeats))
            log(f"pair {name} done ({time.perf_counter() - t:.0f} s)")
        cli = warm = None
        if "cli" not in skip:
            cli = measure_cli(shared, tmp, reference, library.root, f"pair{args.ref_pair}", args.cli_repeats)
        if "warm" not in skip:
            warm = measure_warm(shared, tmp, reference)
        scene_results = [] if "scenes" in skip else [measure_scene(s, shared, tmp, reference) for s in scenes]
    total = time.perf_counter() - t_all

    print_header(info, argv)
    print(
        f"  \nreference for parts 2-4: `{reference.name}`; whole run {total / 60:.1f} min; "
        f"load average at the end {os.getloadavg()[0]:.2f}"
    )
    print_pairs(results)
    print_loading(results, cli, args.repeats)
    print_warm(warm)
    print_scenes(scene_results)
    print_targets(results, cli, warm, scene_results)
    save_json(
        args.json,
        {
            "system": info,
            "reference": str(reference),
            "pairs": [asdict(r) for r in results],
            "cli": cli,
            "warm": warm,
            "scenes": scene_results,
            "seconds": total,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
