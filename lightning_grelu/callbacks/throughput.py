"""Throughput: training samples per second and model TFLOP/s, per epoch.

Timed from epoch start to epoch end with one device synchronisation at each (none per step).
Model FLOPs per sample count what a dense implementation must do for this net, the same count as
the reference loops: forward through C, W_1..W_L and B, the data gradient through B and W_2..W_L,
and the weight gradients of W_1..W_L (gate computations excluded).
"""

from __future__ import annotations

import time

import lightning as L
import torch


def model_flops_per_sample(d_in: int, d_out: int, width: int, depth: int) -> int:
    m = width
    f = 2 * d_in * m + 2 * m * d_out  # forward through the fixed C and B
    f += 2 * m * d_out  # data gradient through B
    f += depth * 2 * m * m * 3  # trained layers: forward, data gradient, weight gradient
    f -= 2 * m * m  # no data gradient below W_1
    return f


class Throughput(L.Callback):
    def __init__(self):
        self._samples = 0
        self._t0 = 0.0
        self.last: dict[str, float] = {}

    def _sync(self, pl_module):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_epoch_start(self, trainer, pl_module):
        self._sync(pl_module)
        self._samples, self._t0 = 0, time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._samples += int(batch[0].shape[0])  # host-known shape: no sync

    def on_train_epoch_end(self, trainer, pl_module):
        self._sync(pl_module)
        seconds = max(time.perf_counter() - self._t0, 1e-9)
        hp = pl_module.hparams
        samples = self._samples * trainer.world_size
        flops = model_flops_per_sample(hp.d_in, hp.d_out, hp.width, hp.depth) * samples
        self.last = {"probe/samples_per_s": samples / seconds, "probe/model_tflops": flops / seconds / 1e12,
                     "probe/epoch_seconds": seconds}
        for name, value in self.last.items():
            pl_module.log(name, value)
