"""Colour management: its cost per 1920x1080 frame, the baked LUTs against OCIO's processor, the
throughput of a log clip against the same clip in Rec.709, and two cameras graded with one preset.

* cost: ``input -> ACEScct`` and ``ACEScct -> Rec.709`` on one 1080p frame, by OCIO's CPU processor and by
  the baked 65-point LUTs (8-bit RGBA and 16-bit RGB), medians of ``--repeats``;
* composed: the per-frame cost of colour management as ``grade`` renders a fast / LUT look today (input
  transform, look and output transform composed into one table per shot, ``grade.colourgrade``): the
  time of a 1080p S-Log3 frame graded with colour management minus the same frame graded by the look
  alone, for 8-bit RGBA, 8-bit 4:2:0 planes and 16-bit RGB, with the two separate lookups beside it,
  interleaved, medians of ``--repeats``; and what the composition costs once per shot;
* learned: the same for a learned look (trained on the S-Log3 frame in the working space against
  ``34_reference``) to the Rec.709 view: the look alone on the working frame, the ``folded`` path
  ``grade`` takes (input transform folded into the look's base table, the field fitted on the frame
  brought to the working space at half size) and the ``separate`` one (two lookups around the look: what
  it took before, and what a scene-referred output still takes), the field computed once and reused so
  that the rows time the per-pixel work; and each path's mean / p99 ΔE2000 to OCIO's exact chain around
  the look's float path (every 4th pixel);
* 16-bit lookups: each of those tables on a 16-bit 1080p frame by OpenColorIO's ``Lut3D`` op (what
  ``grade`` uses) against ``grid_sample`` in float (what it used before), interleaved;
* ``--keep-log`` around a learned look: the two lookups with the pixels the baked tables get wrong sent
  through OCIO's exact processors (``ColourPipeline.outside``) against the plain lookups, on the bear
  frame and on a frame half outside AP1;
* accuracy: mean / p99 ΔE2000 of the baked round trip against the processor on random code values;
* throughput: a sample clip (``--frames`` frames at ``--width``) graded in fast mode as Rec.709, and the
  same pictures as S-Log3 (converted from the Rec.709 pictures through the inverse ACES view, 16-bit)
  graded with ``--input-space slog3``;
* cross-camera: the same scene as S-Log3 / S-Gamut3.Cine and as LogC3 / AWG3 (colour-science encodes
  both, independently of OCIO), one preset (fast, then learned), each with its own ``--input-space``: mean
  ΔE2000 between them.

    python benchmarks/colour_management.py [--repeats 5] [--frames 48] [--width 640]
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from pathlib import Path

import av
import numpy as np
import torch
from common import copy_video, make_parser, print_system, save_json, shared_dir, system_info, table, write_frames

from grade.cli import main as grade_main
from grade.color import delta_e2000, srgb_to_lab
from grade.colourgrade import managed
from grade.colourspace import ALIASES, colour_pipeline, ocio_apply
from grade.lut import apply_lut, apply_lut_u16, apply_lut_u16_float, identity_lut
from grade.shotgrade import ShotGrade

SOURCE = Path("samples/video/04_cotracker_bear.mp4")
REFERENCE = Path("samples/pairs/34_reference.jpg")


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def interleaved_ms(fns: dict, repeats: int) -> dict[str, float]:
    """Median ms of each function, run once untimed, then ``repeats`` rounds taking turns."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(1000 * (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in times.items()}


def cost(repeats: int) -> list[list]:
    rows = []
    cp = colour_pipeline("slog3", None, None, False, None)
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (1080, 1920, 4), dtype=np.uint8)
    rgb16 = rng.integers(0, 65536, (1080, 1920, 3), dtype=np.uint16)
    flt = rng.random((1080, 1920, 3), dtype=np.float32)
    for label, src, dst in (("S-Log3 -> ACEScct", cp.input, cp.working), ("ACEScct -> Rec.709", cp.working, cp.output)):
        ocio_ms = median_ms(lambda s=src, d=dst: ocio_apply(flt, s, d), repeats)
        which = "frame_in" if label.startswith("S-Log3") else "frame_out"
        fn = getattr(cp, which)
        rgba_ms = median_ms(lambda f=fn: f(rgba), repeats)
        u16_ms = median_ms(lambda f=fn: f(rgb16), repeats)
        rows.append([label, ocio_ms, rgba_ms, u16_ms])
    return rows


def log_frame_1080(shared: Path) -> np.ndarray:
    """The sample clip's first picture at 1920x1080 as S-Log3 / S-Gamut3.Cine code values in [0, 1]."""
    import cv2

    with av.open(str(shared / SOURCE)) as box:
        pic = next(iter(box.decode(video=0))).to_ndarray(format="rgb24")
    pic = cv2.resize(pic, (1920, 1080), interpolation=cv2.INTER_CUBIC)
    log = ocio_apply(scene_linear(pic), "ACES2065-1", ALIASES["slog3"])
    return np.clip(log, 0, 1)


def composed(shared: Path, repeats: int) -> dict:
    """Per-frame cost of colour management on a fast look (ms): with CM minus without, by frame layout."""
    from grade.lut import rgb_to_yuv

    cp = colour_pipeline("slog3", None, None, False, None)
    lut = (identity_lut(33) ** 1.1 * torch.tensor([1.05, 1.0, 0.92]).reshape(3, 1, 1, 1)).clamp(0, 1)
    log = log_frame_1080(shared)
    h, w = log.shape[:2]
    rgba = np.dstack([(log * 255 + 0.5).astype(np.uint8), np.full((h, w), 255, np.uint8)])
    rgb16 = (log * 65535 + 0.5).astype(np.uint16)
    yuv = rgb_to_yuv(torch.from_numpy(log).double(), 1, False).add(0.5).clamp(0, 255).to(torch.uint8).numpy()
    chroma = np.concatenate([yuv[::2, ::2, 1].reshape(-1), yuv[::2, ::2, 2].reshape(-1)]).reshape(h // 2, w)
    planes = np.ascontiguousarray(np.concatenate([yuv[..., 0], chroma]))  # yuv420p as PyAV lays it out
    build = {}
    grade = ShotGrade(lut, 1.0)
    m = managed(cp, grade)
    t = time.perf_counter()
    assert m.lut is not None  # composed on first use
    build["compose_s"] = time.perf_counter() - t
    rows = []
    layouts = (("8-bit RGBA", False, rgba), ("8-bit 4:2:0", True, planes), ("16-bit RGB", False, rgb16))
    for label, native, frame in layouts:
        grade.release()  # its view's tables too
        assert m.lut is not None  # composed again, untimed (prepare's figure is the table's expansion only)
        t = time.perf_counter()
        m.prepare(native, 1, False)
        build[f"table_{label}_s"] = time.perf_counter() - t
        grade.prepare(native, 1, False)
        fns = {"look": lambda f=frame: grade.grade(f, h, w), "composed": lambda f=frame: m.grade(f, h, w)}
        if not native:  # the two separate lookups around the look (grade's path before the composed table)
            fns["separate"] = lambda f=frame: cp.frame_out(grade.grade(cp.frame_in(f), h, w))
        med = interleaved_ms(fns, repeats)  # side by side
        sep = med.get("separate")
        extra = [sep, sep - med["look"]] if sep is not None else ["-", "-"]
        rows.append([label, med["look"], med["composed"], med["composed"] - med["look"], *extra])
    grade.release()
    m.release()
    return {"rows": rows, "build": build}


def accuracy() -> list[list]:
    rows = []
    pts = np.random.default_rng(1).random((50000, 3), dtype=np.float32) * 0.9 + 0.05

    def lut(table_, p):
        return apply_lut(table_, torch.from_numpy(p).T.reshape(1, 3, -1, 1))[0, :, :, 0].T.numpy()

    for space in ("slog3", "logc3", "vlog", "rec709"):
        cp = colour_pipeline(space, None, None, False, None)
        exact = np.clip(ocio_apply(np.clip(ocio_apply(pts, cp.input, cp.working), 0, 1), cp.working, cp.output), 0, 1)
        baked = lut(cp.from_working, lut(cp.to_working, pts))
        d = np.asarray(delta_e2000(srgb_to_lab(exact), srgb_to_lab(baked)))
        rows.append([space, float(d.mean()), float(np.quantile(d, 0.99))])
    return rows


def scene_linear(rec709: np.ndarray) -> np.ndarray:
    """Rec.709 display pictures (uint8) as ACES2065-1 scene light, through the inverse of the ACES view."""
    return ocio_apply(rec709.astype(np.float32) / 255, ALIASES["rec709"], "ACES2065-1")


def log_encode(lin: np.ndarray, kind: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import colour
    aces = colour.RGB_COLOURSPACES["ACES2065-1"]
    if kind == "slog3":
        rgb = colour.RGB_to_RGB(lin, aces, colour.RGB_COLOURSPACES["S-Gamut3.Cine"], "CAT02")
        return colour.models.log_encoding_SLog3(rgb)
    rgb = colour.RGB_to_RGB(lin, aces, colour.RGB_COLOURSPACES["ARRI Wide Gamut 3"], "CAT02")
    return colour.models.log_encoding_ARRILogC3(rgb)


def write16(path: Path, frames: list[np.ndarray], rate) -> Path:
    codes = [(np.clip(c, 0, 1) * 65535 + 0.5).astype(np.uint16) for c in frames]
    return write_frames(path, codes, fps=rate, codec="ffv1", pix_fmt="gbrp16le")


def read16(path: Path) -> np.ndarray:
    with av.open(str(path)) as box:
        return np.stack([f.to_ndarray(format="rgb48le") for f in box.decode(video=0)])


def u16_paths(shared: Path, repeats: int) -> list[list]:
    """A 16-bit 1080p S-Log3 frame through each of colour management's tables, by OpenColorIO's ``Lut3D``
    op (``grade.lut.U16Table``, what ``grade`` uses) and by ``grid_sample`` in float (before), interleaved:
    ``[table, OCIO ms, grid_sample ms, ratio]``."""
    cp = colour_pipeline("slog3", None, None, False, None)
    lut = (identity_lut(33) ** 1.1 * torch.tensor([1.05, 1.0, 0.92]).reshape(3, 1, 1, 1)).clamp(0, 1)
    m = managed(cp, ShotGrade(lut, 1.0))
    rgb16 = (log_frame_1080(shared) * 65535 + 0.5).astype(np.uint16)
    graded = apply_lut_u16(cp.to_working, rgb16)
    tables = (
        ("input -> working (65³)", cp.to_working, rgb16),
        ("working -> output (65³)", cp.from_working, graded),
        ("composed look (129³)", m.lut, rgb16),
    )
    rows = []
    for label, table_, frame in tables:
        fns = {
            "ocio": lambda t=table_, f=frame: apply_lut_u16(t, f),
            "torch": lambda t=table_, f=frame: apply_lut_u16_float(t, f),
        }
        med = interleaved_ms(fns, repeats)
        o, g = med["ocio"], med["torch"]
        rows.append([label, o, g, g / o])
    m.release()
    return rows


def saturated_tiles(h: int, w: int) -> np.ndarray:
    """S-Log3 / S-Gamut3.Cine codes ``(h, w, 3)``: half grey, half near-primary colours outside AP1 (tiled)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import colour
    lin = np.full((h, w, 3), 0.18)
    tiles = ([0.4, 5e-4, 5e-4], [5e-4, 0.3, 5e-4], [5e-4, 5e-4, 0.3], [2.0, 0.02, 0.9])
    for i, c in enumerate(tiles):
        lin[:, (2 * i + 1) * w // 8 : (2 * i + 2) * w // 8] = c
    return np.clip(colour.models.log_encoding_SLog3(lin), 0, 1)


def keep_log_outside(shared: Path, repeats: int) -> list[list]:
    """The two lookups around a learned look for a ``--keep-log`` output, with the pixels the baked tables
    get wrong (clipped working values, cells off by more than a 10-bit code) through OCIO's exact
    processors (``ColourPipeline.outside`` and ``frame_out``) and the two plain lookups, on 1080p frames
    (no grade between them):
    ``[frame, layout, marked share, with ms, without ms]``, interleaved medians."""
    cp = colour_pipeline("slog3", None, None, True, None)
    frames = {"bear as S-Log3": log_frame_1080(shared), "half outside AP1": saturated_tiles(1080, 1920)}
    rows = []
    for name, codes in frames.items():
        for layout in ("16-bit RGB", "8-bit RGBA"):
            if layout == "16-bit RGB":
                px = (codes * 65535 + 0.5).astype(np.uint16)
            else:
                px = np.dstack([(codes * 255 + 0.5).astype(np.uint8), np.full(codes.shape[:2], 255, np.uint8)])

            def given_back(p=px) -> None:
                w = cp.frame_in(p)
                cp.frame_out(w, cp.outside(p, w))

            fns = {"with": given_back, "without": lambda p=px: cp._apply("from_working", cp.frame_in(p))}
            med = interleaved_ms(fns, repeats)
            marked = cp.outside(px, cp.frame_in(px))
            share = 0.0 if marked is None else len(marked[0]) / codes[..., 0].size
            rows.append([name, layout, share, med["with"], med["without"]])
    return rows


def learned(shared: Path, repeats: int) -> list[list]:
    """The per-frame cost of colour management around a learned look, folded and separate (module docstring)."""
    import cv2

    from grade.io.image import fit_side, read_image, to_tensor
    from grade.train import train_look
    from grade.transfer import fast_lut

    cp = colour_pipeline("slog3", None, None, False, None)
    log = log_frame_1080(shared).astype(np.float32)
    h, w = log.shape[:2]
    key = np.clip(cp.float_in(cv2.resize(log, (512, 288), interpolation=cv2.INTER_AREA)), 0, 1)
    ref = cp.reference(to_tensor(fit_side(read_image(shared / REFERENCE).rgb, 512)))
    lut = fast_lut(torch.from_numpy(key).permute(2, 0, 1).contiguous(), ref)
    look, _ = train_look(torch.from_numpy(key).permute(2, 0, 1).contiguous(), ref, lut)
    fields: dict = {}
    fit = look.field_small

    def field_once(small: torch.Tensor):  # computed once per size, then reused
        if tuple(small.shape) not in fields:
            fields[tuple(small.shape)] = fit(small)
        return fields[tuple(small.shape)]

    look.field_small = field_once
    work = np.clip(np.nan_to_num(cp.float_in(log)), 0, 1)
    graded = look.apply(torch.from_numpy(work).permute(2, 0, 1)[None].contiguous())[0].permute(1, 2, 0).numpy()
    exact = np.clip(cp.float_out(graded), 0, 1)[::4, ::4]
    alone, folded_grade, separate_grade = (ShotGrade(lut, 1.0, look, stabilise=False) for _ in range(3))
    folded, separate = managed(cp, folded_grade), managed(cp, separate_grade)
    separate.kind = "separate"  # the path a scene-referred output takes
    assert folded.kind == "folded"
    rows = []
    rgba = np.dstack([(log * 255 + 0.5).astype(np.uint8), np.full((h, w), 255, np.uint8)])
    for label, frame in (("8-bit RGBA", rgba), ("16-bit RGB", (log * 65535 + 0.5).astype(np.uint16))):
        for g in (alone, folded, separate):
            g.prepare(False, 1, False)
        in_working = cp.frame_in(frame)
        fns = {
            "alone": lambda f=in_working: alone.grade(f, h, w),
            "folded": lambda f=frame: folded.grade(f, h, w),
            "separate": lambda f=frame: separate.grade(f, h, w),
        }
        med = interleaved_ms(fns, repeats)
        scale = 65535.0 if frame.dtype == np.uint16 else 255.0
        errors = []
        for name in ("folded", "separate"):
            got = fns[name]()[::4, ::4, :3].astype(np.float32) / scale
            d = np.asarray(delta_e2000(srgb_to_lab(got), srgb_to_lab(exact)))
            errors += [float(d.mean()), float(np.quantile(d, 0.99))]
        alone_ms = med["alone"]
        rows.append(
            [
                label,
                alone_ms,
                med["folded"],
                med["folded"] - alone_ms,
                med["separate"],
                med["separate"] - alone_ms,
                *errors,
            ]
        )
    for g in (alone, folded_grade, separate_grade):
        g.release()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--width", type=int, default=640)
    args = parser.parse_args(argv)
    shared = shared_dir(args.shared)
    info = system_info()
    print_system(info)
    out: dict = {"system": info}

    comp = composed(shared, args.repeats)
    out["composed_ms"] = comp
    headers = ["1080p S-Log3 frame, fast look", "look alone ms", "composed CM ms", "CM cost ms", "separate CM ms"]
    print(table([*headers, "separate CM cost ms"], comp["rows"]))
    print("composition once per shot: " + ", ".join(f"{k} {v:.2f}" for k, v in comp["build"].items()))
    rows = learned(shared, args.repeats)
    out["learned_ms"] = rows
    headers = ["1080p S-Log3 frame, learned look", "look alone ms", "folded ms", "folded CM cost ms", "separate ms"]
    headers += ["separate CM cost ms", "folded ΔE mean", "folded ΔE p99", "separate ΔE mean", "separate ΔE p99"]
    print(table(headers, rows))
    rows = u16_paths(shared, args.repeats)
    out["u16_ms"] = rows
    print(table(["16-bit 1080p lookup", "OCIO Lut3D ms", "grid_sample ms", "speed-up"], rows))
    rows = keep_log_outside(shared, args.repeats)
    out["keep_log_outside_ms"] = rows
    headers = ["--keep-log, two lookups", "layout", "marked share", "clipped part given back ms", "clipped ms"]
    print(table(headers, rows))
    rows = cost(args.repeats)
    out["cost_ms"] = rows
    print(table(["1080p transform", "OCIO processor ms", "baked, 8-bit RGBA ms", "baked, 16-bit RGB ms"], rows))
    rows = accuracy()
    out["baked_vs_ocio"] = rows
    print(table(["input", "round trip ΔE mean", "ΔE p99"], rows))

    with tempfile.TemporaryDirectory(prefix="grade-colour-") as tmp:
        tmp = Path(tmp)
        meta = copy_video(shared / SOURCE, tmp / "rec709.mkv", width=args.width, frames=args.frames)
        with av.open(str(tmp / "rec709.mkv")) as box:
            pictures = [f.to_ndarray(format="rgb24") for f in box.decode(video=0)]
            rate = box.streams.video[0].average_rate
        lin = [scene_linear(p) for p in pictures]
        logs = {k: write16(tmp / f"{k}.mkv", [log_encode(x, k) for x in lin], rate) for k in ("slog3", "logc3")}
        ref = shared / REFERENCE
        base = ["--codec", "ffv1", "--force", "-q", "--library", str(tmp / "lib")]

        def run(*a) -> float:
            t = time.perf_counter()
            code = grade_main([str(x) for x in a] + base)
            assert code == 0
            return time.perf_counter() - t

        times = {"rec709": [], "slog3": []}
        for _ in range(max(1, args.repeats // 2)):  # side by side, alternating
            times["rec709"].append(run(tmp / "rec709.mkv", "--look", ref, "--mode", "fast", "-o", tmp / "a.mkv"))
            slog3 = ["--look", ref, "--mode", "fast", "--input-space", "slog3", "-o", tmp / "b.mkv"]
            times["slog3"].append(run(logs["slog3"], *slog3))
        med = {k: statistics.median(v) for k, v in times.items()}
        n = meta["frames"]
        out["throughput"] = {k: n / v for k, v in med.items()} | {"ratio": med["slog3"] / med["rec709"]}
        print(
            f"throughput at {meta['width']}x{meta['height']}, {n} frames: Rec.709 {n / med['rec709']:.1f} fps, "
            f"S-Log3 (colour-managed) {n / med['slog3']:.1f} fps, time ratio {med['slog3'] / med['rec709']:.2f}"
        )

        out["cross_camera"] = {}
        for mode in ("fast", "learned"):  # the learned look to the Rec.709 view: its folded base table
            made = ["--look", ref, "--input-space", "slog3", "--save-preset", f"bench-{mode}", "-o", tmp / "m.mkv"]
            run(logs["slog3"], *made, "--mode", mode)
            graded = {}
            for k in ("slog3", "logc3"):
                run(logs[k], "--preset", f"bench-{mode}", "--input-space", k, "-o", tmp / f"{k}.g.mkv")
                graded[k] = read16(tmp / f"{k}.g.mkv").astype(np.float32) / 65535
            d = np.asarray(delta_e2000(srgb_to_lab(graded["slog3"]), srgb_to_lab(graded["logc3"])))
            out["cross_camera"][mode] = {"mean": float(d.mean()), "p95": float(np.quantile(d, 0.95))}
            print(
                f"cross-camera, {mode} (S-Log3 vs LogC3, one preset): ΔE2000 mean {d.mean():.3f}, "
                f"p95 {np.quantile(d, 0.95):.3f}"
            )
    save_json(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
