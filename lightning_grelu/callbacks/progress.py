"""Live progress for any run, full-batch or mini-batch: epoch and GD step of the budget, train SSE, the
step size in use, steps per second and time left.

Lightning's progress bar counts batches (``0/1`` for full-batch GD) and shows no loss; this prints what a
GD run needs. On a terminal: one line rewritten in place, at most every ``tty_every_s``; in a log file or a
scheduler's output: a new line every ``every_s`` seconds (0: every epoch). Rank 0 only, on stdout (the run
directory stays the last line; stderr keeps only errors).
"""

from __future__ import annotations

import sys
import time

import lightning as L


def _clock(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class ProgressLine(L.Callback):
    def __init__(self, every_s: float = 30.0, tty_every_s: float = 1.0):
        self.every_s, self.tty_every_s = float(every_s), float(tty_every_s)
        self.tty = False
        self._t0 = self._last = 0.0
        self._epoch0 = self._step0 = 0
        self._open = False

    def on_train_start(self, trainer, pl_module):
        self.tty = sys.stdout.isatty()
        self._t0 = self._last = time.perf_counter()
        self._epoch0, self._step0 = trainer.current_epoch, trainer.global_step

    def line(self, trainer, pl_module) -> str:
        now = time.perf_counter() - self._t0
        epoch, max_epochs = trainer.current_epoch + 1, trainer.max_epochs
        done = max(epoch - self._epoch0, 1)
        steps = trainer.global_step  # counts GD steps (inner steps included: the summary's `steps`)
        sse = trainer.callback_metrics.get("train/sse")
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        rate = (trainer.global_step - self._step0) / now if now > 0 else 0.0
        left = (max_epochs - epoch) * now / done if max_epochs and max_epochs > 0 else None
        parts = [f"epoch {epoch}/{max_epochs}", f"GD step {steps}",
                 f"train/sse {float(sse):.4g}" if sse is not None else "train/sse -",
                 f"lr {lr:.3g}" if lr is not None else "", f"{rate:.1f} steps/s",
                 f"ETA {_clock(left)}" if left is not None else ""]
        return "  ".join(p for p in parts if p)

    def on_train_epoch_end(self, trainer, pl_module):
        if not trainer.is_global_zero:
            return
        now = time.perf_counter()
        last_epoch = trainer.current_epoch + 1 >= trainer.max_epochs
        if now - self._last < (self.tty_every_s if self.tty else self.every_s) and not last_epoch:
            return
        self._last = now
        if self.tty:
            sys.stdout.write("\r\033[K" + self.line(trainer, pl_module))
            self._open = True
        else:
            sys.stdout.write(self.line(trainer, pl_module) + "\n")
        sys.stdout.flush()

    def on_train_end(self, trainer, pl_module):
        if self._open:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self._open = False

    def on_exception(self, trainer, pl_module, exception):  # a crash, a divergence or a signal: a fresh line
        self.on_train_end(trainer, pl_module)
