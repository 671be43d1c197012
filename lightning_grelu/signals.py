"""Signals, told truthfully: SIGTERM (how SLURM and most schedulers pre-empt) and SIGINT (Ctrl-C) stop a
command with one line and exit code 128 + N (143, 130). During training
:class:`lightning_grelu.callbacks.StopOnSignal` ends the epoch and saves ``last.ckpt`` first; outside
training (a command starting, a CLI between jobs) these handlers act at once. Light on purpose: the CLIs
import it before anything heavy.
"""

from __future__ import annotations

import signal

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """A BaseException, like KeyboardInterrupt: no ``except Exception`` on the way may swallow it (library code
    that unwinds can still re-wrap it: :func:`lightning_grelu.errors.interruption` finds it on the chain).
    ``finished``: the signal came while a run that had finished wrote its records; they are whole."""

    def __init__(self, signum: int, epoch: int | None = None, saved: bool = False, finished: bool = False):
        self.signum, self.epoch, self.saved, self.finished = signum, epoch, saved, finished
        where = f" at epoch {epoch}" if epoch is not None else ""
        after = " after the run had finished (its records are whole)" if finished else ""
        super().__init__(f"stopped by {signal.Signals(signum).name}{where}{after}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def raise_on_signals() -> None:
    """Outside training (a CLI between jobs, while it writes results): SIGTERM and SIGINT raise Interrupted
    where the program is, so that its cleanup runs and it exits 128 + N with one line."""
    def handle(signum, frame):
        raise Interrupted(signum)

    for s in SIGNALS:
        signal.signal(s, handle)


def exit_on_signals(prog: str) -> None:
    """While a CLI starts (parsing, composing the config) there is nothing to save: SIGTERM and SIGINT end it
    at once, with one line and 128 + N. Training installs its own handlers over these."""
    import os
    import sys

    def handle(signum, frame):
        sys.stderr.write(f"{prog}: stopped by {signal.Signals(signum).name} outside training (nothing to save)\n")
        sys.stderr.flush()
        os._exit(128 + signum)

    for s in SIGNALS:
        signal.signal(s, handle)


def die_with_parent(signum: int = signal.SIGTERM, parent: int | None = None) -> None:
    """Linux: this process gets ``signum`` when its parent dies, even by SIGKILL. ``parent``: the pid the parent
    should have; if it died before this call (this process was re-parented), the signal comes at once."""
    import os

    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signum))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), signum)
