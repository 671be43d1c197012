"""Minimal widths from run records, and the fit of their scaling exponents.

A *search* is the set of runs of one cell (data, model, n, L, d_y) and one seed at several widths.
Its minimal width m* is the smallest width that converged; a width that failed above m* is a
monotonicity violation (the bisection assumes there is none: this checks it). The exponents of
m* ~ K n^a L^b d_y^c are fitted by least squares on logs; their confidence intervals come from a
bootstrap that resamples the seeds of every cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

AXES = ("n", "L", "d_y")
THEORY = {"n": 2.0, "L": 1.0, "d_y": 1.0}  # m = n^2 L d_y (Theorem 1)


@dataclass
class Search:
    group: tuple  # (data, model)
    cell: dict  # {"n": .., "L": .., "d_y": ..}
    seed: int
    tried: dict = field(default_factory=dict)  # width -> converged

    @property
    def m_star(self) -> int | None:
        ok = [w for w, c in self.tried.items() if c]
        return min(ok) if ok else None

    @property
    def largest_failing_below(self) -> int | None:
        m = self.m_star
        bad = [w for w, c in self.tried.items() if not c and (m is None or w < m)]
        return max(bad) if bad else None

    @property
    def violations(self) -> list[int]:
        """Widths that failed although a narrower one converged."""
        m = self.m_star
        return sorted(w for w, c in self.tried.items() if not c and m is not None and w > m)

    @property
    def censored(self) -> bool:
        """m* is only an upper bound: nothing narrower was tried (the search hit its lower end)."""
        return self.m_star is not None and self.largest_failing_below is None


def searches(runs, group_keys=("data", "model")) -> list[Search]:
    """Group run records into searches. Each run must carry data.n (n_train), model.depth, width,
    seed, and ``steps_to_eps`` (not null = converged); d_y is ``data.d_out`` (1 when absent)."""
    out: dict[tuple, Search] = {}
    for r in runs:
        group = tuple(r.get(k) for k in group_keys)
        cell = {"n": int(r.get("n_train")), "L": int(r.get("depth")), "d_y": int(r.get("data.d_out", 1) or 1)}
        key = (group, tuple(cell.values()), int(r.get("seed")))
        s = out.setdefault(key, Search(group, cell, int(r.get("seed"))))
        s.tried[int(r.get("width"))] = r.get("status") == "completed" and r.get("steps_to_eps") is not None
    return sorted(out.values(), key=lambda s: (s.group, tuple(s.cell.values()), s.seed))


def _design(cells: list[dict], axes: list[str]) -> np.ndarray:
    return np.array([[1.0, *(np.log(c[a]) for a in axes)] for c in cells])


def varying_axes(points: list[Search]) -> list[str]:
    return [a for a in AXES if len({p.cell[a] for p in points}) > 1]


def fit_exponents(points: list[Search], n_boot: int = 1000, seed: int = 0) -> dict:
    """Least squares of log m* on log n, log L, log d_y (the axes that vary), over uncensored points;
    percentile 95% intervals from ``n_boot`` bootstrap resamples of the seeds within each cell."""
    pts = [p for p in points if p.m_star is not None and not p.censored]
    axes = varying_axes(pts)
    result = {"points": len(pts), "axes": axes}
    if len(pts) <= len(axes) + 1 or not axes:
        return result  # too few points for a fit
    X, y = _design([p.cell for p in pts], axes), np.log([p.m_star for p in pts])
    coef = np.linalg.lstsq(X, y, rcond=None)[0]
    by_cell: dict[tuple, list[int]] = {}
    for i, p in enumerate(pts):
        by_cell.setdefault(tuple(p.cell.values()), []).append(i)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = [i for rows in by_cell.values() for i in rng.choice(rows, size=len(rows), replace=True)]
        boots.append(np.linalg.lstsq(X[idx], y[idx], rcond=None)[0])
    boots = np.array(boots)
    for j, a in enumerate(axes, start=1):
        lo, hi = np.percentile(boots[:, j], [2.5, 97.5])
        result[a] = {"estimate": float(coef[j]), "ci95": [float(lo), float(hi)], "theory": THEORY[a]}
    result["log_K"] = float(coef[0])
    return result


def median_width(widths: list[int | None]) -> float | None:
    """Median of the seeds' m* (geometric mean of the middle two for an even count: widths are log-scaled)."""
    xs = sorted(w for w in widths if w is not None)
    if not xs:
        return None
    k = len(xs) // 2
    return xs[k] if len(xs) % 2 else float(np.sqrt(xs[k - 1] * xs[k]))


def predict(fit: dict, cell: dict) -> float | None:
    if "log_K" not in fit:
        return None
    return float(np.exp(fit["log_K"] + sum(fit[a]["estimate"] * np.log(cell[a]) for a in fit["axes"])))
