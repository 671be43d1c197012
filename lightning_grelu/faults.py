"""Crash points, for the tests that prove what survives a crash (and for anyone checking their own set-up).

``GRELU_DIE_AT=<point>[:<n>]`` sends this process SIGKILL the n-th time (default: the first) it reaches
``<point>``: a real, uncatchable kill at a chosen moment. Points:

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

_TARGET, _, _NTH = (os.environ.get("GRELU_DIE_AT") or "").partition(":")
_RAISE, _, _RAISE_NTH = (os.environ.get("GRELU_RAISE_AT") or "").partition(":")
_seen: dict[str, int] = {}


class InjectedCrash(RuntimeError):
    """What ``GRELU_RAISE_AT`` raises: stands for any bug of the suite (not one of its known errors)."""


def point(name: str) -> None:
    if name != _TARGET and name != _RAISE:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if name == _TARGET and _seen[name] == int(_NTH or 1):
        os.kill(os.getpid(), signal.SIGKILL)
    if name == _RAISE and _seen[name] == int(_RAISE_NTH or 1):
        raise InjectedCrash(f"injected at {name} (GRELU_RAISE_AT)")
