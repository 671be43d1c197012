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

``GRELU_RAISE_AT=<point>[:<n>]`` raises :class:`InjectedCrash` there instead: a fault of the suite's own
code (a bug), which every command tells as a crash (exit 1; a sweep trial FAILs with ``crash: ...``).

Read once at import (it is set before the process starts), so unset variables cost two comparisons
per point.
"""

from __future__ import annotations

import os
import signal

_TARGET, _, _REST = (os.environ.get("GRELU_DIE_AT") or "").partition(":")
_NTH, _, _SIGNAL = _REST.partition(":")
_RAISE, _, _RAISE_NTH = (os.environ.get("GRELU_RAISE_AT") or "").partition(":")
_seen: dict[str, int] = {}


class InjectedCrash(RuntimeError):
    """What ``GRELU_RAISE_AT`` raises: stands for any bug of the suite (not one of its known errors)."""


def point(name: str) -> None:
    if name != _TARGET and name != _RAISE:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if name == _TARGET and _seen[name] == int(_NTH or 1):
        os.kill(os.getpid(), signal.Signals[_SIGNAL] if _SIGNAL else signal.SIGKILL)
    if name == _RAISE and _seen[name] == int(_RAISE_NTH or 1):
        raise InjectedCrash(f"injected at {name} (GRELU_RAISE_AT)")
