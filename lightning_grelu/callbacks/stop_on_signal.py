"""Stopping training on a signal, truthfully: SIGTERM (how SLURM and most schedulers pre-empt) and SIGINT (Ctrl-C).

During training the first signal lets the current epoch finish, saves ``last.ckpt`` (so nothing since
the last periodic checkpoint is lost), and stops; the run's summary says ``interrupted`` and the
command exits 128 + the signal's number (143 for SIGTERM, 130 for SIGINT) with one line saying how to
resume. A second signal stops at once (from the last checkpoint). Before training has started there
is nothing to save: the first signal stops at once. After training has ended the run finishes writing
its record (milliseconds) and reports what it is: completed.

Lightning's own SIGTERM handling is switched off for the run (it exits 0, stops mid-epoch without a
checkpoint, and would requeue SLURM jobs behind the run record's back); this callback does what it did
for DDP: rank 0 passes the signal on to the ranks it launched, and all ranks agree at each epoch's end.
"""

from __future__ import annotations

import signal
from pathlib import Path

import lightning as L

from lightning_grelu.signals import SIGNALS, Interrupted


class StopOnSignal(L.Callback):
    def __init__(self):
        self.signum: int | None = None
        self.phase = "before"  # before -> training -> after
        self.stopped_epoch: int | None = None
        self.saved = False
        self.late: int | None = None  # a signal that came while a finished run wrote its records
        self._trainer = None
        self._previous: dict = {}

    # -- handlers -------------------------------------------------------------------------------
    def install(self) -> "StopOnSignal":
        for s in SIGNALS:
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def uninstall(self) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous = {}

    def _handle(self, signum, frame):
        first = self.signum is None
        self.signum = self.signum or signum
        if self.phase == "after":  # training is over: let the run write its records, then stop (train() raises)
            if first and self.stopped_epoch is None:
                self.late = signum
            return
        if not first or self.phase == "before":
            raise Interrupted(signum)
        launcher = getattr(getattr(self._trainer, "strategy", None), "launcher", None)
        if launcher is not None and hasattr(launcher, "kill"):
            launcher.kill(signum)  # DDP: the ranks this process launched stop at the same epoch

    # -- Lightning hooks -------------------------------------------------------------------------
    def setup(self, trainer, pl_module, stage):
        self._trainer = trainer

    def on_train_start(self, trainer, pl_module):
        self.phase = "training"

    def on_train_end(self, trainer, pl_module):
        self.phase = "after"

    def on_exception(self, trainer, pl_module, exception):
        self.phase = "after"

    def on_train_epoch_end(self, trainer, pl_module):
        # every rank takes part, so that all stop after the same epoch
        if not trainer.strategy.reduce_boolean_decision(self.signum is not None, all=False):
            return
        self.signum = self.signum or signal.SIGTERM
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and ckpt.dirpath:
            trainer.save_checkpoint(Path(ckpt.dirpath) / f"{ckpt.CHECKPOINT_NAME_LAST}{ckpt.FILE_EXTENSION}")
            self.saved = True
        self.stopped_epoch = trainer.current_epoch
        trainer.should_stop = True

    def interruption(self) -> Interrupted | None:
        """What stopped the run, if a signal did (None: it ran to its end)."""
        if self.stopped_epoch is None:
            return None
        return Interrupted(self.signum, self.stopped_epoch + 1, self.saved)
