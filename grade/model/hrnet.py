"""A small High-Resolution Network (after Li et al. 2019, "High-Resolution Network for
Photorealistic Style Transfer") that predicts a field of local affine colour transforms.

Branches run in parallel at full, 1/2 and 1/4 of the working resolution; after every stage an
exchange unit gives each branch the sum of all branches resampled to its scale (strided 3x3
convolutions downwards, 1x1 convolutions and bilinear upsampling upwards). The full-resolution
branch is kept throughout, so fine structure is never squeezed through a bottleneck. Instance
normalisation everywhere.

The head predicts 12 numbers per pixel: a 3x3 matrix and an offset, as a *correction* around the
identity (its last layer starts at zero, so an untrained network leaves its input unchanged).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_in(cin: int, cout: int, stride: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
        nn.InstanceNorm2d(cout, affine=True),
    ]
    if act:
        layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """Two 3x3 conv + IN, with a skip connection."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_in(ch, ch), conv_in(ch, ch, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.body(x), 0.2)


class Exchange(nn.Module):
    """Multi-resolution exchange: output branch j = sum over input branches k resampled to j."""

    def __init__(self, widths: list[int]) -> None:
        super().__init__()
        self.widths = widths
        self.paths = nn.ModuleDict()
        for k, ck in enumerate(widths):
            for j, cj in enumerate(widths):
                if k == j:
                    continue
                if k < j:  # down: (j - k) strided convolutions
                    steps = [conv_in(ck if s == 0 else cj, cj, stride=2, act=s < j - k - 1) for s in range(j - k)]
                    self.paths[f"{k}{j}"] = nn.Sequential(*steps)
                else:  # up: 1x1 then bilinear
                    self.paths[f"{k}{j}"] = nn.Sequential(
                        nn.Conv2d(ck, cj, 1, bias=False), nn.InstanceNorm2d(cj, affine=True)
                    )

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for j, xj in enumerate(xs):
            acc = xj
            for k, xk in enumerate(xs):
                if k == j:
                    continue
                y = self.paths[f"{k}{j}"](xk)
                if y.shape[-2:] != xj.shape[-2:]:
                    y = F.interpolate(y, size=xj.shape[-2:], mode="bilinear", align_corners=False)
                acc = acc + y
            out.append(F.leaky_relu(acc, 0.2))
        return out


class AffineHRNet(nn.Module):
    """HRNet backbone + affine head.

    Args:
        in_ch: input channels (see :func:`grade.model.affine.network_input`).
        widths: channels of the full, 1/2, 1/4 ... branches.
        blocks: residual blocks per branch per stage.
    Input ``(B, in_ch, H, W)``; output ``(B, 12, H, W)``: coefficient corrections, identity at 0.
    """

    def __init__(self, in_ch: int = 8, widths: tuple[int, ...] = (16, 32, 64), blocks: int = 1) -> None:
        super().__init__()
        self.widths = list(widths)
        self.stem = nn.Sequential(conv_in(in_ch, widths[0]), conv_in(widths[0], widths[0]))
        self.transitions = nn.ModuleList([conv_in(widths[s], widths[s + 1], stride=2) for s in range(len(widths) - 1)])
        self.stages = nn.ModuleList()
        self.exchanges = nn.ModuleList()
        for s in range(len(widths)):
            n = s + 1
            self.stages.append(
                nn.ModuleList([nn.Sequential(*[ResBlock(widths[b]) for _ in range(blocks)]) for b in range(n)])
            )
            self.exchanges.append(Exchange(self.widths[:n]) if n > 1 else nn.Identity())
        total = sum(widths)
        self.head = nn.Sequential(
            nn.Conv2d(total, widths[0] * 2, 1), nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(widths[0] * 2, 12, 1)
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = [self.stem(x)]
        for s, (stage, exchange) in enumerate(zip(self.stages, self.exchanges)):
            xs = [blk(xi) for blk, xi in zip(stage, xs)]
            if len(xs) > 1:
                xs = exchange(xs)
            if s < len(self.transitions):
                xs.append(self.transitions[s](xs[-1]))
        size = xs[0].shape[-2:]
        feats = [xs[0]] + [F.interpolate(xi, size=size, mode="bilinear", align_corners=False) for xi in xs[1:]]
        return self.head(torch.cat(feats, 1))
