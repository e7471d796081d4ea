"""Key-frame trainer of the learned look: Adam with a cosine schedule, early stopping on a plateau,
deterministic for a seed.

The network starts as the identity on top of the fast mode's global LUT, so training only learns
the *correction*: where the reference's colours belong region by region, under the structure
and photorealism terms.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from grade.losses import (
    LossWeights,
    RegionSpec,
    contrast_loss,
    descriptors,
    lut_consistency_loss,
    matting_loss,
    random_directions,
    region_loss,
    sample_points,
    segment_loss,
    shared_segments,
    sliced_w1_presorted,
    smoothness_loss,
    sorted_projections,
    structure_loss,
    temporal_loss,
    to_lab,
    tone_stats,
)
from grade.lut import apply_lut
from grade.memory import memory_colours, protection_weights
from grade.model.hrnet import AffineHRNet
from grade.model.look import (
    LearnedLook,
    LookSettings,
    apply_coefficients,
    level_gate,
    lut_levels,
    network_input,
    working_size,
)
from grade.model.material import MaterialMaps, kmeans, material_features


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 120  # at most
    lr: float = 4e-3
    patience: int = 40  # steps without a 0.5% better smoothed loss before stopping
    samples: int = 4096  # pixels per step for the distribution terms
    directions: int = 64  # fixed projections of the sliced distances (as many as gradeeval uses)
    seed: int = 0
    segments: int = 5  # joint segments of shot and reference for the regional look term (0: off)
    # key frames whose L* spread is below this (black, a flat colour) keep the global grade: there is
    # nothing regional to learn, and the distribution terms would only lift black toward the reference
    flat_std: float = 2.0
    adapt_threads: bool = True  # time torch's threads against one thread, train with the faster (load)
    weights: LossWeights = field(default_factory=LossWeights)
    region: RegionSpec = field(default_factory=RegionSpec)


def _neighbour(fr: dict, nxt: torch.Tensor, look: LookSettings, lut: torch.Tensor, device) -> dict | None:
    """The next frame of a key frame, ready for the temporal term: its network input and base, and
    the flow-based correspondence to the key frame with its confidence. None without motion (a
    still shot: nothing to learn) or when the sizes differ."""
    from grade.temporal import fb_confidence, flow_dis, make_dis, motion_boundaries, photometric_confidence, warp

    x = fr["x"]
    x2 = _fit(nxt, look.working_side).to(device)
    if x2.shape != x.shape:
        return None
    h, w = x.shape[-2:]

    def luma(t: torch.Tensor) -> np.ndarray:
        rgb = t[0].cpu()
        return ((0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]).clamp(0, 1) * 255 + 0.5).byte().numpy()

    la, lb = luma(x), luma(x2)
    dis = make_dis("medium")
    ba, ab = flow_dis(lb, la, dis), flow_dis(la, lb, dis)  # b(x) ~ a(x + ba(x))
    conf = fb_confidence(ba, ab) * (1.0 - motion_boundaries(ba))
    conf = conf * photometric_confidence(warp(la.astype(np.float32) / 255, ba), lb.astype(np.float32) / 255)
    moving = float((np.sqrt((ba**2).sum(-1)) * conf).sum() / max(1.0, float(conf.sum())))
    if moving < 0.3:  # under a third of a pixel at working resolution: a still shot
        return None
    xx = np.arange(w, dtype=np.float32)[None, :] + ba[..., 0]
    yy = np.arange(h, dtype=np.float32)[:, None] + ba[..., 1]
    grid = np.stack([xx / max(1, w - 1) * 2 - 1, yy / max(1, h - 1) * 2 - 1], -1)[None]
    base = apply_lut(lut, x2)
    return {
        "inp": network_input(x2, base),
        "base": base,
        "base_lab": to_lab(base),
        "grid": torch.from_numpy(grid).to(device),
        "conf": torch.from_numpy(conf[None, None].astype(np.float32)).to(device),
    }


@dataclass
class TrainReport:
    steps: int
    seconds: float
    loss_first: float
    loss_last: float
    stopped_early: bool
    history: list[float]


def _fit(img: torch.Tensor, side: int) -> torch.Tensor:
    h, w = working_size(img.shape[-2], img.shape[-1], side)
    return F.interpolate(img[None] if img.dim() == 3 else img, size=(h, w), mode="area")


def train_look(
    key: torch.Tensor | list[torch.Tensor],
    reference: torch.Tensor,
    lut: torch.Tensor,
    look: LookSettings | None = None,
    settings: TrainSettings | None = None,
    device: torch.device | str = "cpu",
    on_step: Callable[[int, int, float], None] | None = None,
    init: LearnedLook | None = None,
    neighbours: list[torch.Tensor | None] | None = None,
) -> tuple[LearnedLook, TrainReport]:
    """Train a :class:`LearnedLook` on one key frame (or several of one scene) against a reference.

    Args:
        key: ``(3, H, W)`` RGB in [0,1], or a list of them.
        reference: ``(3, H', W')`` RGB in [0,1].
        lut: the fast mode's LUT ``(3, N, N, N)`` for these key frames, the starting point.
        on_step: called with ``(step, max_steps, loss)``.
        init: warm start (``--refine``): the network starts from this look's weights instead of the
            identity; pass its LUT as ``lut`` and fewer ``settings.steps``.
        neighbours: per key frame, the frame after it ``(3, H, W)`` or None; used by the temporal
            term (``settings.weights.temporal``) where the two frames show motion.
    """
    look = init.settings if init is not None else (look or LookSettings())
    settings = settings or TrainSettings()
    if look.kind == "material":
        return train_material_look(key, reference, lut, look, settings, device, on_step, init)
    t0 = time.perf_counter()
    device = torch.device(device)
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    keys = key if isinstance(key, list | tuple) else [key]
    lut_d = lut.to(device)
    w = settings.weights
    region_w = torch.tensor(settings.region.weights, device=device).view(1, -1, 1, 1)

    ref = _fit(reference, look.working_side).to(device)
    ref_lab = to_lab(ref)
    n_ref = ref.shape[-2] * ref.shape[-1]
    ridx = torch.randperm(n_ref, generator=gen)[: max(settings.samples * 4, 16384)].to(device)
    ref_points = sample_points(ref_lab, ridx)
    ref_desc = descriptors(ref) * region_w
    ref_joint = torch.cat([sample_points(ref_desc, ridx), ref_points], 1) if w.region else None
    ref_tone = tone_stats(ref_lab)
    # fixed projections for the colour terms: the reference's side is sorted once, not every step
    dirs3 = random_directions(settings.directions, 3, gen, device)
    ref_look_sorted = sorted_projections(ref_points, dirs3, settings.samples)

    segments = settings.segments
    frames = []
    for k in keys:
        x = _fit(k, look.working_side).to(device)
        base = apply_lut(lut_d, x)
        frames.append(
            {
                "x": x,
                "base": base,
                "inp": network_input(x, base),
                "lab_in": to_lab(x),
                "desc": descriptors(x) * region_w,
                "guide": to_lab(x)[:, :1] / 100,
                "base_lab": to_lab(base),
            }
        )
        if segments:
            labels, ref_labels = shared_segments(frames[-1]["desc"], ref_desc, segments, gen)
            ref_flat = ref_lab.flatten(2)[0].T
            counts = torch.bincount(labels, minlength=segments).float()
            ref_counts = torch.bincount(ref_labels, minlength=segments).float()
            ok = (counts > 0.01 * len(labels)) & (ref_counts > 0.01 * len(ref_labels))
            frames[-1]["labels"] = labels
            frames[-1]["shares"] = torch.where(ok, counts / len(labels), torch.zeros_like(counts))
            frames[-1]["ref_seg"] = [
                sorted_projections(ref_flat[(ref_labels == j).nonzero()[:, 0]], dirs3, 1024) if ok[j] else None
                for j in range(segments)
            ]

    if w.temporal and neighbours:
        for fr, nxt in zip(frames, neighbours):
            pair = _neighbour(fr, nxt, look, lut_d, device) if nxt is not None else None
            if pair is not None:
                fr["next"] = pair

    net = AffineHRNet(in_ch=8, widths=look.widths, blocks=look.blocks)
    if init is not None:
        net.load_state_dict(init.net.state_dict())
    net = net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / settings.steps)))
    )
    flat = max(float(fr["lab_in"][:, :1].std()) for fr in frames) < settings.flat_std

    def step_loss() -> torch.Tensor:
        total = torch.zeros((), device=device)
        for fr in frames:
            coef = net(fr["inp"])
            out = apply_coefficients(coef, fr["base"])
            out_lab = to_lab(out)
            n = out.shape[-2] * out.shape[-1]
            idx = torch.randint(0, n, (settings.samples,), generator=gen).to(device)
            loss = w.look * sliced_w1_presorted(sample_points(out_lab, idx), ref_look_sorted, dirs3)
            if w.region:
                dirs_j = random_directions(settings.directions, ref_joint.shape[1], gen, device)
                loss = loss + w.region * region_loss(out_lab, fr["desc"], ref_joint, idx, dirs_j)
            if segments and w.segment:
                seg = segment_loss(out_lab, fr["labels"], fr["ref_seg"], fr["shares"], dirs3, gen)
                loss = loss + w.segment * seg
            loss = loss + w.tone * (tone_stats(out_lab) - ref_tone).abs().mean()
            loss = loss + w.structure * structure_loss(out_lab, fr["lab_in"])
            loss = loss + w.matting * matting_loss(out, fr["x"])
            loss = loss + w.smooth * smoothness_loss(coef, fr["guide"])
            if w.contrast:
                loss = loss + w.contrast * contrast_loss(out_lab, fr["base_lab"])
            if w.lut:
                loss = loss + w.lut * lut_consistency_loss(out_lab, fr["x"])
            if "next" in fr:
                nx = fr["next"]
                out_b = apply_coefficients(net(nx["inp"]), nx["base"])
                res_b = to_lab(out_b) - nx["base_lab"]
                loss = loss + w.temporal * temporal_loss(out_lab - fr["base_lab"], res_b, nx["grid"], nx["conf"])
            total = total + loss / len(frames)
        return total

    history, step, stopped = _optimise(
        step_loss, opt, sched, 0 if flat else settings.steps, settings.patience, on_step, settings.adapt_threads
    )
    net.eval()
    report = _report(t0, history, step, stopped)
    return LearnedLook(lut.cpu(), net.cpu(), look), report


@dataclass(frozen=True)
class MaterialTraining:
    """Settings of the material look's training that are not stored with the look."""

    cluster_samples: int = 6000  # pixels of the shot for its materials
    segments: int = 5  # joint segments of shot and reference for the correspondence
    # weights of the correspondence cues (vertical position, large-scale L*, texture, large-scale a*, b*),
    # Lab units per unit of rank (measured: position 10 instead of 25 loses region, 6.98 -> 7.2)
    cue_weights: tuple[float, ...] = (25.0, 25.0, 15.0, 10.0, 10.0)
    min_ref_share: float = 0.01  # a joint segment under this share of the reference is no target
    identity: float = 0.2  # weight of the pull of each material's map toward the global look
    look: float = 4.0  # weight of the global colour distribution (LossWeights.look is the network's)
    consistency: float = 30.0  # weight of the agreement of materials' maps on the colours they share
    overlap_de: float = 4.0  # colours closer than this (ΔE76) count as shared between two materials
    interleaved: float = 0.25  # share of one material around the other from which two are one textured material
    # weight of keeping memory colours (skin of detected faces, neutrals: grade.memory) where the global
    # look put them, per squared ΔE76 averaged over the frame
    protect: float = 0.2


def train_material_look(
    key: torch.Tensor | list[torch.Tensor],
    reference: torch.Tensor,
    lut: torch.Tensor,
    look: LookSettings,
    settings: TrainSettings,
    device: torch.device | str = "cpu",
    on_step: Callable[[int, int, float], None] | None = None,
    init: LearnedLook | None = None,
    extra: MaterialTraining = MaterialTraining(),
) -> tuple[LearnedLook, TrainReport]:
    """Train a material look (:class:`~grade.model.material.MaterialMaps`): cluster shot (after the global
    grade) and reference jointly by appearance, then fit one affine map per material so that each
    material takes the colours of the reference's matching material, under the global look, tone,
    structure and contrast terms. Arguments as :func:`train_look`; ``init`` keeps its materials and
    continues from its maps (``--refine``)."""
    t0 = time.perf_counter()
    device = torch.device(device)
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    keys = key if isinstance(key, list | tuple) else [key]
    lut_d = lut.to(device)
    w = settings.weights
    ms = look.material
    ref = _fit(reference, look.working_side).to(device)
    ref_lab = to_lab(ref)
    n_ref = ref.shape[-2] * ref.shape[-1]
    ridx = torch.randperm(n_ref, generator=gen)[: max(settings.samples * 4, 16384)].to(device)
    dirs3 = random_directions(settings.directions, 3, gen, device)
    ref_look_sorted = sorted_projections(sample_points(ref_lab, ridx), dirs3, settings.samples)
    ref_tone = tone_stats(ref_lab)

    memory = memory_colours([k.float().cpu() for k in keys], reference.float().cpu()) if extra.protect > 0 else None
    frames = []
    for k in keys:
        x = _fit(k, look.working_side).to(device)
        base = apply_lut(lut_d, x)
        fr = {"x": x, "base": base, "lab_in": to_lab(x), "base_lab": to_lab(base)}
        fr["gate"] = level_gate(base, lut_levels(lut))  # as at render time: black and white stay the look's
        if memory is not None:
            lab = fr["lab_in"].flatten(2)[0].T
            fr["protect"] = protection_weights(lab.cpu(), memory).to(device).view(1, *x.shape[-2:])
        frames.append(fr)
    model = MaterialMaps(ms, init.net.maps.shape[0] if init is not None else None)
    if init is not None:
        model.load_state_dict(init.net.state_dict())
    else:  # the shot's own materials: k-means on its appearance alone
        per = max(256, extra.cluster_samples // len(frames))
        shot_pts = []
        for fr in frames:
            f = material_features(fr["base"], ms).flatten(2)[0].T
            shot_pts.append(f[torch.randperm(len(f), generator=gen)[:per]])
        centres = kmeans(torch.cat(shot_pts), ms.materials, gen)
        model = MaterialMaps(ms, len(centres))
        model.centres.copy_(centres)
    model = model.to(device)
    k = model.maps.shape[0]
    # correspondence: shot and reference segmented jointly on content cues that the look does not change
    # (luminance rank, texture, large-scale chroma; position weakly); each material's target is the
    # reference's content of the joint segments its pixels fall in, in those proportions
    region_w = torch.tensor(extra.cue_weights, device=device).view(1, -1, 1, 1)
    ref_desc = descriptors(ref) * region_w
    ref_flat = ref_lab.flatten(2)[0].T
    pools: list[list[tuple[float, torch.Tensor]]] = [[] for _ in range(k)]  # per material: (weight, ref pixels)
    with torch.no_grad():
        for fr in frames:
            fr["w"] = model.memberships(fr["base"])
            fr["labels"] = fr["w"].flatten(2)[0].argmax(0)
            seg, ref_labels = shared_segments(descriptors(fr["x"]) * region_w, ref_desc, extra.segments, gen)
            for j in range(extra.segments):
                where = (ref_labels == j).nonzero()[:, 0]
                if len(where) < extra.min_ref_share * len(ref_labels):
                    continue
                hits = torch.bincount(fr["labels"][seg == j], minlength=k).float()
                for m in hits.nonzero()[:, 0].tolist():
                    pools[m].append((float(hits[m]), where))
    ref_seg: list[torch.Tensor | None] = []
    for m in range(k):
        if not pools[m]:
            ref_seg.append(None)
            continue
        weights = torch.tensor([wt for wt, _ in pools[m]])
        pick = torch.multinomial(weights / weights.sum(), 1024, replacement=True, generator=gen)
        pts = torch.cat(
            [
                ref_flat[where[torch.randint(0, len(where), (int((pick == i).sum()),), generator=gen)]]
                for i, (_, where) in enumerate(pools[m])
                if (pick == i).any()
            ]
        )
        ref_seg.append(sorted_projections(pts, dirs3, 1024))
    # materials that share colours must grade those colours alike (else one material split in two
    # clusters, or two touching ones, would wash): pairwise penalty weighted by colour overlap
    probe, overlap = _material_overlap(frames, k, extra, gen)
    for fr in frames:
        shares = torch.bincount(fr["labels"], minlength=k).float() / len(fr["labels"])
        ok = torch.tensor([r is not None for r in ref_seg]) & (shares > 0.005)
        fr["shares"] = torch.where(ok, shares, torch.zeros_like(shares))

    opt = torch.optim.Adam(model.parameters(), lr=settings.lr * 2)
    steps = settings.steps
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )
    flat = max(float(fr["lab_in"][:, :1].std()) for fr in frames) < settings.flat_std

    def step_loss() -> torch.Tensor:
        total = torch.zeros((), device=device)
        for fr in frames:
            out = fr["base"] + model.correction(fr["base"], fr["w"], gate=fr["gate"])
            out_lab = to_lab(out.clamp(0, 1))
            n = out.shape[-2] * out.shape[-1]
            idx = torch.randint(0, n, (settings.samples,), generator=gen).to(device)
            loss = extra.look * sliced_w1_presorted(sample_points(out_lab, idx), ref_look_sorted, dirs3)
            if w.segment and float(fr["shares"].sum()) > 0:
                seg = segment_loss(out_lab, fr["labels"], ref_seg, fr["shares"], dirs3, gen)
                loss = loss + w.segment * seg
            loss = loss + w.tone * (tone_stats(out_lab) - ref_tone).abs().mean()
            loss = loss + w.structure * structure_loss(out_lab, fr["lab_in"])
            if w.contrast:
                loss = loss + w.contrast * contrast_loss(out_lab, fr["base_lab"])
            if "protect" in fr:
                kept = (fr["protect"] * (out_lab - fr["base_lab"]).pow(2).sum(1)).mean()
                loss = loss + extra.protect * kept
            total = total + loss / len(frames)
        total = total + extra.identity * (model.maps**2).mean()
        if overlap is not None:
            total = total + extra.consistency * _consistency_loss(model, probe, overlap)
        return total

    history, step, stopped = _optimise(
        step_loss, opt, sched, 0 if flat else steps, settings.patience, on_step, settings.adapt_threads
    )
    model.eval()
    report = _report(t0, history, step, stopped)
    return LearnedLook(lut.cpu(), model.cpu(), look), report


def _material_overlap(
    frames: list[dict], k: int, extra: MaterialTraining, gen: torch.Generator, per: int = 384
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Colour samples of the materials' pixels (base colours ``(P, 3)``) and, per pair of materials, how
    much their colours overlap ``(K, K)`` in [0, 1] (the share of each one's samples within
    ``extra.overlap_de`` of the other's, averaged both ways). None when there is one material."""
    cols, labs, owner = [], [], []
    for m in range(k):
        pts, pts_lab = [], []
        for fr in frames:
            where = (fr["labels"] == m).nonzero()[:, 0]
            if len(where):
                pick = where[torch.randint(0, len(where), (per // len(frames) + 1,), generator=gen)]
                pts.append(fr["base"].flatten(2)[0].T[pick])
                pts_lab.append(fr["base_lab"].flatten(2)[0].T[pick])
        if pts:
            cols.append(torch.cat(pts))
            labs.append(torch.cat(pts_lab))
            owner.append(m)
    probe = torch.cat(cols) if cols else torch.zeros(0, 3)
    if len(owner) < 2:
        return probe, None
    # how interleaved two materials are (the share of one found around the other): parts of one textured
    # material (light and dark leaves) are, two materials meeting along a border (sky, sea) are not
    near = torch.zeros(k, k)
    for fr in frames:
        w = fr["w"]
        around = F.avg_pool2d(F.pad(w, (4,) * 4, mode="replicate"), 9, stride=1)
        mass = w.sum((0, 2, 3))
        co = torch.einsum("bmhw,bnhw->mn", around, w)
        near += co / torch.minimum(mass[:, None], mass[None]).clamp_min(1e-6) / len(frames)
    mixing = (near / extra.interleaved).clamp(0, 1)
    overlap = torch.zeros(k, k)
    for i, m in enumerate(owner):
        for j, n in enumerate(owner):
            if i != j:
                near = torch.cdist(labs[i], labs[j]).min(1).values < extra.overlap_de
                overlap[m, n] += 0.5 * near.float().mean()
                overlap[n, m] += 0.5 * near.float().mean()
    return probe, overlap * mixing


def _consistency_loss(model: MaterialMaps, probe: torch.Tensor, overlap: torch.Tensor) -> torch.Tensor:
    """Overlap-weighted mean squared difference (RGB x 100) of every two materials' graded colours on the
    probe colours ``(P, 3)``."""
    maps = model.maps * model.confidence[:, None]
    a = maps[:, :9].reshape(-1, 3, 3)
    graded = torch.einsum("kij,pj->kpi", a, probe) + maps[:, None, 9:]  # (K, P, 3) corrections
    diff = ((graded[:, None] - graded[None]) * 100).pow(2).sum(-1).mean(-1)  # (K, K)
    return (overlap * diff).sum() / overlap.sum().clamp_min(1e-6) / 100


def _optimise(
    step_loss: Callable[[], torch.Tensor],
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    steps: int,
    patience: int,
    on_step: Callable[[int, int, float], None] | None,
    adapt_threads: bool = True,
) -> tuple[list[float], int, bool]:
    """Up to ``steps`` optimiser steps on ``step_loss()``, stopping when its smoothed value has not improved
    by 0.5 % for ``patience`` steps. Returns the losses, the steps taken and whether it stopped early.

    With ``adapt_threads`` the thread count follows the machine's load: the first steps are timed with
    torch's threads and then with one, and the faster count trains the rest (on a busy machine, threads
    that wait for a core cost more than they bring: measured in BENCHMARKS.md)."""
    history: list[float] = []
    best, since_best, ema = math.inf, 0, None
    step = 0
    threads = torch.get_num_threads()
    probe = _ThreadProbe(threads) if adapt_threads and threads > 1 and steps > 3 * _ThreadProbe.span else None
    try:
        for step in range(1, steps + 1):
            if probe is not None:
                torch.set_num_threads(probe.threads_for(step))
            t0 = time.perf_counter()
            total = step_loss()
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            sched.step()
            value = float(total.detach())
            if probe is not None:
                probe.record(step, time.perf_counter() - t0)
            history.append(value)
            ema = value if ema is None else 0.9 * ema + 0.1 * value
            if ema < best * 0.995:
                best, since_best = ema, 0
            else:
                since_best += 1
            if on_step:
                on_step(step, steps, value)
            if since_best >= patience:
                return history, step, True
        return history, step, False
    finally:
        torch.set_num_threads(threads)


class _ThreadProbe:
    """Which thread count trains faster right now: steps ``1..span`` run with ``threads`` and
    ``span+1..2·span`` with one (the first of each is a warm-up, not timed); from then on the
    faster one."""

    span = 4

    def __init__(self, threads: int) -> None:
        self.counts = (threads, 1)
        self.times: dict[int, list[float]] = {threads: [], 1: []}
        self.chosen: int | None = None

    def threads_for(self, step: int) -> int:
        if self.chosen is not None:
            return self.chosen
        return self.counts[0] if step <= self.span else self.counts[1]

    def record(self, step: int, seconds: float) -> None:
        if self.chosen is not None or step % self.span == 1:
            return
        self.times[self.threads_for(step)].append(seconds)
        if step == 2 * self.span:
            many, one = (statistics.median(self.times[c]) for c in self.counts)
            self.chosen = self.counts[0] if many < one else 1


def _report(t0: float, history: list[float], step: int, stopped: bool) -> TrainReport:
    return TrainReport(
        steps=step,
        seconds=time.perf_counter() - t0,
        loss_first=history[0] if history else math.nan,
        loss_last=history[-1] if history else math.nan,
        stopped_early=stopped,
        history=history,
    )
