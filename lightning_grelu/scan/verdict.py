"""How a run ended, as one word, from its loss curve: converged, diverged, stalled or unfinished.

A step budget T and a target are the protocol; the verdict is what the run did under it:

- ``converged``: the train SSE reached the target at some step t <= T (``steps_to`` is that t);
- ``diverged``: before that, the SSE became non-finite or grew above ``DIVERGE_FACTOR`` x its initial value
  (a step-size failure, or the kernel moving away from where the step was chosen);
- ``stalled``: at T it had not reached the target and over the last ``window`` steps (``WINDOW_FRAC`` of T,
  at least ``MIN_WINDOW``) the SSE fell by less than ``STALL_RTOL`` of its value (no progress);
- ``unfinished``: still decreasing at T. The late linear rate (per step, of log SSE over that window) and
  the steps it would take at that rate to reach the target are recorded (``late_rate``, ``extrapolated``).

``steps`` and ``sse`` are the measured points (GD step, SSE), in increasing steps; they need not be every
step (a run record keeps every K-th), but ``steps_to`` is only as exact as they are dense.
"""

from __future__ import annotations

import math
from bisect import bisect_right

DIVERGE_FACTOR = 10.0  # SSE above this times the initial SSE: diverged
STALL_RTOL = 1e-3  # relative decrease over the window below this: stalled
WINDOW_FRAC = 0.1  # the window: this fraction of the budget ...
MIN_WINDOW = 10  # ... and at least this many steps
VERDICTS = ("converged", "diverged", "stalled", "unfinished")


def first_reaching(steps: list[int], sse: list[float], level: float, budget: int | None = None) -> int | None:
    """The first measured step (<= budget) whose SSE is <= level, before any divergence."""
    for t, v in zip(steps, sse):
        if budget is not None and t > budget:
            return None
        if not math.isfinite(v):
            return None
        if v <= level:
            return t
    return None


def diverged_at(steps: list[int], sse: list[float], budget: int | None = None,
                factor: float = DIVERGE_FACTOR) -> int | None:
    if not sse:
        return None
    limit = factor * sse[0]
    for t, v in zip(steps, sse):
        if budget is not None and t > budget:
            return None
        if not math.isfinite(v) or v > limit:
            return t
    return None


def verdict(steps: list[int], sse: list[float], level: float, budget: int, *, stall_rtol: float = STALL_RTOL,
            window_frac: float = WINDOW_FRAC, factor: float = DIVERGE_FACTOR) -> dict:
    """``{"verdict", "steps_to", ...}`` of a run under (budget, target level). A run that stopped early (it
    reached a smaller target, or diverged) has no points after its stop; a run that stopped at the target
    converged."""
    hit = first_reaching(steps, sse, level, budget)
    bad = diverged_at(steps, sse, budget, factor)
    if hit is not None and (bad is None or hit < bad):
        return {"verdict": "converged", "steps_to": hit}
    if bad is not None:
        return {"verdict": "diverged", "steps_to": None, "diverged_at": bad}
    upto = bisect_right(steps, budget)
    pts_t, pts_v = steps[:upto], sse[:upto]
    if not pts_t:
        return {"verdict": "unfinished", "steps_to": None, "late_rate": None, "extrapolated": None}
    end_t, end_v = pts_t[-1], pts_v[-1]
    window = max(MIN_WINDOW, round(window_frac * budget))
    start = bisect_right(pts_t, end_t - window) - 1
    start_t, start_v = (pts_t[start], pts_v[start]) if start >= 0 else (pts_t[0], pts_v[0])
    if end_t <= start_t or start_v <= 0:
        return {"verdict": "unfinished", "steps_to": None, "late_rate": None, "extrapolated": None}
    drop = (start_v - end_v) / start_v
    rate = (math.log(start_v) - math.log(end_v)) / (end_t - start_t) if end_v > 0 else math.inf
    if drop < stall_rtol:
        return {"verdict": "stalled", "steps_to": None, "late_rate": rate, "extrapolated": None}
    extra = math.log(end_v / level) / rate if rate > 0 and end_v > level else None
    return {"verdict": "unfinished", "steps_to": None, "late_rate": rate,
            "extrapolated": None if extra is None else end_t + math.ceil(extra)}
