"""Pruning from inside a trial's process: report train SSE to the trial in the shared storage every
epoch and stop the run when the study's pruner says so (single-objective studies only)."""

from __future__ import annotations

import math
import os

import lightning as L
import optuna

ENV = ("GRELU_SWEEP_STORAGE", "GRELU_SWEEP_STUDY", "GRELU_SWEEP_TRIAL_ID")


class OptunaPruning(L.Callback):
    def __init__(self, trial: optuna.Trial, metric: str = "train/sse"):
        self.trial, self.metric = trial, metric

    def on_train_epoch_end(self, trainer, pl_module):
        value = trainer.callback_metrics.get(self.metric)
        if value is None or not math.isfinite(float(value)):
            return
        self.trial.report(float(value), step=trainer.current_epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {trainer.current_epoch} ({self.metric} {float(value):.4g})")


def from_environment() -> list[L.Callback]:
    """The pruning callback when the worker asked for one (it sets the GRELU_SWEEP_* variables)."""
    if not all(os.environ.get(k) for k in ENV):
        return []
    from lightning_grelu.sweeps.storage import make_storage

    url, name, trial_id = (os.environ[k] for k in ENV)
    study = optuna.load_study(study_name=name, storage=make_storage(url, retry_dead=False),
                              pruner=optuna.pruners.MedianPruner())
    return [OptunaPruning(optuna.Trial(study, int(trial_id)))]
