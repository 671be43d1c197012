"""Time to target: the GD step, epoch and wall-clock seconds at which the train SSE first reaches each target.

``eps`` is the run's target (``steps_to_eps``); ``targets`` are more of them (``steps_to/<target>``), so that one
run answers "did it reach 1e-2, 1e-4, 1e-6 within T steps" for every T up to its budget. Targets are absolute
(train SSE units) or relative to the initial train SSE (``relative=True``: level = target x initial SSE).

With full-batch data the step is exact: the SSE of every iterate is looked at, also under
``model.inner_steps=K`` (the module keeps the SSE each inner step computed), and the final iterate's SSE
once more at the end of training (:meth:`final`), so a budget of T steps checks the iterates 0..T. With mini-batches the
resolution is the end of the epoch. ``stop=True`` ends training once every target is reached.
"""

from __future__ import annotations

import math
import time

import lightning as L
import torch


def target_key(target: float) -> str:
    """``steps_to/1e-04``: one spelling of a target in summaries and reports."""
    return f"steps_to/{target:.0e}"


class TimeToTarget(L.Callback):
    def __init__(self, eps: float | None, relative: bool = False, stop: bool = False, targets=None):
        self.eps, self.relative, self.stop = eps, relative, stop
        self.targets = sorted({float(t) for t in (targets or [])} | ({float(eps)} if eps is not None else set()),
                              reverse=True)
        self.step: int | None = None
        self.epoch: int | None = None
        self.seconds: float | None = None
        self.target: float | None = None
        self.reached: dict[str, int] = {}  # target_key -> first step
        self._t0 = time.perf_counter()
        self._elapsed_before = 0.0  # wall time of earlier sessions of a resumed run
        self._epoch_start_step = 0

    def on_train_start(self, trainer, pl_module):
        self._t0 = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module):
        self._epoch_start_step = trainer.global_step

    def _base(self, trainer, first_sse: float) -> float:
        if not self.relative:
            return 1.0
        initial = getattr(trainer, "initial_train_sse", None)
        return initial if initial is not None else first_sse

    def _points(self, trainer, pl_module) -> list[tuple[int, float]]:
        """(step, SSE) of the iterates this epoch measured."""
        inner = getattr(pl_module, "inner_sse", None) or []
        if inner and trainer.num_training_batches == 1:
            values = torch.stack([v.detach().float() for v in inner])
            if trainer.world_size > 1:  # each rank summed its rows
                values = trainer.strategy.reduce(values, reduce_op="sum")
            return [(self._epoch_start_step + i, float(v)) for i, v in enumerate(values.tolist())]
        sse = trainer.callback_metrics.get("train/sse")
        if sse is None:
            return []
        # one batch per epoch: the epoch's loss was measured before its first step
        step = self._epoch_start_step if trainer.num_training_batches == 1 else trainer.global_step
        return [(step, float(sse))]

    def _check(self, trainer, pl_module, points: list[tuple[int, float]], log: bool = True) -> None:
        if not self.targets or len(self.reached) == len(self.targets):
            return
        for step, sse in points:
            if not math.isfinite(sse):
                return  # a diverged iterate reaches nothing (the divergence guard stops the run)
            if self.target is None:
                self.target = (self.eps * self._base(trainer, sse)) if self.eps is not None else None
            base = self._base(trainer, sse)
            for t in self.targets:
                key = target_key(t)
                if key not in self.reached and sse <= t * base:
                    self.reached[key] = step
                    if log:
                        pl_module.log(f"probe/{key}", float(step))
                    if self.eps is not None and t == float(self.eps):
                        self.step, self.epoch = step, trainer.current_epoch
                        self.seconds = self._elapsed_before + time.perf_counter() - self._t0
                        if log:  # (Lightning allows no logging once training has ended)
                            pl_module.log("probe/steps_to_eps", float(step))
                            pl_module.log("probe/seconds_to_eps", self.seconds)
        if self.stop and len(self.reached) == len(self.targets):
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer, pl_module):
        self._check(trainer, pl_module, self._points(trainer, pl_module))

    def final(self, trainer, pl_module, sse: float) -> None:
        """The final iterate (after the last step), whose SSE the summary computes anyway: a budget of T steps
        checks the iterates 0..T."""
        if trainer.num_training_batches == 1 and trainer.global_step > 0:
            self._check(trainer, pl_module, [(trainer.global_step, sse)], log=False)

    def state_dict(self):
        elapsed = self._elapsed_before + time.perf_counter() - self._t0
        return {"step": self.step, "epoch": self.epoch, "seconds": self.seconds, "target": self.target,
                "elapsed": elapsed, "reached": dict(self.reached)}

    def load_state_dict(self, state):
        self.step, self.epoch, self.seconds = state.get("step"), state.get("epoch"), state.get("seconds")
        self.target, self._elapsed_before = state.get("target"), state.get("elapsed", 0.0)
        self.reached = dict(state.get("reached") or {})
        if self.step is not None and self.eps is not None:
            self.reached.setdefault(target_key(float(self.eps)), self.step)
