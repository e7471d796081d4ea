"""Optical flow and tolerances of the temporal stabiliser (``grade.temporal``), on real footage.

Reads short segments of ``<shared>/samples/video/*.mp4`` in place (PyAV, luma only; at most
``--frames`` frames per segment) and prints:

1. Flow: DIS presets (and finest pyramid levels) x flow long side. Median milliseconds per flow
   (one ``calc``; a stabiliser step needs two), and the quality of the backward flow
   current -> previous: mean photometric warp error ``|warp(prev, flow) - cur|`` (8-bit code
   values) on pixels the forward-backward test keeps, the fraction kept, and the error over all
   pixels; evaluated on common grids (``--eval-sides``) so different flow sizes compare fairly.
   ``zero flow`` is the error without motion compensation.
2. Frame-wide checks at the default settings: ``|log gain|`` and mean photometric confidence of
   ordinary frame pairs, pairs across the known cuts, frames of different shots paired as if a cut
   had been missed, real fades (PySceneDetect's test video), and synthetic fades/flashes applied to
   ordinary pairs; the resulting frame factor (1 = stabilise, 0 = reset). Then sweeps of the
   photometric and forward-backward tolerances.
3. Confidence maps at the default settings: fractions flagged by each test.
4. Cost of ``Stabiliser.step`` (a 192x108 field) with 1080p, 720p and field-sized luma.
5. Unless ``--no-look``: a learned look trained on a bear frame (``--look-steps``), its per-frame
   fields stabilised with several ``max_weight`` (``--weights``). The grade's change along the
   motion is measured at the current frame's own colours (so moving content does not count, only
   the field's change): first difference (trend + jitter) and second difference (jitter), 8-bit
   codes on pixels where an independent MEDIUM flow is consistent; and the mean / 99th percentile
   deviation from the per-frame grade (the lag the filter costs).

Run::

    python benchmarks/flow_choice.py [--frames 60] [--no-look] [--json flow.json]
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import torch
from common import make_parser, print_system, read_rgb, save_json, shared_dir, system_info, table

from grade.temporal import (
    Stabiliser,
    StabiliserSettings,
    fb_confidence,
    flow_dis,
    flow_size,
    frame_factor,
    global_gain,
    make_dis,
    motion_boundaries,
    photometric_confidence,
    resize_flow,
    warp,
)

VIDEOS = Path("samples/video")
BEAR = "04_cotracker_bear.mp4"
PSD = "01_psd_testvideo.mp4"  # stills with hard cuts and linear fades, one zooming shot (frames ~528-558)
# (clip, first frame, frames, kind): "motion" segments measure the flow; "fade" the frame-wide checks
SEGMENTS = [
    (BEAR, 0, 60, "motion"),  # handheld, fast (mean |frame difference| ~15 codes)
    (PSD, 525, 35, "motion"),  # slow zoom
    (PSD, 40, 30, "static"),  # a still shot (compression noise only)
    (PSD, 209, 33, "fade"),  # fade in from black
    (PSD, 329, 33, "fade"),  # fade out to black
]
CUTS = {PSD: [30, 180]}  # hard cuts (first frame of the new shot), in PySceneDetect's outputs
# frames of different shots paired as if a cut had been missed (both of PSD's cuts above involve black frames)
CROSS = [
    ((PSD, 100), (PSD, 300)),
    ((PSD, 300), (PSD, 500)),
    ((PSD, 500), (PSD, 600)),
    ((PSD, 100), (BEAR, 0)),
    ((BEAR, 40), (PSD, 500)),
    ((PSD, 600), (BEAR, 70)),
]
SIDES = (128, 192, 256, 384)
CONFIGS = [  # (preset, finest scale; None = the preset's own)
    ("ultrafast", None),
    ("fast", None),
    ("medium", None),
    ("ultrafast", 1),
    ("ultrafast", 0),
    ("fast", 1),
]


def read_frames(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    """Luma (uint8, full resolution) of the frames whose index is in ``wanted``."""
    out: dict[int, np.ndarray] = {}
    last = max(wanted)
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                out[i] = frame.to_ndarray(format="gray")
            if i >= last:
                break
    return out


def read_rgb_frames(path: Path, first: int, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """RGB float32 ``(h, w, 3)`` in [0, 1], area-resized to ``size`` ``(h, w)``."""
    out = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= first + count:
                break
            if i >= first:
                rgb = frame.to_ndarray(format="rgb24")
                out.append(cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA).astype(np.float32) / 255)
    return out


def shrink(img: np.ndarray, side: int) -> np.ndarray:
    h, w = flow_size(img.shape[0], img.shape[1], side)
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


def cfg_name(preset: str, fs: int | None) -> str:
    return preset if fs is None else f"{preset} fs{fs}"


def flow_table(pairs: list[tuple[np.ndarray, np.ndarray]], eval_sides: list[int]) -> tuple[list, dict]:
    rows, raw = [], {}
    evals = {
        e: [(shrink(p, e).astype(np.float32), shrink(c, e).astype(np.float32)) for p, c in pairs] for e in eval_sides
    }
    base_row: list[Any] = ["zero flow", "-", "-"]
    for e in eval_sides:
        err = float(np.mean([np.abs(p - c).mean() for p, c in evals[e]]))
        base_row += ["-", "1.000", err]
    rows.append(base_row)
    for preset, fs in CONFIGS:
        for side in SIDES:
            dis = make_dis(preset, fs)
            small = [(shrink(p, side), shrink(c, side)) for p, c in pairs]
            flow_dis(small[0][1], small[0][0], dis)  # warm-up
            times, flows = [], []
            for p, c in small:
                t = time.perf_counter()
                back = flow_dis(c, p, dis)  # current -> previous
                times.append(time.perf_counter() - t)
                t = time.perf_counter()
                fwd = flow_dis(p, c, dis)
                times.append(time.perf_counter() - t)
                flows.append((back, fb_confidence(back, fwd)))
            ms = 1000 * statistics.median(times)
            row: list[Any] = [cfg_name(preset, fs), side, ms]
            cell = {"ms_per_flow": ms}
            for e in eval_sides:
                kept_err, kept, all_err = [], [], []
                for (back, conf), (pe, ce) in zip(flows, evals[e]):
                    h, w = pe.shape
                    err = np.abs(warp(pe, resize_flow(back, h, w)) - ce)
                    mask = cv2.resize(conf, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5
                    kept.append(float(mask.mean()))
                    kept_err.append(float(err[mask].mean()) if mask.any() else float("nan"))
                    all_err.append(float(err.mean()))
                row += [float(np.nanmean(kept_err)), float(np.mean(kept)), float(np.mean(all_err))]
                cell[f"eval{e}"] = {"err_kept": row[-3], "kept": row[-2], "err_all": row[-1]}
            rows.append(row)
            raw[f"{cfg_name(preset, fs)}@{side}"] = cell
            print(".", end="", flush=True, file=sys.stderr)
    print(file=sys.stderr)
    return rows, raw


def pair_checks(prev: np.ndarray, cur: np.ndarray, s: StabiliserSettings, dis) -> dict[str, Any]:
    """Frame-wide figures of one pair at the stabiliser's settings (luma uint8 at any size)."""
    p8, c8 = shrink(prev, s.flow_side), shrink(cur, s.flow_side)
    pl, cl = p8.astype(np.float32) / 255, c8.astype(np.float32) / 255
    back = flow_dis(c8, p8, dis)
    fwd = flow_dis(p8, c8, dis)
    diff = cv2.blur(np.abs(warp(pl, back) - cl), (3, 3))
    fb = fb_confidence(back, fwd, s.fb_tol, s.fb_rel)
    photo = photometric_confidence(warp(pl, back), cl, s.photo_tol)
    mb = motion_boundaries(back, s.boundary_tol, s.boundary_rel)
    gain = global_gain(pl, cl)
    return {
        "gain": gain,
        "photo": float(photo.mean()),
        "factor": frame_factor(gain, float(photo.mean()), s),
        "diff": diff[fb > 0.5],
        "fb_low": float((fb < 0.5).mean()),
        "mb": float((mb > 0.5).mean()),
        "photo_low": float((photo < 0.5).mean()),
        "conf": float((fb * photo * (1 - mb)).mean()),
        "pl": pl,
        "cl": cl,
        "back": back,
        "fwd": fwd,
    }


def synthetic(cur: np.ndarray, kind: str) -> np.ndarray:
    f = cur.astype(np.float32)
    if kind.startswith("x"):  # gain step
        f = f * float(kind[1:])
    elif kind == "flash":
        f = f + 0.3 * (255 - f)
    return np.clip(f + 0.5, 0, 255).astype(np.uint8)


def pct(values: list[float] | np.ndarray, q: float) -> float:
    return float(np.percentile(np.asarray(values, np.float64), q)) if len(values) else float("nan")


def checks_tables(groups: dict[str, list[tuple[np.ndarray, np.ndarray]]], s: StabiliserSettings) -> dict[str, Any]:
    dis = make_dis(s.preset, s.finest_scale)
    rows, raw = [], {}
    kinds: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {
        "motion": groups["motion"],
        "static": groups["static"],
        "cut": groups["cut"],
        "cross-shot": groups["cross"],
        "real fade": groups["fade"],
    }
    for k in ("x0.97", "x0.9", "x0.8", "x0.5", "flash"):
        kinds[f"synthetic {k}"] = [(p, synthetic(c, k)) for p, c in groups["motion"]]
    stats: dict[str, list[dict[str, Any]]] = {}
    for name, pairs in kinds.items():
        res = [pair_checks(p, c, s, dis) for p, c in pairs]
        stats[name] = res
        g = [r["gain"] for r in res]
        ph = [r["photo"] for r in res]
        fac = [r["factor"] for r in res]
        rows.append(
            [name, len(res), pct(g, 50), pct(g, 99), pct(ph, 1), pct(ph, 50), pct(fac, 1), pct(fac, 50), pct(fac, 99)]
        )
        raw[name] = {"gain": g, "photo": ph, "factor": fac}
    print(
        f"\nframe-wide checks at the defaults (gain_tol {s.gain_tol}, photo_tol {s.photo_tol}, "
        f"reset_below {s.reset_below}): factor 1 = stabilise, 0 = reset"
    )
    heads = ["pairs", "n", "|log g| p50", "p99", "photo p1", "p50", "factor p1", "p50", "p99"]
    print(table(heads, rows))

    diffs = np.concatenate([r["diff"] for name in ("motion", "static") for r in stats[name]])
    print(
        "\n|warped prev - cur| luma (box 3x3, [0, 1]) on fb-consistent pixels of ordinary pairs: "
        + "  ".join(f"p{q} {pct(diffs, q):.4f}" for q in (50, 90, 95, 99))
    )
    raw["diff_percentiles"] = {q: pct(diffs, q) for q in (50, 90, 95, 99)}

    # photometric tolerance sweep: mean confidence (median over pairs) per kind of pair
    sweep_rows = []
    names = ["motion", "static", "real fade", "synthetic x0.97", "synthetic x0.9", "synthetic x0.5", "cut"]
    for tol in (0.02, 0.03, 0.04, 0.06, 0.08):
        row: list[Any] = [f"{tol:.2f}"]
        for name in names:
            vals = [float(photometric_confidence(warp(r["pl"], r["back"]), r["cl"], tol).mean()) for r in stats[name]]
            row.append(pct(vals, 50) if name != "motion" else pct(vals, 5))
        sweep_rows.append(row)
    print("\nphotometric tolerance sweep: mean photometric confidence, median over pairs (motion: 5th percentile)")
    print(table(["photo_tol", *names], sweep_rows))

    fb_rows = []
    for tol in (0.25, 0.5, 0.7, 1.0, 1.5):
        kept, err_k, err_r = [], [], []
        for r in stats["motion"]:
            keep = fb_confidence(r["back"], r["fwd"], tol, s.fb_rel) > 0.5
            err = np.abs(warp(r["pl"], r["back"]) - r["cl"]) * 255
            kept.append(float(keep.mean()))
            err_k.append(float(err[keep].mean()))
            if (~keep).any():
                err_r.append(float(err[~keep].mean()))
        fb_rows.append([f"{tol:.2f}", float(np.mean(kept)), float(np.mean(err_k)), float(np.mean(err_r))])
    print(f"\nforward-backward tolerance sweep on motion pairs (flow grid, fb_rel {s.fb_rel}): warp error, 8-bit codes")
    print(table(["fb_tol px", "kept", "err kept", "err rejected"], fb_rows))
    raw["fb_sweep"] = fb_rows

    conf_rows = []
    for name in ("motion", "static"):
        res = stats[name]
        conf_rows.append(
            [
                name,
                np.mean([r["fb_low"] for r in res]),
                np.mean([r["mb"] for r in res]),
                np.mean([r["photo_low"] for r in res]),
                np.mean([r["conf"] for r in res]),
            ]
        )
    print(
        f"\nconfidence maps at the defaults (flow side {s.flow_side}, {cfg_name(s.preset, s.finest_scale)}): "
        "fraction of pixels below 0.5 / flagged, mean confidence"
    )
    print(table(["pairs", "fb < 0.5", "boundary", "photo < 0.5", "mean conf"], conf_rows))
    raw["confidence"] = conf_rows
    return raw


def step_cost(frames: list[np.ndarray], s: StabiliserSettings, repeats: int = 3) -> dict[str, Any]:
    field = torch.rand(1, 12, 108, 192)
    rows, raw = [], {}
    for label, size in (("1920x1080", (1080, 1920)), ("1280x720", (720, 1280)), ("192x108", (108, 192))):
        lumas = [
            cv2.resize(
                f, (size[1], size[0]), interpolation=cv2.INTER_AREA if f.shape[0] > size[0] else cv2.INTER_LINEAR
            )
            for f in frames
        ]
        times = []
        for _ in range(repeats):
            stab = Stabiliser(s)
            for lu in lumas:
                f = field + 0.01 * torch.randn_like(field)
                t = time.perf_counter()
                stab.step(lu, f)
                times.append(time.perf_counter() - t)
            times = times[1:]  # first frame: no flow
        ms = [1000 * t for t in times]
        rows.append([label, len(ms), pct(ms, 50), pct(ms, 90), 1000 * stab.seconds / stab.frames])
        raw[label] = {"median_ms": pct(ms, 50), "p90_ms": pct(ms, 90)}
    print("\nStabiliser.step, 192x108x12 field, defaults (ms; mean includes the cheap first frame)")
    print(table(["luma", "steps", "median", "p90", "mean"], rows))
    return raw


def _apply(field: np.ndarray, base: np.ndarray) -> np.ndarray:
    """``M · base + t`` per pixel, clipped: field ``(h, w, 12)``, base ``(h, w, 3)``."""
    m = field[..., :9].reshape(*field.shape[:2], 3, 3)
    return np.clip(np.einsum("hwij,hwj->hwi", m, base) + field[..., 9:], 0.0, 1.0)


def look_section(
    shared: Path, videos: Path, frames: int, steps: int, s: StabiliserSettings, weights: list[float]
) -> dict[str, Any]:
    from grade.model.affine import working_size
    from grade.model.look import LookSettings
    from grade.train import TrainSettings, train_look
    from grade.transfer import fast_lut

    segs = [
        (BEAR, 0, frames, "bear (handheld)"),
        (PSD, 525, min(frames, 35), "psd zoom"),
        (PSD, 40, min(frames, 30), "psd still"),
        (PSD, 209, min(frames, 33), "psd fade in"),
    ]
    look_settings = LookSettings()
    with av.open(str(videos / BEAR)) as c:
        key_rgb = next(iter(c.decode(video=0))).to_ndarray(format="rgb24")
    key = torch.from_numpy(key_rgb.astype(np.float32) / 255).permute(2, 0, 1)
    ref = torch.from_numpy(read_rgb(shared / "samples/pairs/03_reference.png")).permute(2, 0, 1)
    t = time.perf_counter()
    lut = fast_lut(key, ref)
    look, _ = train_look(key, ref, lut, look_settings, TrainSettings(steps=steps))
    print(
        f"\nlearned look: trained {time.perf_counter() - t:.1f} s ({steps} steps at most) on {BEAR} frame 0 "
        "vs pairs/03_reference.png"
    )
    eval_dis = make_dis("medium", 0)
    rows, raw = [], {}
    for clip, first, count, label in segs:
        with av.open(str(videos / clip)) as c:
            st = c.streams.video[0]
            full = (st.height, st.width)
        h, w = working_size(full[0], full[1], look_settings.working_side)
        small = read_rgb_frames(videos / clip, first, count, (h, w))
        got = read_frames(videos / clip, set(range(first, first + count)))
        lumas = [got[i] for i in sorted(got)]
        fields, bases = [], []
        t = time.perf_counter()
        for rgb in small:
            fld, base = look.field_small(torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous())
            fields.append(fld.clone())
            bases.append(np.ascontiguousarray(base[0].numpy().transpose(1, 2, 0)))
        field_ms = 1000 * (time.perf_counter() - t) / len(small)
        # independent evaluation flow (current -> previous), MEDIUM at twice the working size, and where it holds
        g8 = [shrink(lu, max(h, w) * 2) for lu in lumas]
        evals: list[tuple[np.ndarray, np.ndarray]] = []
        for i in range(1, len(g8)):
            back = flow_dis(g8[i], g8[i - 1], eval_dis)
            fwd = flow_dis(g8[i - 1], g8[i], eval_dis)
            conf = fb_confidence(back, fwd) * (1 - motion_boundaries(back))
            evals.append((resize_flow(back, h, w), cv2.resize(conf, (w, h), interpolation=cv2.INTER_AREA) > 0.5))
        raw_hwc = [np.ascontiguousarray(f[0].numpy().transpose(1, 2, 0)) for f in fields]
        for mw in weights:
            stab = Stabiliser(replace(s, max_weight=mw)) if mw > 0 else None
            outs = []
            for lu, fld in zip(lumas, fields):
                o = stab.step(lu, fld) if stab is not None else fld
                outs.append(np.ascontiguousarray(o[0].numpy().transpose(1, 2, 0)))
            # the change of the *grade* along the motion, at the current frame's own colours: first difference
            # (trend + jitter) and second difference (jitter: ~0 for a steady trend, ~1.7x the first for noise)
            d1, d2, dev = [], [], []
            for i in range(2, len(outs)):
                flow, ok = evals[i - 1]
                flow1, ok1 = evals[i - 2]
                ok = ok & (warp(ok1.astype(np.float32), flow) > 0.99)
                a0 = _apply(outs[i], bases[i])
                a1 = _apply(warp(outs[i - 1], flow), bases[i])
                a2 = _apply(warp(warp(outs[i - 2], flow1), flow), bases[i])
                d1.append(float(np.abs(a0 - a1)[ok].mean()))
                d2.append(float(np.abs(a0 - 2 * a1 + a2)[ok].mean()))
                dev.append(np.abs(a0 - _apply(raw_hwc[i], bases[i])))
            devs = np.stack(dev) * 255
            row = [
                label,
                mw,
                255 * float(np.mean(d1)),
                255 * float(np.mean(d2)),
                float(devs.mean()),
                pct(devs.ravel(), 99),
                stab.resets if stab else "-",
                1000 * stab.seconds / stab.frames if stab else "-",
                field_ms,
            ]
            rows.append(row)
            raw[f"{label}@{mw}"] = dict(zip(["d1", "d2", "dev_mean", "dev_p99", "resets"], row[2:7]))
    print(
        "change of the graded working-resolution frames along the motion, 8-bit codes, mean over pixels where an\n"
        "independent MEDIUM flow is consistent: d1 = |first difference| (trend + jitter), d2 = |second difference|\n"
        "(jitter); dev = |stabilised - per-frame grade|; max_weight 0 = no stabilisation"
    )
    heads = ["segment", "max_weight", "d1", "d2 jitter", "dev mean", "dev p99", "resets", "step ms", "field ms"]
    print(table(heads, rows))
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--frames", type=int, default=60, help="frames per segment at most (default 60)")
    parser.add_argument("--eval-sides", type=int, nargs="+", default=[192, 384], help="evaluation grids (long side)")
    parser.add_argument("--no-look", action="store_true", help="skip the learned-look section (~1 min)")
    parser.add_argument("--look-steps", type=int, default=120, help="training steps of that look (default 120)")
    parser.add_argument(
        "--weights", type=float, nargs="+", default=[0, 0.5, 0.7, 0.8, 0.85, 0.9], help="max_weight values to compare"
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch threads for the look section (default 1: on a loaded 2-core machine 2 threads ran ~15x slower)",
    )
    args = parser.parse_args(argv)
    shared = shared_dir(args.shared)
    videos = shared / VIDEOS
    info = system_info()
    print_system(info)
    s = StabiliserSettings()
    print(f"defaults: {s}")
    raw: dict[str, Any] = {"system": info, "settings": asdict(s)}

    groups: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {
        "motion": [],
        "static": [],
        "fade": [],
        "cut": [],
        "cross": [],
    }
    wanted: dict[str, set[int]] = {}
    for clip, first, count, _ in SEGMENTS:
        wanted.setdefault(clip, set()).update(range(first, first + min(count, args.frames)))
    for clip, cuts in CUTS.items():
        wanted.setdefault(clip, set()).update(i for c in cuts for i in (c - 1, c))
    for pair in CROSS:
        for clip, i in pair:
            wanted.setdefault(clip, set()).add(i)
    frames = {clip: read_frames(videos / clip, idx) for clip, idx in wanted.items()}
    for clip, first, count, kind in SEGMENTS:
        n = min(count, args.frames)
        groups[kind] += [(frames[clip][i - 1], frames[clip][i]) for i in range(first + 1, first + n)]
    groups["cut"] = [(frames[c][i - 1], frames[c][i]) for c, cuts in CUTS.items() for i in cuts]
    for (ca, ia), (cb, ib) in CROSS:
        a, b = frames[ca][ia], frames[cb][ib]
        groups["cross"].append((a, cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)))
    print("segments: " + ", ".join(f"{c} {f}-{f + min(n, args.frames) - 1} ({k})" for c, f, n, k in SEGMENTS))

    rows, raw["flow"] = flow_table(groups["motion"], args.eval_sides)
    heads = ["DIS", "side", "ms/flow"]
    for e in args.eval_sides:
        heads += [f"err@{e} kept", "kept", "err all"]
    print(
        f"\nflow current -> previous on {len(groups['motion'])} motion pairs; warp error in 8-bit codes "
        f"on grids of long side {', '.join(map(str, args.eval_sides))}"
    )
    print(table(heads, rows))

    raw["checks"] = checks_tables(groups, s)
    raw["step"] = step_cost([c for _, c in groups["motion"][:40]], s)
    if not args.no_look:
        torch.set_num_threads(args.torch_threads)
        raw["look"] = look_section(shared, videos, args.frames, args.look_steps, s, args.weights)
    save_json(args.json, raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
