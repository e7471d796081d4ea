"""Losses of the learned look, on ``(B, 3, H, W)`` RGB tensors in [0, 1] (kornia for colour and filters).

* :func:`look_loss` — the output's colours match the reference's, jointly across channels, in CIELAB
  (sliced Wasserstein-1), plus tone and contrast statistics at several scales;
* :func:`region_loss` — correspondence without pretrained weights: a sliced Wasserstein distance on
  *joint* vectors (content descriptor, colour). Descriptors are per-pixel cues any photo offers —
  vertical position, large-scale luminance, local texture energy, large-scale chroma direction —
  rank-normalised within each image so that "the brightest, smoothest, highest region" of the
  shot is paired with that of the reference. The colours of the output are pulled toward the
  reference colours *of matching content* rather than toward its global average;
* :func:`structure_loss` — 1 minus the SSIM structure term of luminance (edges and texture kept);
* :func:`matting_loss` — the photorealism regulariser: the matting-Laplacian energy of Levin et al.
  (how far the output is from a locally affine function of the input's colours), with box filters;
* :func:`smoothness_loss` — edge-aware total variation of the predicted coefficient field.
"""

from __future__ import annotations

from dataclasses import dataclass

import kornia.color as KC
import kornia.filters as KF
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossWeights:
    look: float = 0.5  # global colour distribution
    region: float = 0.0  # joint (descriptor, colour) distribution; the segment term does this job better
    segment: float = 4.0  # colour distribution segment by segment (regional look)
    tone: float = 0.5
    structure: float = 20.0
    matting: float = 200.0
    smooth: float = 2.0
    contrast: float = 1.0  # local contrast kept against the global grade (no haze)
    # the grade's correction at the key frame and at the next frame, motion-compensated, should agree
    # (Ruder et al. 2016). Off by default: 2.5 % less warping error on handheld footage for ~30 % more
    # training (BENCHMARKS.md, "Temporal term in training"); the stabiliser does most of that job
    temporal: float = 0.0
    lut: float = 0.0  # the same input colour graded alike wherever it is (how far a 3D LUT can follow the look)


def to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in [0,1] -> CIELAB (kornia)."""
    return KC.rgb_to_lab(rgb.clamp(1e-6, 1))


def random_directions(n: int, dim: int, gen: torch.Generator | None, device=None) -> torch.Tensor:
    d = torch.randn(n, dim, generator=gen)
    return F.normalize(d, dim=1).to(device)


def sliced_w1(x: torch.Tensor, y: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Sliced Wasserstein-1 distance between point sets ``(N, D)`` and ``(M, D)`` along ``dirs`` ``(K, D)``.

    Sets of different sizes are compared through their quantiles (sorted projections of the larger
    set are resampled to the smaller set's size).
    """
    px = torch.sort(x @ dirs.T, dim=0).values
    py = torch.sort(y @ dirs.T, dim=0).values
    if px.shape[0] != py.shape[0]:
        n = min(px.shape[0], py.shape[0])
        px = _resample_sorted(px, n)
        py = _resample_sorted(py, n)
    return (px - py).abs().mean()


def sorted_projections(y: torch.Tensor, dirs: torch.Tensor, n: int) -> torch.Tensor:
    """Sorted projections of a fixed point set ``(M, D)`` on ``dirs`` ``(K, D)``, resampled to ``n`` quantiles:
    computed once, for :func:`sliced_w1_presorted`."""
    return _resample_sorted(torch.sort(y @ dirs.T, dim=0).values, n)


def sliced_w1_presorted(x: torch.Tensor, y_sorted: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """:func:`sliced_w1` against a target given by :func:`sorted_projections` (same ``dirs``, ``len(x)`` rows)."""
    return (torch.sort(x @ dirs.T, dim=0).values - y_sorted).abs().mean()


def _resample_sorted(p: torch.Tensor, n: int) -> torch.Tensor:
    if p.shape[0] == n:
        return p
    idx = torch.linspace(0, p.shape[0] - 1, n, device=p.device).round().long()
    return p[idx]


def sample_points(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``(1, C, H, W)`` -> ``(len(idx), C)`` at flat pixel indices."""
    return t.flatten(2)[0, :, idx].T


def look_loss(out_lab: torch.Tensor, ref_points: torch.Tensor, idx: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Sliced W1 in Lab between sampled output pixels and reference pixels ``(M, 3)``."""
    return sliced_w1(sample_points(out_lab, idx), ref_points, dirs)


def tone_stats(lab: torch.Tensor, levels: int = 3) -> torch.Tensor:
    """Mean, spread and local contrast of L* at several scales: a ``(levels * 2 + 2,)`` vector."""
    lum = lab[:, :1]
    stats = [lum.mean(), lum.std()]
    x = lum
    for _ in range(levels):
        blurred = KF.gaussian_blur2d(x, (9, 9), (2.0, 2.0), border_type="reflect")
        stats.append((x - blurred).abs().mean())  # local contrast at this scale
        stats.append(blurred.std())
        x = F.avg_pool2d(blurred, 2)
    return torch.stack(stats)


def descriptors(rgb: torch.Tensor) -> torch.Tensor:
    """Per-pixel content cues ``(1, 5, H, W)``, each rank-normalised to [0, 1] within the image.

    Channels: vertical position, large-scale luminance, local texture energy, large-scale chroma
    (a*, b*) -- things that tell sky from ground from foliage without a pretrained model.
    """
    lab = to_lab(rgb)
    _, _, h, w = rgb.shape
    s = max(h, w)
    y = torch.linspace(0, 1, h, device=rgb.device).view(1, 1, h, 1).expand(1, 1, h, w)
    k = max(3, (s // 16) | 1)
    sigma = k / 4
    big = KF.gaussian_blur2d(lab, (k, k), (sigma, sigma), border_type="reflect")
    lum = lab[:, :1] / 100
    mu = KF.box_blur(lum, (5, 5), border_type="reflect")
    tex = (KF.box_blur(lum * lum, (5, 5), border_type="reflect") - mu * mu).clamp_min(0).sqrt()
    tex = KF.gaussian_blur2d(tex, (k, k), (sigma, sigma), border_type="reflect")
    feats = torch.cat([y, big[:, :1], tex, big[:, 1:]], 1)
    return _rank_normalise(feats)


def _rank_normalise(f: torch.Tensor) -> torch.Tensor:
    b, c, h, w = f.shape
    flat = f.reshape(c, -1)
    ranks = torch.argsort(torch.argsort(flat, dim=1), dim=1).float() / max(1, flat.shape[1] - 1)
    return ranks.reshape(b, c, h, w)


@dataclass(frozen=True)
class RegionSpec:
    weights: tuple[float, ...] = (25.0, 25.0, 15.0, 10.0, 10.0)  # Lab units per unit of rank


def region_loss(
    out_lab: torch.Tensor, content_desc: torch.Tensor, ref_joint: torch.Tensor, idx: torch.Tensor, dirs: torch.Tensor
) -> torch.Tensor:
    """Sliced W1 on joint (descriptor, Lab) vectors: colours must match the reference *where content matches*.

    Args:
        content_desc: :func:`descriptors` of the shot's key frame, already weighted.
        ref_joint: ``(M, D + 3)`` reference points (weighted descriptors, Lab).
    """
    joint = torch.cat([sample_points(content_desc, idx), sample_points(out_lab, idx)], 1)
    return sliced_w1(joint, ref_joint, dirs)


def structure_loss(out_lab: torch.Tensor, in_lab: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """1 - mean SSIM *structure* term of L* (0 when every edge and texture of the input is kept)."""
    x, y = out_lab[:, :1] / 100, in_lab[:, :1] / 100
    k = (2 * radius + 1, 2 * radius + 1)
    mx, my = KF.box_blur(x, k, border_type="reflect"), KF.box_blur(y, k, border_type="reflect")
    vx = (KF.box_blur(x * x, k, border_type="reflect") - mx * mx).clamp_min(0)
    vy = (KF.box_blur(y * y, k, border_type="reflect") - my * my).clamp_min(0)
    cxy = KF.box_blur(x * y, k, border_type="reflect") - mx * my
    c3 = (0.03**2) / 2
    return 1 - ((cxy + c3) / ((vx * vy + 1e-12).sqrt() + c3)).mean()


def matting_loss(out: torch.Tensor, inp: torch.Tensor, radius: int = 1, eps: float = 1e-4) -> torch.Tensor:
    """Matting-Laplacian energy (Levin et al.) of ``out`` w.r.t. ``inp``, both ``(1, 3, H, W)``.

    Per window: the residual variance of each output channel after the best (ridge-regularised)
    affine fit from the input's three colours. Zero when the output is locally affine in the input.
    """
    k = (2 * radius + 1, 2 * radius + 1)

    def box(t: torch.Tensor) -> torch.Tensor:
        return KF.box_blur(t, k, border_type="reflect")

    mi = box(inp)  # (1,3,H,W)
    ii = torch.stack([box(inp[:, a : a + 1] * inp[:, b : b + 1])[:, 0] for a in range(3) for b in range(3)], 1)
    cov = ii - torch.stack([mi[:, a] * mi[:, b] for a in range(3) for b in range(3)], 1)
    cov = cov.permute(0, 2, 3, 1).reshape(-1, 3, 3) + eps * torch.eye(3, device=out.device)
    mo = box(out)
    io = torch.stack([box(inp[:, a : a + 1] * out) for a in range(3)], 1)  # (1, 3in, 3out, H, W)
    cio = io - mi[:, :, None] * mo[:, None]
    cio = cio.permute(0, 3, 4, 1, 2).reshape(-1, 3, 3)  # (P, in, out)
    vo = (box(out * out) - mo * mo).permute(0, 2, 3, 1).reshape(-1, 3)
    a = torch.linalg.solve(cov, cio)  # (P, in, out)
    explained = (a * cio).sum(1)  # (P, out)
    return (vo - explained).clamp_min(0).mean() * 1000


def smoothness_loss(coef: torch.Tensor, guide: torch.Tensor, sigma: float = 0.05) -> torch.Tensor:
    """Edge-aware total variation of a coefficient field ``(1, 12, H, W)``: free to change across edges of
    ``guide`` (input luminance ``(1, 1, H, W)`` in [0,1]), smooth elsewhere."""
    dx = (coef[..., :, 1:] - coef[..., :, :-1]).abs().mean(1, keepdim=True)
    dy = (coef[..., 1:, :] - coef[..., :-1, :]).abs().mean(1, keepdim=True)
    wx = torch.exp(-(guide[..., :, 1:] - guide[..., :, :-1]).abs() / sigma)
    wy = torch.exp(-(guide[..., 1:, :] - guide[..., :-1, :]).abs() / sigma)
    return (dx * wx).mean() + (dy * wy).mean()


def shared_segments(
    content_desc: torch.Tensor, ref_desc: torch.Tensor, k: int, gen: torch.Generator, iters: int = 20
) -> tuple[torch.Tensor, torch.Tensor]:
    """Segment two images *jointly*: k-means on the pooled descriptors of both, so segment j of the
    shot and segment j of the reference hold content that looks alike (top, bright, smooth...).

    Args:
        content_desc, ref_desc: ``(1, D, H, W)`` and ``(1, D, H', W')`` weighted descriptors.
    Returns:
        labels ``(H*W,)`` and ``(H'*W',)`` (int64).
    """
    a = content_desc.flatten(2)[0].T
    b = ref_desc.flatten(2)[0].T
    pool = torch.cat([a, b])
    centres = pool[torch.randperm(len(pool), generator=gen)[:k]].clone()
    for _ in range(iters):
        lab = torch.cdist(pool, centres).argmin(1)
        for j in range(k):
            sel = pool[lab == j]
            if len(sel):
                centres[j] = sel.mean(0)
    return torch.cdist(a, centres).argmin(1), torch.cdist(b, centres).argmin(1)


def segment_loss(
    out_lab: torch.Tensor,
    labels: torch.Tensor,
    ref_sorted: list[torch.Tensor | None],
    shares: torch.Tensor,
    dirs: torch.Tensor,
    gen: torch.Generator,
) -> torch.Tensor:
    """Share-weighted sliced W1 in Lab, segment by segment (the shot's segment j against the reference's).

    Args:
        labels: ``(H*W,)`` segment of each output pixel.
        ref_sorted: per segment, :func:`sorted_projections` of the reference's Lab pixels in it (n rows).
        shares: ``(k,)`` fraction of the shot in each segment (0 where either side is too small).
    """
    flat = out_lab.flatten(2)[0].T
    total = out_lab.new_zeros(())
    for j, ref in enumerate(ref_sorted):
        if ref is None or shares[j] <= 0:
            continue
        idx = (labels == j).nonzero()[:, 0]
        pick = idx[torch.randint(0, len(idx), (ref.shape[0],), generator=gen)]
        total = total + shares[j] * sliced_w1_presorted(flat[pick], ref, dirs)
    return total / shares.sum().clamp_min(1e-6)


def contrast_loss(
    out_lab: torch.Tensor, base_lab: torch.Tensor, radii: tuple[int, ...] = (3,), keep: float = 0.9
) -> torch.Tensor:
    """Penalises contrast of L* lost against the global grade ``base_lab`` (haze, lifted blacks), not
    contrast gained: local (the standard deviation of L* in ``(2r+1)^2`` windows, at each radius)
    and over the whole frame (its standard deviation of L*).
    """

    def local_std(lum: torch.Tensor, r: int) -> torch.Tensor:
        k = (2 * r + 1, 2 * r + 1)
        mu = KF.box_blur(lum, k, border_type="reflect")
        return (KF.box_blur(lum * lum, k, border_type="reflect") - mu * mu).clamp_min(1e-6).sqrt()

    out_l, base_l = out_lab[:, :1], base_lab[:, :1]
    loss = sum(
        F.relu(keep * local_std(base_l, r) - local_std(out_l, r)).mean()
        for r in radii
        if 2 * r + 1 < min(out_l.shape[-2:])
    )
    return loss + F.relu(keep * base_l.std(dim=(-2, -1)) - out_l.std(dim=(-2, -1))).mean()


def temporal_loss(res_a: torch.Tensor, res_b: torch.Tensor, grid_ba: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
    """Warped inconsistency of the grade between two neighbouring frames (where the flow is trusted).

    Args:
        res_a, res_b: ``(1, 3, h, w)`` the grade's change of each frame (Lab of output minus base).
        grid_ba: ``(1, h, w, 2)`` sampling grid (``grid_sample``, align_corners) that brings frame a
            onto frame b's pixels.
        conf: ``(1, 1, h, w)`` in [0, 1]: trust in that correspondence (occlusions, motion edges,
            light changes are 0).
    """
    warped = F.grid_sample(res_a, grid_ba, mode="bilinear", padding_mode="border", align_corners=True)
    return (conf * (res_b - warped).abs()).sum() / (3 * conf.sum().clamp_min(1.0))


def lut_consistency_loss(out_lab: torch.Tensor, rgb_in: torch.Tensor, grid: int = 33) -> torch.Tensor:
    """Mean CIELAB distance of each output pixel from the output a 3D LUT would give its input colour.

    The LUT is the look's own mapping averaged per input colour (``(B, 3, H, W)`` RGB ``rgb_in`` splatted
    trilinearly into a ``grid``-point lattice, normalised and sliced back), taken as fixed: the gradient
    pulls each pixel toward what other pixels of the same colour get. An L1 distance: the look stays
    free to differ where that pays off elsewhere in the loss, and is pushed to agree everywhere else.
    """
    b, c, h, w = out_lab.shape
    pos = rgb_in.detach().clamp(0, 1).permute(1, 0, 2, 3).reshape(3, -1) * (grid - 1)
    lo = pos.floor().clamp(max=grid - 2)
    frac = pos - lo
    lo = lo.long()
    values = out_lab.detach().permute(1, 0, 2, 3).reshape(c, -1)
    corners = []
    for dr in (0, 1):
        for dg in (0, 1):
            for db in (0, 1):
                idx = ((lo[0] + dr) * grid + lo[1] + dg) * grid + lo[2] + db
                wt = (
                    (frac[0] if dr else 1 - frac[0])
                    * (frac[1] if dg else 1 - frac[1])
                    * (frac[2] if db else 1 - frac[2])
                )
                corners.append((idx, wt))
    sums = values.new_zeros(c, grid**3)
    weights = values.new_zeros(grid**3)
    for idx, wt in corners:
        sums.index_add_(1, idx, values * wt)
        weights.index_add_(0, idx, wt)
    table = sums / weights.clamp_min(1e-8)
    pred = sum(table[:, idx] * wt for idx, wt in corners)
    pred = pred.reshape(c, b, h, w).permute(1, 0, 2, 3)
    return ((out_lab - pred) ** 2).sum(1).clamp_min(1e-6).sqrt().mean()
