"""The run record: ``metrics.csv`` (one row per epoch, whatever loggers are on) written as the run
goes, and the per-epoch facts :func:`lightning_grelu.train.train` needs for ``summary.json``.

``steps_to_eps``: the number of optimizer steps after which the train SSE first was <= eps. With
one batch per epoch (full-batch GD) the epoch's SSE is measured before that epoch's step, so it is
exact; with mini-batches it is the step count at the end of the first epoch whose SSE <= eps.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import lightning as L


def _scalar(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


class RunRecord(L.Callback):
    def __init__(self, run_dir: str | Path, eps: float | None = None):
        self.path = Path(run_dir) / "metrics.csv"
        self.eps = eps
        self.steps_to_eps: int | None = None
        self.initial_sse: float | None = None
        self.rows: list[dict] = []
        self.t0 = time.perf_counter()
        self._last_write = 0.0

    def on_train_start(self, trainer, pl_module):
        self.t0 = time.perf_counter()
        dm = trainer.datamodule
        if self.initial_sse is None and trainer.global_step == 0 and dm is not None:
            # the true loss at initialization: one forward pass over the training set
            self.initial_sse = pl_module.evaluate(dm.train_inputs(), dm.split("train").y)["sse"]

    def on_train_epoch_end(self, trainer, pl_module):
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step,
               "wall_time_s": round(time.perf_counter() - self.t0, 4)}
        for k, v in sorted(trainer.callback_metrics.items()):
            row[k] = _scalar(v)
        sse = row.get("train/sse")
        if sse is not None and math.isfinite(sse):
            if self.eps is not None and self.steps_to_eps is None and sse <= self.eps:
                one_batch = trainer.num_training_batches == 1
                self.steps_to_eps = trainer.global_step - 1 if one_batch else trainer.global_step
        self.rows.append(row)
        # rewrite at most about once a second (long full-batch runs have thousands of epochs)
        if trainer.is_global_zero and time.perf_counter() - self._last_write > 1.0:
            self._write()

    def on_train_end(self, trainer, pl_module):
        if trainer.is_global_zero:
            self._write()

    def on_exception(self, trainer, pl_module, exception):
        if trainer.is_global_zero and self.rows:
            self._write()

    def _write(self) -> None:
        self._last_write = time.perf_counter()
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.rows)
        tmp.replace(self.path)  # atomic: a reader never sees half a file

    def state_dict(self):
        return {"rows": self.rows, "steps_to_eps": self.steps_to_eps, "initial_sse": self.initial_sse}

    def load_state_dict(self, state):
        self.rows = state.get("rows", [])
        self.steps_to_eps = state.get("steps_to_eps")
        self.initial_sse = state.get("initial_sse")
