"""Where the learned look's regional gain is lost (issue #8's ``region`` target): a diagnostic.

``region`` is the look distance to the reference measured class by class of the semantic masks. The
learned look's figure (~6.8 over the sample pairs) is barely below hm-mkl-hm's (~6.9); the target is
0.80x. Two things could hold it back: which part of the reference each material of the shot is sent
to (the correspondence), and how far each material's colour map can move it (the maps). This script
separates them, on the pairs with masks (``<shared>/samples/pairs``), by grading each content five ways:

* ``learned``              ``grade``'s learned look, as shipped;
* ``learned, true corr.``  the same, with the joint segmentation of shot and reference replaced by the
  semantic masks themselves (the classes both hold, largest first): the correspondence made perfect,
  the maps as they are (``grade.train_material.shared_segments`` patched for the run);
* ``... weaker pulls``     that, with the maps' pulls toward the global look weakened
  (``MaterialTraining(look=2, identity=0.05, consistency=10)``);
* ``per-class fast``       one fast-mode transfer (``grade.transfer.fast_lut``) per mask class, from the
  content's pixels of that class to the reference's, applied to that class only (hard masks), the
  global fast look elsewhere: perfect correspondence, a full global map per material;
* ``per-segment fast``     the same per-segment transfers on ``grade``'s own joint segmentation
  (``grade.losses.shared_segments`` on ``descriptors``, 5 segments, at a 256 px side): no masks;
* ``per-top-class fast``   ``per-class fast`` with two parts only: the masks' class at the top of the
  content (its sky, or a portrait's backdrop) against everything else, when the reference holds it too:
  what a perfect sky detector would give a two-part transfer;
* ``per-sky fast``         the same two parts from a sky detector, no masks (:func:`sky_mask`, a
  prototype: smooth regions connected to the top edge, not reaching the bottom, filled down to their
  lowest row per column);
* ``per-material fast``    no masks either: the learned look's own materials of the shot (k-means on
  ``material_features`` of the globally graded frame, soft memberships) and its own correspondence
  (each material's target: the reference's pixels of the joint segments its pixels fall in, in those
  proportions), but one full fast-mode transfer per material instead of one affine map, blended by
  the memberships (upsampled to full size).

The masks are used here to measure, never by ``grade`` itself. Printed: per-pair and mean look,
region, wash and affine (``<shared>/eval/gradeeval.py``'s functions).

    python benchmarks/region_bounds.py [--methods learned,per-class-fast] [--json bounds.json]
"""

from __future__ import annotations

import contextlib
import importlib.util
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from common import make_parser, print_system, save_json, shared_dir, system_info, table
from quality import Pair, find_pairs

import grade.train_material as train_material
from grade.losses import descriptors, shared_segments
from grade.lut import apply_lut
from grade.pipeline import GradeOptions, grade_file
from grade.transfer import TransferSettings, fast_lut

METHODS = (
    "learned",
    "learned-true-corr",
    "learned-true-corr-weak",
    "per-class-fast",
    "per-segment-fast",
    "per-material-fast",
    "per-top-class-fast",
    "per-sky-fast",
    "per-border-sky-fast",
)
METRICS = ("look", "region", "wash", "affine")
CUES = (25.0, 25.0, 15.0, 10.0, 10.0)  # MaterialTraining.cue_weights


def load_eval(shared: Path):
    spec = importlib.util.spec_from_file_location("gradeeval", shared / "eval" / "gradeeval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tensor(rgb: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` float -> ``(3, H, W)``."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float()


def shrink(rgb: np.ndarray, side: int = 256) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = side / max(h, w)
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


@contextlib.contextmanager
def true_correspondence(ge, pair: Pair, weak: bool) -> Iterator[None]:
    """The learned trainer's joint segmentation replaced by the pair's masks (and, with ``weak``, its
    maps' pulls toward the global look weakened), for the duration."""

    def masks(content_desc, ref_desc, k, gen, iters=20):
        def classes(path: Path, shape) -> np.ndarray:
            return ge.read_mask(str(path), (shape[-2], shape[-1]))

        a, b = classes(pair.content_mask, content_desc.shape), classes(pair.reference_mask, ref_desc.shape)
        both = [c for c in np.unique(a) if (a == c).mean() > 0.01 and (b == c).mean() > 0.01]
        both = sorted(both, key=lambda c: -(a == c).mean())[:k]
        la, lb = np.full(a.shape, k, np.int64), np.full(b.shape, k, np.int64)  # label k: no segment
        for j, c in enumerate(both):
            la[a == c], lb[b == c] = j, j
        return torch.from_numpy(la.reshape(-1)), torch.from_numpy(lb.reshape(-1))

    kept_segments, kept_defaults = train_material.shared_segments, train_material.train_material_look.__defaults__
    train_material.shared_segments = masks
    if weak:
        defaults = list(kept_defaults)
        defaults[-1] = train_material.MaterialTraining(look=2.0, identity=0.05, consistency=10.0)
        train_material.train_material_look.__defaults__ = tuple(defaults)
    try:
        yield
    finally:
        train_material.shared_segments = kept_segments
        train_material.train_material_look.__defaults__ = kept_defaults


def per_part_fast(o: np.ndarray, r: np.ndarray, parts_o: np.ndarray, parts_r: np.ndarray) -> np.ndarray:
    """The global fast look, and inside each part that both images hold (≥ 1 %) that part's own fast
    transfer (content's pixels of it -> reference's), hard-edged. ``parts_*``: int labels at each image's
    own size; -1 is no part."""
    out = apply_lut(fast_lut(tensor(o), tensor(r)), tensor(o)[None])[0].permute(1, 2, 0).numpy()
    for c in np.unique(parts_o):
        cs, rs = parts_o == c, parts_r == c
        if c < 0 or cs.mean() < 0.01 or rs.mean() < 0.01:
            continue
        src, dst = o[cs][:, None, :], r[rs][:, None, :]
        lut = fast_lut(tensor(src), tensor(dst), TransferSettings(memory=False))
        out[cs] = apply_lut(lut, tensor(src)[None])[0, :, :, 0].T.numpy()
    return np.clip(out, 0, 1).astype(np.float32)


def joint_parts(o: np.ndarray, r: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """``grade``'s joint segmentation of content and reference, at a 256 px side, as labels at full size."""
    so, sr = shrink(o), shrink(r)
    weights = torch.tensor(CUES).view(1, -1, 1, 1)
    gen = torch.Generator().manual_seed(0)
    a, b = shared_segments(descriptors(tensor(so)[None]) * weights, descriptors(tensor(sr)[None]) * weights, k, gen)

    def full(labels: torch.Tensor, small: np.ndarray, big: np.ndarray) -> np.ndarray:
        lab = labels.reshape(small.shape[:2]).numpy().astype(np.int32)
        return cv2.resize(lab, (big.shape[1], big.shape[0]), interpolation=cv2.INTER_NEAREST)

    return full(a, so, o), full(b, sr, r)


def grade_pair(ge, method: str, pair: Pair, o, r, om, rm, tmp: Path) -> np.ndarray:
    """``pair``'s content graded by ``method`` (float RGB ``(H, W, 3)``); ``o``, ``r``: content and reference
    as gradeeval reads them, ``om``, ``rm``: their class masks."""
    if method == "per-class-fast":
        return per_part_fast(o, r, om, rm)
    if method == "per-segment-fast":
        return per_part_fast(o, r, *joint_parts(o, r))
    if method == "per-material-fast":
        return per_material_fast(o, r)
    if method == "per-top-class-fast":
        return per_part_fast(o, r, *top_class(om, rm))
    if method in ("per-sky-fast", "per-border-sky-fast"):
        detect = sky_mask if method == "per-sky-fast" else border_sky_mask
        so, sr = detect(o), detect(r)
        if so.mean() < 0.02 or sr.mean() < 0.02:  # sky in one of the two only: no split
            so, sr = np.zeros_like(so), np.zeros_like(sr)
        return per_part_fast(o, r, so.astype(np.int32), sr.astype(np.int32))
    out = tmp / f"{pair.name}.png"
    patched = true_correspondence(ge, pair, weak=method.endswith("weak"))
    with patched if method.startswith("learned-true-corr") else contextlib.nullcontext():
        grade_file(pair.content, pair.reference, GradeOptions(mode="learned", force=True), output=out)
    return ge.read_image(str(out))


def top_class(om: np.ndarray, rm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two parts (1: the content mask's most common class in its top 5 % of rows, 0: the rest) of the
    content and reference masks; no split (all 0) when that class is nearly everything or the reference
    lacks it."""
    rows = om[: max(1, om.shape[0] // 20)]
    labels, counts = np.unique(rows, return_counts=True)
    top = labels[np.argmax(counts)]
    a, b = (om == top).astype(np.int32), (rm == top).astype(np.int32)
    if a.mean() > 0.9 or b.mean() < 0.01:
        return np.zeros_like(a), np.zeros_like(b)
    return a, b


def sky_mask(rgb: np.ndarray, side: int = 256, smooth_below: float = 2.0) -> np.ndarray:
    """A prototype sky detector (bool ``(H, W)``) for RGB ``(H, W, 3)`` in [0, 1]: at a 256 px side, the
    pixels where the Lab gradient is under ``smooth_below`` (ΔE a pixel, smoothed), in components that
    touch the top row and not the bottom tenth, then everything above their lowest row in each column
    (a running median over 1/12 of the width), which takes in clouds that break the smooth part."""
    h, w = rgb.shape[:2]
    s = side / max(h, w)
    small = cv2.resize(rgb.astype(np.float32), (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    lab = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_RGB2Lab), (0, 0), 1.0)
    gx, gy = cv2.Sobel(lab, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(lab, cv2.CV_32F, 0, 1, ksize=3)
    g = cv2.GaussianBlur(np.sqrt((gx**2 + gy**2).sum(-1)) / 8, (0, 0), 1.5)
    hh, ww = g.shape
    smooth = (g < smooth_below).astype(np.uint8)
    _, lbl = cv2.connectedComponents(smooth, connectivity=4)
    bottom = set(np.unique(lbl[int(hh * 0.9) :]).tolist())
    top = [i for i in np.unique(lbl[0][smooth[0] > 0]).tolist() if i not in bottom]
    sky = np.isin(lbl, top)
    if sky.any():
        rows = np.arange(hh)[:, None]
        low = np.where(sky.any(0), (sky * rows).max(0), -1)
        k = max(3, ww // 12) | 1
        low = np.median(np.lib.stride_tricks.sliding_window_view(np.pad(low, k // 2, mode="edge"), k), -1)
        sky = rows <= low[None, :]
    return cv2.resize(sky.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0


def border_sky_mask(rgb: np.ndarray, side: int = 256, thresholds: int = 40) -> np.ndarray:
    """A second prototype sky detector (bool ``(H, W)``), after the border optimisation of Ettinger et al.
    and Shen et al.: for each gradient threshold (Lab, ΔE a pixel), the sky is what lies above each
    column's first stronger edge; the threshold kept is the one that best separates the two parts'
    Lab colours (between-class over within-class variance, an Otsu criterion: the papers' covariance
    energy picked skies of 2-4 % of the frame); the border is then a running median over 1/12 of the
    width."""
    h, w = rgb.shape[:2]
    s = side / max(h, w)
    small = cv2.resize(rgb.astype(np.float32), (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    lab = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_RGB2Lab), (0, 0), 1.0)
    gx, gy = cv2.Sobel(lab, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(lab, cv2.CV_32F, 0, 1, ksize=3)
    g = np.sqrt((gx**2 + gy**2).sum(-1)) / 8
    hh, ww = g.shape
    rows = np.arange(hh)[:, None]
    px = lab.reshape(-1, 3)
    best, border = -1.0, None
    for t in np.geomspace(0.5, 40, thresholds):
        over = g > t
        b = np.where(over.any(0), over.argmax(0), hh)
        sky = (rows < b[None, :]).reshape(-1)
        share = sky.mean()
        if share < 0.02 or share > 0.95:
            continue
        up, down = px[sky], px[~sky]
        d = up.mean(0) - down.mean(0)
        score = share * (1 - share) * (d @ d) / (up.var(0).sum() * share + down.var(0).sum() * (1 - share) + 1e-6)
        if score > best:
            best, border = score, b
    if border is None:
        return np.zeros((h, w), bool)
    k = max(3, ww // 12) | 1
    border = np.median(
        np.lib.stride_tricks.sliding_window_view(np.pad(border.astype(float), k // 2, mode="edge"), k), -1
    )
    sky = rows < border[None, :]
    return cv2.resize(sky.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0


def sky_iou(ge, pairs) -> list[list]:
    """Each detector's IoU with the masks' top class (:func:`top_class`), content and reference of each pair."""

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        union = (a | b).sum()
        return float((a & b).sum() / union) if union else 1.0

    rows = []
    for pair in pairs:
        o, r = ge.read_image(str(pair.content)), ge.read_image(str(pair.reference))
        om, rm = ge.read_mask(str(pair.content_mask), o.shape), ge.read_mask(str(pair.reference_mask), r.shape)
        truth = [m > 0 for m in top_class(om, rm)]
        row = [pair.name]
        for img, t in zip((o, r), truth):
            row += [float(t.mean()), iou(sky_mask(img), t), iou(border_sky_mask(img), t)]
        rows.append(row)
    return rows


def per_material_fast(o: np.ndarray, r: np.ndarray, side: int = 256, segments: int = 5) -> np.ndarray:
    """The ``per-material-fast`` grade (module docstring) of content ``o`` to reference ``r``."""
    import torch.nn.functional as F

    from grade.model.material import MaterialMaps, MaterialSettings, kmeans, material_features

    gen = torch.Generator().manual_seed(0)
    glob = fast_lut(tensor(o), tensor(r))
    x, ref = tensor(shrink(o, side))[None], tensor(shrink(r, side))[None]
    base = apply_lut(glob, x)
    ms = MaterialSettings()
    feats = material_features(base, ms).flatten(2)[0].T
    model = MaterialMaps(ms, ms.materials)
    model.centres.copy_(kmeans(feats[torch.randperm(len(feats), generator=gen)[:6000]], ms.materials, gen))
    with torch.no_grad():
        w = model.memberships(base)
    labels = w.flatten(2)[0].argmax(0)
    cue = torch.tensor(CUES).view(1, -1, 1, 1)
    seg, ref_labels = shared_segments(descriptors(x) * cue, descriptors(ref) * cue, segments, gen)
    src, dst = x.flatten(2)[0].T, ref.flatten(2)[0].T
    luts = []
    for m in range(w.shape[1]):
        mine = labels == m
        parts = []
        for j in range(segments):
            where = (ref_labels == j).nonzero()[:, 0]
            hits = int((mine & (seg == j)).sum())
            if hits and len(where) >= 0.01 * len(ref_labels):
                parts.append(dst[where[torch.randint(0, len(where), (max(1, hits),), generator=gen)]])
        if float(mine.float().mean()) < 0.005 or not parts:
            luts.append(glob)
            continue
        pool = torch.cat(parts)
        luts.append(fast_lut(src[mine].T[:, :, None], pool.T[:, :, None], TransferSettings(memory=False)))
    full = tensor(o)[None]
    wf = F.interpolate(w, size=full.shape[-2:], mode="bilinear", align_corners=False).clamp_min(0)
    wf = wf / wf.sum(1, keepdim=True).clamp_min(1e-6)
    out = sum(wf[:, m : m + 1] * apply_lut(lut, full) for m, lut in enumerate(luts))
    return out[0].permute(1, 2, 0).clamp(0, 1).numpy().astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--sky-iou", action="store_true", help="only the sky detectors' IoU with the masks' top class")
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s): {', '.join(unknown)}")
    shared = shared_dir(args.shared)
    ge = load_eval(shared)
    info = system_info()
    print_system(info)
    pairs = [p for p in find_pairs(shared / "samples" / "pairs") if p.content_mask]
    if args.sky_iou:
        heads = [
            "pair",
            "content sky share",
            "sky_mask IoU",
            "border IoU",
            "ref. sky share",
            "sky_mask IoU",
            "border IoU",
        ]
        print(table(heads, sky_iou(ge, pairs)))
        return 0
    results: dict[str, dict[str, dict[str, float]]] = {m: {} for m in methods}
    with tempfile.TemporaryDirectory(prefix="grade-bounds-") as tmp:
        for pair in pairs:
            o, r = ge.read_image(str(pair.content)), ge.read_image(str(pair.reference))
            om, rm = ge.read_mask(str(pair.content_mask), o.shape), ge.read_mask(str(pair.reference_mask), r.shape)
            for method in methods:
                g = grade_pair(ge, method, pair, o, r, om, rm, Path(tmp))
                results[method][pair.name] = {
                    "look": float(ge.look_distance(g, r)),
                    "region": float(ge.region_look(g, r, ge.read_mask(str(pair.content_mask), g.shape), rm)),
                    "wash": float(ge.wash(g, o, om)),
                    "affine": float(ge.affine_residual(g, o)),
                }
            print(f"pair {pair.name} done", flush=True)
    rows = [[p.name, m, *(results[m][p.name][k] for k in METRICS)] for p in pairs for m in methods]
    print()
    print(table(["pair", "method", *METRICS], rows))
    means = [[f"mean {m}", *(statistics.fmean(v[k] for v in results[m].values()) for k in METRICS)] for m in methods]
    print()
    print(table(["method", *METRICS], means))
    save_json(args.json, {"system": info, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
