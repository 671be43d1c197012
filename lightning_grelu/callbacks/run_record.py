"""The run record's ``metrics.csv``: one row per epoch, whatever loggers are on, written as the run
goes (atomically, at most about once a second, and at the end or on an exception).

An epoch's row is completed when the next epoch starts, so it holds everything logged for that
epoch, also by probes at epoch end and by validation. The record also measures the true initial
train SSE (one forward pass over the training set at the start of a fresh run).
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L

from lightning_grelu.atomic import write_csv_atomic


def _scalar(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


class RunRecord(L.Callback):
    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / "metrics.csv"
        self.initial_sse: float | None = None
        self.rows: list[dict] = []
        self._pending: dict | None = None
        self.t0 = time.perf_counter()
        self._last_write = 0.0
        self._written = 0  # rows in metrics.csv as last written
        self._trainer = None
        # the latest value of every key ever logged (a probe that logs once, e.g. probe/steps_to_eps, stays
        # in later rows and in the summary, also after a resume, where Lightning's callback_metrics start empty)
        self.latest: dict = {}
        # a resumed run keeps counting: wall_time_s is the run's, over its attempts (each resume is one more)
        self.wall_before = 0.0
        self.attempts = 1

    def elapsed(self) -> float:
        """The run's training time so far: earlier attempts (up to their checkpoint) plus this one."""
        return self.wall_before + time.perf_counter() - self.t0

    def on_train_start(self, trainer, pl_module):
        self.t0 = time.perf_counter()
        dm = trainer.datamodule
        if self.initial_sse is None and trainer.global_step == 0 and dm is not None:
            # the true loss at initialization: one forward pass over the training set
            self.initial_sse = pl_module.evaluate(dm.train_inputs(), dm.split("train").y)["sse"]
        trainer.initial_train_sse = self.initial_sse  # for relative targets

    def on_train_epoch_end(self, trainer, pl_module):
        self._pending = {"epoch": trainer.current_epoch, "step": trainer.global_step,
                         "wall_time_s": round(self.elapsed(), 4)}

    def setup(self, trainer, pl_module, stage):
        self._trainer = trainer

    def _filled(self, row: dict, trainer) -> dict:
        for k, v in sorted(trainer.callback_metrics.items()):
            if not k.endswith("_step"):  # per-step values are the loggers' business
                self.latest[k.removesuffix("_epoch")] = _scalar(v)
        return {**row, **{k: v for k, v in self.latest.items() if k not in row}}

    def _complete(self, trainer) -> None:
        if self._pending is not None:
            self.rows.append(self._filled(self._pending, trainer))
            self._pending = None

    def on_train_epoch_start(self, trainer, pl_module):
        self._complete(trainer)
        # rewrite at most about once a second (long full-batch runs have thousands of epochs)
        if trainer.is_global_zero and self.rows and time.perf_counter() - self._last_write > 1.0:
            self._write()

    def on_train_end(self, trainer, pl_module):
        self._complete(trainer)
        if trainer.is_global_zero:
            self._write()

    def flush(self, trainer) -> None:
        """After fit, whatever happened: a run resumed from its final checkpoint skips the training hooks, and
        its restored rows must still reach metrics.csv (rows already written are not written again)."""
        self._complete(trainer)
        if trainer.is_global_zero and len(self.rows) != self._written:
            self._write()

    def on_exception(self, trainer, pl_module, exception):
        self._complete(trainer)
        if trainer.is_global_zero and self.rows:
            self._write()

    def _write(self) -> None:
        self._last_write = time.perf_counter()
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        write_csv_atomic(self.path, self.rows, keys, fault="metrics")  # a reader never sees half a file
        self._written = len(self.rows)

    def state_dict(self):
        # A checkpoint is taken at epoch end: its row is filled with what is known by then
        # (values probes log in that same hook reach only the live record).
        pending = [self._filled(self._pending, self._trainer)] if self._pending else []
        return {"rows": self.rows + pending, "initial_sse": self.initial_sse, "wall_time_s": self.elapsed(),
                "attempts": self.attempts}

    def load_state_dict(self, state):
        self.rows = state.get("rows", [])
        self.initial_sse = state.get("initial_sse")
        last_row = self.rows[-1].get("wall_time_s") if self.rows else None
        self.wall_before = float(state.get("wall_time_s", last_row or 0.0))
        self.attempts = int(state.get("attempts", 1)) + 1
        self.latest = {k: v for k, v in (self.rows[-1] if self.rows else {}).items()
                       if k not in ("epoch", "step", "wall_time_s")}
