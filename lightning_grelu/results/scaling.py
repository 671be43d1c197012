"""Minimal widths from run records, as functions of the protocol, and the fit of their scaling exponents.

A *cell* is one series of a width scan (data, model, n, L, d_y) with its runs at several widths and seeds;
each run answers, for every target eps, the first GD step reaching it (or none). Under a protocol (T, eps)
a run converged when that step is <= T, so every (T, eps) up to the runs' budget is read from the same runs.
Per cell and protocol (:mod:`lightning_grelu.scan.grid`): the fraction of seeds converged per width, m*_50
(where half converge, interpolated on log-width over the fraction made non-decreasing) and m*_all (from which
every seed converges at every larger width scanned), and the widths where a seed failed above a width it
converged at.

Exponents of m* ~ K n^a L^b d_y^c are fitted per (group, protocol) by least squares on logs over the cells
whose m* lies inside the scanned range; 95% intervals come from a bootstrap that resamples the seeds of
every cell (and recomputes every m* from them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lightning_grelu.scan import grid

AXES = ("n", "L", "d_y")
THEORY = {"n": 2.0, "L": 1.0, "d_y": 1.0}  # m = n^2 L d_y (Theorem 1)
COUNTING = {"n": 0.5, "L": -0.5, "d_y": 0.5}  # L m^2 = n d_y (as many trained parameters as values to fit)


@dataclass
class Cell:
    group: tuple  # (data, model)
    cell: dict  # {"n": .., "L": .., "d_y": ..}
    answers: dict = field(default_factory=dict)  # width -> seed -> {eps: first step or None}
    runs: dict = field(default_factory=dict)  # width -> seed -> Run

    @property
    def seeds(self) -> list[int]:
        return sorted({s for per in self.answers.values() for s in per})

    def done(self, seeds: list[int] | None = None) -> dict[int, list[dict]]:
        """width -> every seed's answer (seed order given, repeats allowed), widths that all seeds answered."""
        seeds = self.seeds if seeds is None else seeds
        return {w: [per[s] for s in seeds] for w, per in sorted(self.answers.items()) if all(s in per for s in seeds)}


def answer_of(run) -> dict[float, int | None]:
    """The first step reaching each target a run recorded (``steps_to/<eps>`` and its own eps)."""
    out = {float(k.split("/", 1)[1]): v for k, v in run.summary.items() if k.startswith("steps_to/")}
    eps = run.summary.get("eps")
    if eps is not None:
        out.setdefault(float(eps), run.summary.get("steps_to_eps"))
    return out


def d_y_of(run) -> int:
    return int(run.summary.get("d_out") or run.get("data.d_out", 1) or 1)


def cells(runs, group_keys=("data", "model")) -> list[Cell]:
    """Group run records into cells. Each run carries n_train, depth, width, seed and its steps_to/* answers."""
    out: dict[tuple, Cell] = {}
    for r in runs:
        group = tuple(r.get(k) for k in group_keys)
        cell = {"n": int(r.get("n_train")), "L": int(r.get("depth")), "d_y": d_y_of(r)}
        c = out.setdefault((group, tuple(cell.values())), Cell(group, cell))
        w, s = int(r.get("width")), int(r.get("seed"))
        c.answers.setdefault(w, {})[s] = answer_of(r)
        c.runs.setdefault(w, {})[s] = r
    return sorted(out.values(), key=lambda c: (c.group, tuple(c.cell.values())))


def minimal(cell: Cell, protocol: tuple[int, float], beyond: int = 2) -> dict:
    done = cell.done()
    m50, status = grid.m_50(done, protocol)
    return {"m50": m50, "m50_status": status, "m_all": grid.m_all(done, protocol, beyond),
            "fractions": grid.fractions(done, protocol), "non_monotone": grid.non_monotone(done, protocol),
            "widths": sorted(done)}


def _converged(cell: Cell, protocol) -> tuple[np.ndarray, list[int]]:
    """(seeds x widths) bool: converged under the protocol."""
    T, eps = protocol
    done = cell.done()
    ws = sorted(done)
    table = np.array([[a.get(eps) is not None and a[eps] <= T for a in done[w]] for w in ws], dtype=bool).T
    return table, ws


def _m_from(table: np.ndarray, ws: list[int], which: str, beyond: int) -> float | None:
    """m*_50 or m*_all of a (seeds x widths) table; None outside the scanned range."""
    frac = table.mean(axis=0)
    if which == "m_all":
        run = 0
        for f in frac[::-1]:
            if f < 1:
                break
            run += 1
        return float(ws[len(ws) - run]) if run >= beyond + 1 and run < len(ws) else None
    from scipy.optimize import isotonic_regression

    f = isotonic_regression(frac).x
    if f[0] >= 0.5:
        return None  # at most the lowest width: censored
    for i in range(1, len(ws)):
        if f[i] >= 0.5:
            a, b = math.log(ws[i - 1]), math.log(ws[i])
            return float(math.exp(a + (0.5 - f[i - 1]) / (f[i] - f[i - 1]) * (b - a)))
    return None


def varying_axes(found: list[Cell]) -> list[str]:
    return [a for a in AXES if len({c.cell[a] for c in found}) > 1]


def fit_exponents(found: list[Cell], protocol: tuple[int, float], which: str = "m50", n_boot: int = 500,
                  seed: int = 0, beyond: int = 2) -> dict:
    """Least squares of log m* on log n, log L, log d_y (the axes that vary) over the cells whose m* lies in the
    scanned range; percentile 95% intervals from ``n_boot`` bootstraps resampling each cell's seeds."""
    tables = [_converged(c, protocol) for c in found]
    values = [_m_from(t, ws, which, beyond) if t.size else None for t, ws in tables]
    keep = [i for i, v in enumerate(values) if v is not None]
    axes = varying_axes([found[i] for i in keep])
    result = {"points": len(keep), "excluded": len(found) - len(keep), "axes": axes, "which": which,
              "protocol": list(protocol)}
    if len(keep) <= len(axes) + 1 or not axes:
        return result  # too few points for a fit
    X = np.array([[1.0, *(math.log(found[i].cell[a]) for a in axes)] for i in keep])
    coef = np.linalg.lstsq(X, np.log([values[i] for i in keep]), rcond=None)[0]
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        rows, ys = [], []
        for i in keep:
            t, ws = tables[i]
            v = _m_from(t[rng.integers(0, t.shape[0], t.shape[0])], ws, which, beyond)
            if v is not None:
                rows.append(X[keep.index(i)])
                ys.append(math.log(v))
        if len(ys) > len(axes) + 1:
            boots.append(np.linalg.lstsq(np.array(rows), np.array(ys), rcond=None)[0])
    boots = np.array(boots)
    for j, a in enumerate(axes, start=1):
        lo, hi = np.percentile(boots[:, j], [2.5, 97.5]) if len(boots) else (math.nan, math.nan)
        result[a] = {"estimate": float(coef[j]), "ci95": [float(lo), float(hi)], "theory": THEORY[a],
                     "counting": COUNTING[a]}
    result["log_K"] = float(coef[0])
    return result


def predict(fit: dict, cell: dict) -> float | None:
    if "log_K" not in fit:
        return None
    return float(np.exp(fit["log_K"] + sum(fit[a]["estimate"] * np.log(cell[a]) for a in fit["axes"])))


def median_width(widths: list[float | None]) -> float | None:
    """Median of widths (geometric mean of the middle two for an even count: widths are log-scaled)."""
    xs = sorted(w for w in widths if w is not None)
    if not xs:
        return None
    k = len(xs) // 2
    return xs[k] if len(xs) % 2 else float(np.sqrt(xs[k - 1] * xs[k]))
