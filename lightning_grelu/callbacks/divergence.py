"""Stop a run the moment its training loss is NaN or Inf.

Raising (rather than setting ``should_stop``) ends fit before the checkpoint callback runs on the
same epoch, so the last checkpoint on disk is the last good one.
"""

from __future__ import annotations

import math

import lightning as L


class Diverged(RuntimeError):
    pass


class DivergenceGuard(L.Callback):
    def __init__(self, metric: str = "train/sse"):
        self.metric = metric

    def on_train_epoch_end(self, trainer, pl_module):
        value = trainer.callback_metrics.get(self.metric)
        if value is not None and not math.isfinite(float(value)):
            raise Diverged(f"{self.metric} became {float(value)} at epoch {trainer.current_epoch} "
                           f"(step {trainer.global_step}); lower model.lr or check the data")
