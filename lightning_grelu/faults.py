"""Crash points, for the tests that prove what survives a crash (and for anyone checking their own set-up).

``GRELU_DIE_AT=<point>[:<n>[:<SIGNAL>]]`` sends this process SIGKILL (or the named signal, e.g. SIGTERM) the
n-th time (default: the first) it reaches ``<point>``: a real, uncatchable kill at a chosen moment, or a signal
that arrives exactly there rather than wherever a race puts it. Points:

- ``before_training``: grelu-train has parsed its command line and Hydra has made the run directory; training
  (torch, Lightning) is not yet imported;
- ``train_step``: inside a training step;
- ``checkpoint``: a checkpoint's bytes are in its temp file, not yet renamed into place;
- ``switch``: the GReLU->ReLU solve has finished, the weights are not yet replaced;
- ``metrics`` / ``summary``: ``metrics.csv`` / ``summary.json`` written to a temp file, not yet renamed;
- ``tell``: a sweep worker's trial has finished, the study is not yet told.

Read once at import (it is set before the process starts), so an unset variable costs one comparison
per point.
"""

from __future__ import annotations

import os
import signal

_TARGET, _, _REST = (os.environ.get("GRELU_DIE_AT") or "").partition(":")
_NTH, _, _SIGNAL = _REST.partition(":")
_seen: dict[str, int] = {}


def point(name: str) -> None:
    if name != _TARGET:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == int(_NTH or 1):
        os.kill(os.getpid(), signal.Signals[_SIGNAL] if _SIGNAL else signal.SIGKILL)
