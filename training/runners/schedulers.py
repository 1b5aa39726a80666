"""Learning-rate schedules for the MLCL runner, registered in LAVIS's registry.

LAVIS's schedulers set one learning rate on every parameter group; MLCL
trains its level weight w in its own group (authors: lr 1e-3 while the rest
uses 2e-5).  `GroupScaled` therefore turns any registered schedule into a
factor (lr / init_lr) applied to each group's own base lr.

Ours (step-based, so a run capped by run.max_steps still anneals fully):
* cosine_step_lr:          linear warm-up over warmup_steps, then cosine from
                           init_lr to min_lr over the run's total steps;
* constant_lr:             linear warm-up, then init_lr (the authors' stage 2
                           on FashionIQ and CIRR);
* cosine_warm_restarts_lr: cosine annealing with warm restarts every
                           `t0_epochs` epochs down to min_lr (the authors'
                           stage 2 on Shoes: T_0 10, eta_min 1e-6).
LAVIS's own linear_warmup_cosine_lr / linear_warmup_step_lr work too.
"""

from __future__ import annotations

import math
from typing import Any

import lavis.common.optims  # noqa: F401  (registers LAVIS's own schedulers)

from training.registration import register_once


class _StepSchedule:
    def __init__(self, optimizer: Any, max_epoch: int, min_lr: float, init_lr: float, warmup_steps: int = 0,
                 warmup_start_lr: float = -1, iters_per_epoch: int = 1, total_steps: int | None = None,
                 t0_epochs: int = 10, **kwargs: Any):
        self.optimizer = optimizer
        self.max_epoch = int(max_epoch)
        self.min_lr = float(min_lr)
        self.init_lr = float(init_lr)
        self.warmup_steps = int(warmup_steps or 0)
        self.warmup_start_lr = float(warmup_start_lr) if warmup_start_lr is not None and warmup_start_lr >= 0 else 0.0
        self.iters_per_epoch = max(1, int(iters_per_epoch))
        self.total_steps = int(total_steps or self.max_epoch * self.iters_per_epoch)
        self.t0_epochs = max(1, int(t0_epochs))

    def lr_at(self, epoch: int, step: int) -> float:
        raise NotImplementedError

    def _warmup(self, g: int) -> float | None:
        if g < self.warmup_steps:
            return self.warmup_start_lr + (self.init_lr - self.warmup_start_lr) * (g + 1) / self.warmup_steps
        return None

    def step(self, cur_epoch: int, cur_step: int) -> None:
        lr = self.lr_at(cur_epoch, cur_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr


@register_once("lr_scheduler", "cosine_step_lr")
class CosineStepLR(_StepSchedule):
    def lr_at(self, epoch: int, step: int) -> float:
        g = epoch * self.iters_per_epoch + step
        warm = self._warmup(g)
        if warm is not None:
            return warm
        span = max(1, self.total_steps - self.warmup_steps)
        t = min(1.0, (g - self.warmup_steps) / span)
        return self.min_lr + (self.init_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


@register_once("lr_scheduler", "constant_lr")
class ConstantLR(_StepSchedule):
    def lr_at(self, epoch: int, step: int) -> float:
        warm = self._warmup(epoch * self.iters_per_epoch + step)
        return self.init_lr if warm is None else warm


@register_once("lr_scheduler", "cosine_warm_restarts_lr")
class CosineWarmRestartsLR(_StepSchedule):
    """torch's CosineAnnealingWarmRestarts(T_0=t0_epochs, T_mult=1, eta_min=min_lr), stepped per epoch."""

    def lr_at(self, epoch: int, step: int) -> float:
        warm = self._warmup(epoch * self.iters_per_epoch + step)
        if warm is not None:
            return warm
        t = (epoch % self.t0_epochs) / self.t0_epochs
        return self.min_lr + (self.init_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


class GroupScaled:
    """Wraps a LAVIS-style scheduler so that each group follows the schedule from its own `base_lr`.

    After warm-up every group anneals affinely between its base lr and the
    schedule's min_lr, as torch's schedulers do per group (the authors' Shoes
    stage 2: CosineAnnealingWarmRestarts takes w from 1e-3 down to eta_min too);
    during warm-up each group ramps in proportion to its base lr.
    """

    def __init__(self, inner: Any, optimizer: Any, init_lr: float):
        self.inner = inner
        self.optimizer = optimizer
        self.init_lr = float(init_lr)
        for group in optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])

    def step(self, cur_epoch: int, cur_step: int) -> None:
        self.inner.step(cur_epoch=cur_epoch, cur_step=cur_step)
        lr = self.optimizer.param_groups[0]["lr"]
        min_lr = float(getattr(self.inner, "min_lr", 0.0) or 0.0)
        iters = int(getattr(self.inner, "iters_per_epoch", 1) or 1)
        warmup = int(getattr(self.inner, "warmup_steps", 0) or 0)
        in_warmup = cur_epoch * iters + cur_step < warmup
        for group in self.optimizer.param_groups:
            base = group["base_lr"]
            if self.init_lr <= 0:
                group["lr"] = base
            elif in_warmup or self.init_lr <= min_lr:
                group["lr"] = base * lr / self.init_lr
            else:
                group["lr"] = min_lr + (base - min_lr) * (lr - min_lr) / (self.init_lr - min_lr)
