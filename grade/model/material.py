"""Regional by material, not by position: soft material memberships and one colour map per material.

The learned look's default head. Instead of a field of affine transforms that may vary freely in x
and y (which lets one stone wall be graded red on the left and yellow on the right), the frame is
split into a few *materials* by appearance, and each material gets one affine colour map on top of
the global grade:

``out(x) = base(x) + Σ_k w_k(x) · (ΔA_k · base(x) + b_k)``, with ``base = LUT(in)``.

* **Appearance, not position.** A material is a cluster of per-pixel features: the colour of the
  globally graded frame (so that shot and reference, already matched globally, are comparable),
  its large-scale context, its texture energy, and the vertical position only as a weak tie-breaker
  (:func:`material_features`). Shot and reference are clustered *jointly*, so cluster ``k`` of the
  shot is graded after the reference's pixels of cluster ``k`` (sky after sky, foliage after
  foliage).
* **Edges of the shot's own.** Memberships are soft (a Gaussian of the feature distance to each
  centre) and then edge-aware smoothed by a guided filter on the frame's own colours
  (:func:`guided_filter`), so they follow object boundaries and are constant inside one object.
* **A fallback where nothing matches.** A cluster the reference barely holds has confidence 0
  (``confidence``): its map stays the identity, i.e. the global look.

Within one material, one input colour gets one output colour (a colour map, not a wash); the
memberships are a function of the frame alone, so every frame of a shot is graded the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import kornia.color as KC
import kornia.filters as KF
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class MaterialSettings:
    """How materials are found (stored with a look: the same numbers must be used at render time)."""

    materials: int = 6  # clusters of shot + reference
    colour: float = 0.5  # weight of the (slightly blurred) Lab colour, per Lab unit
    context: float = 2.0  # weight of the large-scale Lab context (materials are regions, not colours)
    texture: float = 1.0  # weight of the local L* standard deviation
    position: float = 8.0  # Lab units per frame height of vertical position: a weak tie-breaker
    temperature: float = 6.0  # softness of memberships, in feature units
    radius: int = 4  # guided filter window (at working resolution)
    eps: float = 1e-3  # guided filter regularisation (RGB in [0, 1])


def box_filter(t: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over ``(2r+1)²`` windows of ``(N, C, h, w)``, borders reflected; by running sums, so its cost
    does not grow with ``r`` (a 9×9 average pool over the guided filter's 40 planes took 30 ms at 192 px).

    >>> t = torch.rand(1, 2, 9, 11)
    >>> ref = F.avg_pool2d(F.pad(t, (3, 3, 3, 3), mode="reflect"), 7, stride=1)
    >>> bool(torch.allclose(box_filter(t, 3), ref, atol=1e-5))
    True
    """
    r = min(r, t.shape[-2] - 1, t.shape[-1] - 1)
    if r < 1:
        return t
    n = 2 * r + 1
    p = F.pad(t, (r, r, r, r), mode="reflect")
    c = F.pad(p.cumsum(-1), (1, 0))
    p = c[..., n:] - c[..., :-n]
    c = F.pad(p.cumsum(-2), (0, 0, 1, 0))
    return (c[..., n:, :] - c[..., :-n, :]) / (n * n)


_box = box_filter


def material_features(rgb: torch.Tensor, settings: MaterialSettings) -> torch.Tensor:
    """Per-pixel appearance features ``(1, 8, h, w)`` of an RGB image ``(1, 3, h, w)`` in [0, 1], weighted
    so that Euclidean distance compares them: Lab colour (σ 1 px), Lab context (σ ~ 1/24 of the long
    side), local texture energy (std of L* in 5×5) and vertical position.

    >>> f = material_features(torch.rand(1, 3, 40, 60), MaterialSettings())
    >>> tuple(f.shape)
    (1, 8, 40, 60)
    """
    _, _, h, w = rgb.shape
    lab = KC.rgb_to_lab(rgb.clamp(1e-6, 1))
    fine = KF.gaussian_blur2d(lab, (5, 5), (1.0, 1.0), border_type="reflect")
    sigma = max(1.0, max(h, w) / 24)
    k = int(2 * round(2 * sigma) + 1)
    k = min(k, 2 * (min(h, w) // 2) - 1) if min(h, w) > 2 else 1
    context = KF.gaussian_blur2d(lab, (k, k), (sigma, sigma), border_type="reflect") if k >= 3 else lab
    lum = lab[:, :1]
    mu = _box(lum, 2)
    tex = (_box(lum * lum, 2) - mu * mu).clamp_min(0).sqrt()
    tex = _box(tex, 2)
    y = torch.linspace(0, 1, h, device=rgb.device, dtype=rgb.dtype).view(1, 1, h, 1).expand(1, 1, h, w)
    s = settings
    return torch.cat([fine * s.colour, context * s.context, tex * s.texture, y * s.position], 1)


def kmeans(points: torch.Tensor, k: int, gen: torch.Generator, iters: int = 15) -> torch.Tensor:
    """k-means with k-means++ seeding (deterministic for ``gen``): centres ``(k', D)`` of points ``(N, D)``,
    ``k' <= k`` (fewer when the points hold fewer distinct values).

    >>> c = kmeans(torch.tensor([[0.0], [0.1], [10.0], [10.1]]), 2, torch.Generator().manual_seed(0))
    >>> sorted(round(float(v), 2) for v in c[:, 0])
    [0.05, 10.05]
    """
    first = int(torch.randint(0, len(points), (1,), generator=gen))
    centres = [points[first]]
    d2 = ((points - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        if float(d2.sum()) <= 1e-12:
            break
        nxt = int(torch.multinomial(d2 / d2.sum(), 1, generator=gen))
        centres.append(points[nxt])
        d2 = torch.minimum(d2, ((points - points[nxt]) ** 2).sum(1))
    c = torch.stack(centres)
    for _ in range(iters):
        lab = torch.cdist(points, c).argmin(1)
        mass = torch.bincount(lab, minlength=len(c)).to(points.dtype)
        sums = torch.zeros_like(c).index_add_(0, lab, points)
        c = torch.where((mass > 0)[:, None], sums / mass.clamp_min(1)[:, None], c)
    return c


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """Edge-aware smoothing of ``src`` ``(1, C, h, w)`` by a colour guide ``(1, 3, h, w)`` (He et al.): in
    each window the output is an affine function of the guide's colours, so it is flat inside a
    uniform object and changes where the guide has an edge."""
    _, c, h, w = src.shape
    ii, jj = torch.triu_indices(3, 3, device=guide.device)
    cross = (guide[:, :, None] * src[:, None]).reshape(1, 3 * c, h, w)
    moments = _box(torch.cat([guide, src, guide[:, ii] * guide[:, jj], cross], 1), radius)
    mg, ms, gg = moments[:, :3], moments[:, 3 : 3 + c], moments[:, 3 + c : 9 + c]
    gs = moments[:, 9 + c :].reshape(1, 3, c, h, w)
    cov = torch.empty(1, 3, 3, h, w, dtype=guide.dtype, device=guide.device)
    cov[:, ii, jj] = gg - mg[:, ii] * mg[:, jj]
    cov[:, jj, ii] = cov[:, ii, jj]
    cov = cov.permute(0, 3, 4, 1, 2).reshape(-1, 3, 3) + eps * torch.eye(3, dtype=guide.dtype, device=guide.device)
    cgs = (gs - mg[:, :, None] * ms[:, None]).permute(0, 3, 4, 1, 2).reshape(-1, 3, c)
    a = torch.linalg.solve(cov, cgs)  # (P, 3, C)
    a = a.reshape(1, h, w, 3 * c).permute(0, 3, 1, 2)
    b = ms - (a.reshape(1, 3, c, h, w) * mg[:, :, None]).sum(1)
    coef = _box(torch.cat([a, b], 1), radius)
    return (coef[:, : 3 * c].reshape(1, 3, c, h, w) * guide[:, :, None]).sum(1) + coef[:, 3 * c :]


def soft_memberships(
    features: torch.Tensor, guide: torch.Tensor, centres: torch.Tensor, settings: MaterialSettings
) -> torch.Tensor:
    """Memberships ``(1, K, h, w)`` (summing to 1) of each pixel in each material: a Gaussian of the
    feature distance to each centre, then :func:`guided_filter` on ``guide`` (the frame's RGB)."""
    _, d, h, w = features.shape
    pts = features.flatten(2)[0].T  # (P, D)
    d2 = torch.cdist(pts, centres.to(pts)) ** 2
    logits = -(d2 - d2.min(1, keepdim=True).values) / (2 * settings.temperature**2)
    soft = torch.softmax(logits, 1).T.reshape(1, -1, h, w)
    smooth = guided_filter(guide, soft, settings.radius, settings.eps).clamp_min(0)
    return smooth / smooth.sum(1, keepdim=True).clamp_min(1e-6)


class MaterialMaps(nn.Module):
    """One affine colour map per material on top of the global grade (see the module docstring).

    Buffers: ``centres`` ``(K, 8)`` material centres in :func:`material_features` space, ``confidence``
    ``(K,)`` in [0, 1] (0: nothing in the reference matches, the material keeps the global look).
    Parameter: ``maps`` ``(K, 12)``: per material ``ΔA`` (row-major 3×3) and ``b``, identity at 0.
    """

    def __init__(self, settings: MaterialSettings, materials: int | None = None) -> None:
        super().__init__()
        k = materials or settings.materials
        self.settings = settings
        self.register_buffer("centres", torch.zeros(k, 8))
        self.register_buffer("confidence", torch.ones(k))
        self.maps = nn.Parameter(torch.zeros(k, 12))

    def memberships(self, base: torch.Tensor) -> torch.Tensor:
        """``(1, K, h, w)`` memberships of a globally graded frame ``base`` ``(1, 3, h, w)``."""
        return soft_memberships(material_features(base, self.settings), base, self.centres, self.settings)

    def correction(
        self, base: torch.Tensor, weights: torch.Tensor, regional: float = 1.0, gate: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``Σ_k w_k (ΔA_k · base + g · b_k)`` ``(1, 3, h, w)`` for memberships ``weights`` ``(1, K, h, w)``;
        ``gate`` ``g`` ``(1, 1, h, w)`` scales the offsets only (they are what would lift black: the linear
        part vanishes there by itself)."""
        maps = self.maps * self.confidence[:, None] * regional
        a = torch.einsum("kij,bkhw->bijhw", maps[:, :9].reshape(-1, 3, 3), weights)  # (1, 3, 3, h, w)
        t = torch.einsum("kc,bkhw->bchw", maps[:, 9:], weights)
        return (a * base[:, None]).sum(2) + (t if gate is None else t * gate)

    def forward(self, base: torch.Tensor, regional: float = 1.0, gate: torch.Tensor | None = None) -> torch.Tensor:
        """The graded frame ``(1, 3, h, w)`` for a globally graded one."""
        return base + self.correction(base, self.memberships(base), regional, gate)
