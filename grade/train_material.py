"""Key-frame trainer of the material look (the default learned kind): soft material memberships from
the frame's own features, one colour correction per material, trained so that one material keeps
one grade wherever it appears, with memory colours (skin, neutrals) protected."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from grade.losses import (
    contrast_loss,
    descriptors,
    random_directions,
    sample_points,
    segment_loss,
    shared_segments,
    sliced_w1_presorted,
    sorted_projections,
    structure_loss,
    to_lab,
    tone_stats,
)
from grade.lut import apply_lut
from grade.memory import implausible, memory_colours, protection_weights, sky_weight
from grade.model.affine import level_gate, lut_levels
from grade.model.look import LearnedLook, LookSettings
from grade.model.material import MaterialMaps, kmeans, material_features
from grade.train_loop import TrainReport, TrainSettings, fit_side, optimise, train_report


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
    # weight of the global colour distribution (LossWeights.look is the network's); measured over the
    # sample pairs: 4 -> 8 takes look 1.99 -> 1.79 for wash 0.85 -> 0.95, region unchanged (12: look 1.71, wash 1.06)
    look: float = 8.0
    consistency: float = 30.0  # weight of the agreement of materials' maps on the colours they share
    overlap_de: float = 4.0  # colours closer than this (ΔE76) count as shared between two materials
    interleaved: float = 0.25  # share of one material around the other from which two are one textured material
    # weight of keeping memory colours (skin of detected faces, neutrals: grade.memory) where the global
    # look put them, per squared ΔE76 averaged over the frame
    protect: float = 0.2
    # weight of keeping a blue sky's colours out of green hues (grade.memory.implausible), per squared
    # chroma averaged over the frame: the look term would otherwise pull them back toward a green reference
    sky: float = 2.0


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
    ref = fit_side(reference, look.working_side).to(device)
    ref_lab = to_lab(ref)
    n_ref = ref.shape[-2] * ref.shape[-1]
    ridx = torch.randperm(n_ref, generator=gen)[: max(settings.samples * 4, 16384)].to(device)
    dirs3 = random_directions(settings.directions, 3, gen, device)
    ref_look_sorted = sorted_projections(sample_points(ref_lab, ridx), dirs3, settings.samples)
    ref_tone = tone_stats(ref_lab)

    memory = memory_colours([k.float().cpu() for k in keys], reference.float().cpu()) if extra.protect > 0 else None
    frames = []
    for k in keys:
        x = fit_side(k, look.working_side).to(device)
        base = apply_lut(lut_d, x)
        fr = {"x": x, "base": base, "lab_in": to_lab(x), "base_lab": to_lab(base)}
        fr["gate"] = level_gate(base, lut_levels(lut))  # as at render time: black and white stay the look's
        if memory is not None:
            lab = fr["lab_in"].flatten(2)[0].T
            fr["protect"] = protection_weights(lab.cpu(), memory).to(device).view(1, *x.shape[-2:])
            fr["sky"] = sky_weight(lab)  # (h·w,): fixed for the key frame, so once, not every step
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
                # and a blue sky's colours out of green hues (grade.memory), as the global look keeps them
                flat = out_lab.flatten(2)[0].T
                green = implausible(None, flat, sky=fr["sky"]) * flat[:, 1:].pow(2).sum(1)
                loss = loss + extra.protect * kept + extra.sky * green.mean()
            total = total + loss / len(frames)
        total = total + extra.identity * (model.maps**2).mean()
        if overlap is not None:
            total = total + extra.consistency * _consistency_loss(model, probe, overlap)
        return total

    history, step, stopped = optimise(
        step_loss, opt, sched, 0 if flat else steps, settings.patience, on_step, settings.adapt_threads
    )
    model.eval()
    report = train_report(t0, history, step, stopped)
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
