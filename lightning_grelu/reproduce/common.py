"""Helpers the targets share: read a target's runs, label them, and pick values from curves."""

from __future__ import annotations

import math
from pathlib import Path

from lightning_grelu.results.records import Run, find_runs

BLUE, RED = "tab:blue", "tab:red"  # the paper draws GReLU blue


def runs_in(work: Path) -> list[Run]:
    return find_runs(work) if any(work.glob("*/summary.json")) else []


def color(run) -> str:
    """A run's colour: blue for a gated net (a fixed gate path: GReLU, GReLU->ReLU), red otherwise. The run
    record's ``net/gated`` (the net's own description) says which; records written before it existed, and
    plain model names, fall back to the name (``grelu...``)."""
    gated = run.get("net/gated") if hasattr(run, "get") else None
    if gated is None:
        model = run.get("model") if hasattr(run, "get") else run
        gated = bool(model) and str(model).startswith("grelu")
    return BLUE if gated else RED


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


def num(v, digits: int = 3) -> str:
    """A number for a sentence: ``digits`` significant digits; ``-`` when missing."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return "-"
    return f"{float(f'{v:.{digits}g}'):g}"  # 8420, not 8.42e+03; 1.23e-05 stays short


def step_of(runs: list[Run]) -> str:
    """The step the runs trained with, in words: the ntk step, or the fixed lr(s)."""
    policies = {r.get("lr_policy") or r.get("model.lr_policy") or "fixed" for r in runs}
    if policies == {"ntk"}:
        return "the ntk step (1 / lambda_max of the NTK at init, per net)"
    lrs = sorted({r.get("model.lr") for r in runs if r.get("model.lr") is not None})
    fixed = f"fixed lr {', '.join(f'{lr:g}' for lr in lrs)}" if lrs else "a fixed lr"
    return fixed if policies == {"fixed"} else f"{fixed} and the ntk step"


def budget_of(runs: list[Run]) -> str:
    """Training set size, epochs and batch, in words (from the first run's record)."""
    if not runs:
        return ""
    r = runs[0]
    batch = r.get("data.batch_size")
    return (f"{r.get('n_train')} training samples, {r.get('trainer.max_epochs')} epochs of "
            + ("full-batch GD" if batch is None else f"mini-batch GD (batch {batch})"))
