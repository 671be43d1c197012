"""Stop a run the moment its training loss is NaN or Inf.

Raising (rather than setting ``should_stop``) ends fit before the checkpoint callback runs on the
same epoch, so the last checkpoint on disk is the newest one before the divergence. A fresh run with
checkpoints on writes its initial state as ``last.ckpt`` first, so that also a run that diverges before
its first periodic checkpoint has one (its weights at initialization).
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L


class Diverged(RuntimeError):
    pass


class DivergenceGuard(L.Callback):
    def __init__(self, metric: str = "train/sse"):
        self.metric = metric

    def on_train_start(self, trainer, pl_module):
        ckpt = trainer.checkpoint_callback
        if ckpt is None or not ckpt.dirpath or trainer.global_step != 0:
            return
        last = Path(ckpt.dirpath) / f"{ckpt.CHECKPOINT_NAME_LAST}{ckpt.FILE_EXTENSION}"
        if not last.exists():  # every rank takes part (the strategy writes on rank 0)
            trainer.save_checkpoint(last)

    def on_train_epoch_end(self, trainer, pl_module):
        value = trainer.callback_metrics.get(self.metric)
        if value is not None and not math.isfinite(float(value)):
            raise Diverged(f"{self.metric} became {float(value)} at epoch {trainer.current_epoch} "
                           f"(step {trainer.global_step}); lower model.lr or check the data")
