"""Key-frame trainer of the learned look: Adam with a cosine schedule, early stopping on a plateau,
deterministic for a seed.

:func:`train_look` is the front: it trains the affine-network look here and hands the material look
(the default kind) to :mod:`grade.train_material`; both share :mod:`grade.train_loop`.

The network starts as the identity on top of the fast mode's global LUT, so training only learns
the *correction*: where the reference's colours belong region by region, under the structure
and photorealism terms.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch

from grade.losses import (
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
from grade.model.affine import apply_coefficients, network_input
from grade.model.hrnet import AffineHRNet
from grade.model.look import LearnedLook, LookSettings
from grade.train_loop import TrainReport, TrainSettings, fit_side, optimise, train_report
from grade.train_material import train_material_look

__all__ = ["TrainReport", "TrainSettings", "train_look"]


def _neighbour(fr: dict, nxt: torch.Tensor, look: LookSettings, lut: torch.Tensor, device) -> dict | None:
    """The next frame of a key frame, ready for the temporal term: its network input and base, and
    the flow-based correspondence to the key frame with its confidence. None without motion (a
    still shot: nothing to learn) or when the sizes differ."""
    from grade.temporal import fb_confidence, flow_dis, make_dis, motion_boundaries, photometric_confidence, warp

    x = fr["x"]
    x2 = fit_side(nxt, look.working_side).to(device)
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

    ref = fit_side(reference, look.working_side).to(device)
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
        x = fit_side(k, look.working_side).to(device)
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

    history, step, stopped = optimise(
        step_loss, opt, sched, 0 if flat else settings.steps, settings.patience, on_step, settings.adapt_threads
    )
    net.eval()
    report = train_report(t0, history, step, stopped)
    return LearnedLook(lut.cpu(), net.cpu(), look), report
