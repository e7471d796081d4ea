"""ASC CDL: the slope/offset/power/saturation correction of EDL and CDL pipelines.

Applies a CDL (for ``--apply-cdl`` in conform), fits the best global CDL to a look (``presets
export --cdl``) and writes it as an ASC ``.cc`` file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import torch

from grade.io.atomic import atomic_output

_LUMA = (0.2126, 0.7152, 0.0722)  # ASC CDL saturation uses Rec. 709 luma weights


@dataclass(frozen=True)
class CDL:
    slope: tuple[float, float, float] = (1.0, 1.0, 1.0)
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    power: tuple[float, float, float] = (1.0, 1.0, 1.0)
    saturation: float = 1.0

    @property
    def is_identity(self) -> bool:
        return self == CDL()


def apply_cdl(cdl: CDL, rgb: torch.Tensor) -> torch.Tensor:
    """ASC CDL v1.2 on RGB ``(..., 3)`` in [0, 1]: ``clamp(in * slope + offset) ** power``, then saturation."""
    slope, offset, power = (
        torch.tensor(v, dtype=rgb.dtype, device=rgb.device) for v in (cdl.slope, cdl.offset, cdl.power)
    )
    out = (rgb * slope + offset).clamp(0, 1) ** power
    luma = (out * torch.tensor(_LUMA, dtype=rgb.dtype, device=rgb.device)).sum(-1, keepdim=True)
    return (luma + cdl.saturation * (out - luma)).clamp(0, 1)


def fit_cdl(src: torch.Tensor, dst: torch.Tensor, steps: int = 400) -> CDL:
    """The CDL that best maps colours ``src`` ``(P, 3)`` to ``dst`` ``(P, 3)`` (least squares, Adam)."""
    src, dst = src.double(), dst.double()
    log_slope = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    offset = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    log_power = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    log_sat = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([log_slope, offset, log_power, log_sat], lr=0.02)
    w = torch.tensor(_LUMA, dtype=torch.float64)
    with torch.enable_grad():
        for _ in range(steps):
            out = (src * log_slope.exp() + offset).clamp(1e-6, 1) ** log_power.exp()
            luma = (out * w).sum(-1, keepdim=True)
            out = luma + log_sat.exp() * (out - luma)
            loss = ((out - dst) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    r = lambda t: tuple(round(float(v), 6) for v in t.detach())  # noqa: E731
    return CDL(r(log_slope.exp()), r(offset), r(log_power.exp()), round(float(log_sat.detach().exp()), 6))


def cc_text(cdl: CDL, ident: str = "grade") -> str:
    """An ASC ColorCorrection (``.cc``) document."""
    f = lambda v: " ".join(f"{x:.6f}" for x in v)  # noqa: E731
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ColorCorrection id="{escape(ident, {chr(34): "&quot;"})}">\n'
        "  <SOPNode>\n"
        f"    <Slope>{f(cdl.slope)}</Slope>\n"
        f"    <Offset>{f(cdl.offset)}</Offset>\n"
        f"    <Power>{f(cdl.power)}</Power>\n"
        "  </SOPNode>\n"
        "  <SatNode>\n"
        f"    <Saturation>{cdl.saturation:.6f}</Saturation>\n"
        "  </SatNode>\n"
        "</ColorCorrection>\n"
    )


def write_cc(path: Path, cdl: CDL, ident: str = "grade", force: bool = False) -> None:
    with atomic_output(path, force=force) as tmp:
        Path(tmp).write_text(cc_text(cdl, ident))
