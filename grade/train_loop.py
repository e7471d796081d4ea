"""What every trainer of a learned look shares: its settings and report, Adam with a cosine schedule and
early stopping on a plateau, and the thread policy (a probe that keeps the faster thread count when
the machine is busy)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from grade.losses import (
    LossWeights,
    RegionSpec,
)
from grade.model.affine import working_size


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


@dataclass
class TrainReport:
    steps: int
    seconds: float
    loss_first: float
    loss_last: float
    stopped_early: bool
    history: list[float]


def fit_side(img: torch.Tensor, side: int) -> torch.Tensor:
    h, w = working_size(img.shape[-2], img.shape[-1], side)
    return F.interpolate(img[None] if img.dim() == 3 else img, size=(h, w), mode="area")


def optimise(
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
    probe = ThreadProbe(threads) if adapt_threads and threads > 1 and steps > 3 * ThreadProbe.span else None
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


class ThreadProbe:
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


def train_report(t0: float, history: list[float], step: int, stopped: bool) -> TrainReport:
    return TrainReport(
        steps=step,
        seconds=time.perf_counter() - t0,
        loss_first=history[0] if history else math.nan,
        loss_last=history[-1] if history else math.nan,
        stopped_early=stopped,
        history=history,
    )
