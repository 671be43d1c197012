"""Time to target: the step, epoch and wall-clock seconds at which the train SSE first reaches eps.

``eps`` is absolute (train SSE units), or relative to the initial train SSE (``relative=True``:
target = eps * initial SSE). With one batch per epoch (full-batch GD) an epoch's SSE is measured
before that epoch's step, so the step is exact: the number of optimizer steps after which the loss
was <= target. With mini-batches the resolution is the end of the epoch. ``stop=True`` ends
training there (early stop).
"""

from __future__ import annotations

import math
import time

import lightning as L


class TimeToTarget(L.Callback):
    def __init__(self, eps: float | None, relative: bool = False, stop: bool = False):
        self.eps, self.relative, self.stop = eps, relative, stop
        self.step: int | None = None
        self.epoch: int | None = None
        self.seconds: float | None = None
        self.target: float | None = None
        self._t0 = time.perf_counter()
        self._elapsed_before = 0.0  # wall time of earlier sessions of a resumed run
        self._epoch_start_step = 0

    def on_train_start(self, trainer, pl_module):
        self._t0 = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module):
        self._epoch_start_step = trainer.global_step

    def on_train_epoch_end(self, trainer, pl_module):
        if self.eps is None or self.step is not None:
            return
        sse = trainer.callback_metrics.get("train/sse")
        if sse is None or not math.isfinite(float(sse)):
            return
        if self.target is None:
            initial = getattr(trainer, "initial_train_sse", None)
            base = initial if (self.relative and initial is not None) else (float(sse) if self.relative else 1.0)
            self.target = self.eps * base if self.relative else self.eps
        if float(sse) <= self.target:
            # one batch per epoch: the epoch's loss was measured before its first (inner) step
            one_batch = trainer.num_training_batches == 1
            self.step = self._epoch_start_step if one_batch else trainer.global_step
            self.epoch = trainer.current_epoch
            self.seconds = self._elapsed_before + time.perf_counter() - self._t0
            pl_module.log("probe/steps_to_eps", float(self.step))
            pl_module.log("probe/seconds_to_eps", self.seconds)
            if self.stop:
                trainer.should_stop = True

    def state_dict(self):
        elapsed = self._elapsed_before + time.perf_counter() - self._t0
        return {"step": self.step, "epoch": self.epoch, "seconds": self.seconds, "target": self.target,
                "elapsed": elapsed}

    def load_state_dict(self, state):
        self.step, self.epoch, self.seconds = state.get("step"), state.get("epoch"), state.get("seconds")
        self.target, self._elapsed_before = state.get("target"), state.get("elapsed", 0.0)
