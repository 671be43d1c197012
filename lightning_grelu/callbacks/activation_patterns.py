"""Activation patterns on a fixed probe set, between consecutive probe epochs (Figure 2c, section 4.3).

Logged every ``every_n_epochs`` epochs, per trained layer k and overall:
  * ``probe/hamming_l{k}``, ``probe/hamming``: fraction of (sample, unit) activations whose on/off
    state changed since the previous probe (GReLU: exactly 0, its gates are fixed);
  * ``probe/dead_l{k}``, ``probe/dead``: fraction of units active on no probe sample;
  * ``probe/pre_mean_l{k}``: mean pre-activation W_k h_{k-1} over the probe set (bias shift).
The probe set is ``size`` samples of the ``split`` (default: val, else test, else train), fixed
for the whole run. After a GReLU->ReLU switch the probe follows the ReLU net.
"""

from __future__ import annotations

import lightning as L
import torch


class ActivationPatterns(L.Callback):
    def __init__(self, split: str | None = None, size: int = 512, every_n_epochs: int = 1):
        self.split, self.size, self.every = split, size, every_n_epochs
        self._x: torch.Tensor | None = None
        self._prev: list[torch.Tensor] | None = None
        self.last: dict[str, float] = {}

    def _probe_inputs(self, trainer) -> torch.Tensor:
        dm = trainer.datamodule
        split = self.split or next(s for s in ("val", "test", "train") if s in dm.splits)
        x = dm.inputs(split)
        return x[: self.size]

    def on_train_start(self, trainer, pl_module):
        self._x = self._probe_inputs(trainer)
        self._prev = [pat for _, pat in pl_module.trace(self._x)]  # the patterns at the start

    def on_train_epoch_end(self, trainer, pl_module):
        if (trainer.current_epoch + 1) % self.every:
            return
        trace = pl_module.trace(self._x)
        patterns = [pat for _, pat in trace]
        out = {}
        for k, ((pre, pat), prev) in enumerate(zip(trace, self._prev), start=1):
            out[f"probe/hamming_l{k}"] = (pat != prev).float().mean()
            out[f"probe/dead_l{k}"] = (~pat.any(dim=0)).float().mean()
            out[f"probe/pre_mean_l{k}"] = pre.float().mean()
        L_ = len(trace)
        out["probe/hamming"] = sum(out[f"probe/hamming_l{k}"] for k in range(1, L_ + 1)) / L_
        out["probe/dead"] = sum(out[f"probe/dead_l{k}"] for k in range(1, L_ + 1)) / L_
        for name, value in out.items():
            pl_module.log(name, value)
        self.last = {k: float(v) for k, v in out.items()}
        self._prev = patterns
