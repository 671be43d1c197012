"""Throughput: training samples per second and model TFLOP/s, per epoch.

Timed from epoch start to epoch end with one device synchronisation at each (none per step).
Model FLOPs per sample are the net's own count (``describe(...).flops_per_sample`` of the module's class, see
:mod:`lightning_grelu.nets.spec`): what a dense implementation must do for one training step of this net, the
same count as the reference loops (for the paper's nets: forward through C, W_1..W_L and B, the data gradient
through B and W_L..W_2, the weight gradients of what trains; gate computations excluded). A module that does
not describe itself gets samples per second only.
"""

from __future__ import annotations

import time

import lightning as L
import torch


def flops_per_sample(pl_module) -> int | None:
    """The module's model FLOPs per training sample, asked from its class (None when it cannot say)."""
    describe = getattr(type(pl_module), "describe", None)
    hp = pl_module.hparams
    try:
        return int(describe(hp, hp["d_in"], hp["d_out"]).flops_per_sample)
    except (TypeError, KeyError, NotImplementedError):
        return None


class Throughput(L.Callback):
    def __init__(self):
        self._samples = 0
        self._t0 = 0.0
        self.last: dict[str, float] = {}
        self._flops: int | None = None  # per sample, asked once

    def _sync(self, pl_module):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_epoch_start(self, trainer, pl_module):
        self._sync(pl_module)
        self._samples, self._t0 = 0, time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # host-known shape: no sync; with model.inner_steps=K each Lightning step takes K GD steps on its batch
        self._samples += int(batch[0].shape[0]) * int(getattr(pl_module, "inner_steps", 1) or 1)

    def on_train_epoch_end(self, trainer, pl_module):
        self._sync(pl_module)
        seconds = max(time.perf_counter() - self._t0, 1e-9)
        samples = self._samples * trainer.world_size
        self.last = {"probe/samples_per_s": samples / seconds, "probe/epoch_seconds": seconds}
        if self._flops is None:
            self._flops = flops_per_sample(pl_module) or 0
        if self._flops:
            self.last["probe/model_tflops"] = self._flops * samples / seconds / 1e12
        for name, value in self.last.items():
            pl_module.log(name, value)
