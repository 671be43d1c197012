"""Helpers the targets share: read a target's runs, label them, and pick values from curves."""

from __future__ import annotations

import math
from pathlib import Path

from lightning_grelu.results.records import Run, find_runs

BLUE, RED = "tab:blue", "tab:red"  # the paper draws GReLU blue


def runs_in(work: Path) -> list[Run]:
    return find_runs(work) if any(work.glob("*/summary.json")) else []


def color(model: str | None) -> str:
    return BLUE if model and model.startswith("grelu") else RED


def at_epoch(run: Run, column: str, epoch: int):
    xs, ys = run.curve(column)
    for x, y in zip(xs, ys):
        if int(x) == epoch:
            return y
    return None


def first_last(run: Run, column: str) -> tuple[float | None, float | None]:
    _, ys = run.curve(column)
    return (ys[0], ys[-1]) if ys else (None, None)


def monotone_fraction(ys: list[float]) -> float | None:
    """Fraction of epochs whose loss is below the previous epoch's (1.0: monotone decrease)."""
    if len(ys) < 2:
        return None
    return sum(b < a for a, b in zip(ys, ys[1:])) / (len(ys) - 1)


def largest_rise(ys: list[float]) -> float | None:
    """The largest epoch-to-epoch increase, relative to the previous value (oscillation amplitude)."""
    rises = [(b - a) / a for a, b in zip(ys, ys[1:]) if a > 0 and math.isfinite(a) and math.isfinite(b)]
    return max([0.0, *rises]) if rises else None
