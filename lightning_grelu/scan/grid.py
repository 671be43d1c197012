"""The width scan: which widths a series needs next, and what its answers say (pure functions, no I/O).

A *series* is one cell of a study (data, model, n, L, d_y, ...) run at several widths with several seeds.
Widths lie on one geometric grid shared by every series (so that answers are comparable and nets of equal
width can train together). The scan starts below the parameter-counting width sqrt(n d_y / L) (the width
at which the trained parameters L m^2 equal the n d_y target values) and walks up, ``lookahead`` grid
widths at a time, until every seed converges at ``beyond`` + 1 successive widths for every protocol it
must resolve, or the grid reaches ``high`` (or, with ``max_factor``, a set factor above the headline protocol's
m*_all: harder protocols left unresolved are then beyond the scanned range). Convergence is never assumed monotone in width: every width
in the range is run, the fraction of seeds converging is reported per width, and a seed that fails above
a width where it converged is listed. If some seed already converges at the lowest width, the scan also
walks down.

A *protocol* is (T, eps): converged means "reached eps (relative, or absolute) within T GD steps". One run
answers every protocol up to its budget: it records the first step reaching each target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

P_GRID = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # Fig. 2a's widths (n^2 L)^p


@dataclass(frozen=True)
class Rule:
    ratio: float = 1.25  # grid ratio (consecutive widths differ by at most this, above small integers)
    low: int | None = None  # lowest width; None: the largest grid width <= counting width / 2
    high: int = 4096  # never above this
    beyond: int = 2  # all seeds must converge at this many widths above the first one where they all do
    lookahead: int = 2  # widths enqueued at once per series (more parallel work, a little more past the end)
    fixed: tuple[int, ...] | None = None  # fig2a: exactly these widths, no scan
    # None: scan up until every protocol is resolved (or ``high``). A number: also stop once the top scanned width
    # is this factor above the headline protocol's m*_all; harder protocols not resolved by then are reported as
    # beyond the scanned range (a deep ReLU net chasing 1e-8 would otherwise walk the grid to ``high``)
    max_factor: float | None = None


def grid(ratio: float, high: int) -> list[int]:
    """1, 2, 3, ... up to ``high``, each width floor(ratio x the previous) (or the previous + 1): consecutive
    widths differ by a factor of at most ``ratio`` once they exceed 1 / (ratio - 1)."""
    out = [1]
    while True:
        w = max(out[-1] + 1, math.floor(out[-1] * ratio + 1e-9))
        if w > high:
            return out
        out.append(w)


def counting_width(n: int, d_y: int, depth: int) -> float:
    """The width at which L m^2 trained parameters equal the n d_y values to fit."""
    return math.sqrt(n * d_y / depth)


def start_width(rule: Rule, widths: list[int], n: int, d_y: int, depth: int) -> int:
    if rule.low is not None:
        return min((w for w in widths if w >= rule.low), default=widths[-1])
    half = counting_width(n, d_y, depth) / 2
    return max((w for w in widths if w <= half), default=widths[0])


def fraction(answers: list[dict], protocol: tuple[int, float]) -> float:
    """Fraction of seeds converged under (T, eps); each answer maps target -> first step (or None)."""
    T, eps = protocol
    ok = [a.get(eps) is not None and a[eps] <= T for a in answers]
    return sum(ok) / len(ok) if ok else math.nan


def needed(rule: Rule, widths: list[int], start: int, done: dict[int, list[dict]], pending: set[int],
           protocols: list[tuple[int, float]], headline: tuple[int, float]) -> list[int]:
    """Widths this series needs next that are neither answered (``done``: width -> every seed's answer) nor
    ``pending``. Empty when the series is finished (or waits for pending widths)."""
    if rule.fixed is not None:
        return [w for w in rule.fixed if w not in done and w not in pending]
    if finished(rule, widths, start, done, protocols, headline):
        return []
    top = _contiguous_top(widths, start, done)
    want = [w for w in widths if w > top][:rule.lookahead] if top is not None else [w for w in widths if w >= start][:rule.lookahead]
    if top is not None and _walks_down(widths, done, headline):  # some seed converges at the lowest: go down
        want.append(max(w for w in widths if w < min(done)))
    return [w for w in want if w not in done and w not in pending]


def _walks_down(widths: list[int], done: dict, headline) -> bool:
    low = min(done)
    return low > widths[0] and fraction(done[low], headline) > 0


def _contiguous_top(widths: list[int], start: int, done: dict) -> int | None:
    """The highest width such that every grid width from ``start`` up to it is answered."""
    top = None
    for w in (w for w in widths if w >= start):
        if w not in done:
            break
        top = w
    return top


def finished(rule: Rule, widths: list[int], start: int, done: dict[int, list[dict]],
             protocols: list[tuple[int, float]], headline: tuple[int, float]) -> bool:
    if rule.fixed is not None:
        return all(w in done for w in rule.fixed)
    top = _contiguous_top(widths, start, done)
    if top is None or _walks_down(widths, done, headline):
        return False
    if top >= widths[-1] or top >= rule.high:
        return True
    scanned = [w for w in widths if start <= w <= top]
    if all(_all_run(scanned, done, p) >= rule.beyond + 1 for p in protocols):
        return True
    if rule.max_factor is not None:
        base = m_all({w: done[w] for w in scanned}, headline, rule.beyond)
        return base is not None and top >= rule.max_factor * base
    return False


def _all_run(scanned: list[int], done: dict, protocol) -> int:
    """How many of the highest scanned widths in a row have every seed converged."""
    run = 0
    for w in reversed(scanned):
        if fraction(done[w], protocol) < 1:
            break
        run += 1
    return run


def m_all(done: dict[int, list[dict]], protocol, beyond: int) -> int | None:
    """The smallest width from which every seed converges at every larger scanned width; None when the top
    of the scan is not ``beyond`` + 1 such widths (not resolved within the range)."""
    scanned = sorted(done)
    run = _all_run(scanned, done, protocol)
    if run < beyond + 1:
        return None
    return scanned[len(scanned) - run]


def m_50(done: dict[int, list[dict]], protocol) -> tuple[float | None, str]:
    """The width at which half the seeds converge: the fraction over widths made non-decreasing (isotonic
    regression: a non-monotone width does not move the answer by itself), interpolated on log-width where it
    crosses 1/2. Returns (width, status) with status ``ok``, ``below`` (half converge at the lowest width:
    the answer is at most it) or ``above`` (never half within the range)."""
    from scipy.optimize import isotonic_regression

    ws = sorted(done)
    if not ws:
        return None, "above"
    f = isotonic_regression([fraction(done[w], protocol) for w in ws]).x
    if f[0] >= 0.5:
        return float(ws[0]), "below"
    for i in range(1, len(ws)):
        if f[i] >= 0.5:
            a, b = math.log(ws[i - 1]), math.log(ws[i])
            t = (0.5 - f[i - 1]) / (f[i] - f[i - 1])
            return float(math.exp(a + t * (b - a))), "ok"
    return None, "above"


def non_monotone(done: dict[int, list[dict]], protocol) -> list[int]:
    """Widths at which some seed failed although it converged at a narrower width."""
    ws = sorted(done)
    out = set()
    seeds = len(done[ws[0]]) if ws else 0
    T, eps = protocol
    for s in range(seeds):
        seen = False
        for w in ws:
            a = done[w][s] if s < len(done[w]) else {}
            ok = a.get(eps) is not None and a[eps] <= T
            if ok:
                seen = True
            elif seen:
                out.add(w)
    return sorted(out)


def fractions(done: dict[int, list[dict]], protocol) -> dict[int, float]:
    return {w: fraction(done[w], protocol) for w in sorted(done)}


def paired_ratio(a: list[float], b: list[float], n_boot: int = 2000, seed: int = 0) -> dict | None:
    """Median of the paired ratios a_i / b_i (e.g. ReLU's steps over GReLU's, same seed), with a percentile
    95% bootstrap interval over the pairs."""
    pairs = np.array([(x, y) for x, y in zip(a, b) if x and y and x > 0 and y > 0], dtype=float)
    if len(pairs) == 0:
        return None
    r = pairs[:, 0] / pairs[:, 1]
    rng = np.random.default_rng(seed)
    boots = np.median(rng.choice(r, size=(n_boot, len(r)), replace=True), axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"median": float(np.median(r)), "ci95": [float(lo), float(hi)], "pairs": int(len(r)),
            "a_greater": int((r > 1).sum())}
