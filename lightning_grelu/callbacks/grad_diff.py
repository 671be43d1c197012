"""Temporal difference of gradients, ||g_t - g_{t-1}||_2 over all trained weights (Figure 2b).

Computed just before the optimizer step, on the device, with no host sync: Lightning logs the
per-step value (``probe/grad_diff_step``) and its epoch mean (``probe/grad_diff_epoch``). With
``every_n_steps=N`` only steps t with t % N == 0 are measured, and g_{t-1} is kept only for those,
so the probe costs one copy of the gradients every N steps.
"""

from __future__ import annotations

import lightning as L
import torch

from lightning_grelu.errors import ConfigError


class GradientTemporalDifference(L.Callback):
    def __init__(self, every_n_steps: int = 1):
        if every_n_steps < 1:
            raise ConfigError(f"grad_diff.every_n_steps must be >= 1, got {every_n_steps}")
        self.every = every_n_steps
        self._prev: list[torch.Tensor] | None = None
        self._prev_step = -1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        t = trainer.global_step
        grads = [p.grad for p in pl_module.parameters() if p.requires_grad and p.grad is not None]
        if t % self.every == 0 and self._prev is not None and self._prev_step == t - 1:
            sq = sum((g.float() - h).pow(2).sum() for g, h in zip(grads, self._prev))
            pl_module.log("probe/grad_diff", sq.sqrt(), on_step=True, on_epoch=True, reduce_fx="mean")
        if (t + 1) % self.every == 0:  # keep g_t only when step t+1 will be measured
            self._prev = [g.detach().float().clone() for g in grads]
            self._prev_step = t
        else:
            self._prev = None
