"""The width scan and its answers, on synthetic oracles; verdicts on constructed runs; exponent fits on
synthetic minimal widths with known exponents."""

import math

import numpy as np
import pytest

from lightning_grelu.results import scaling
from lightning_grelu.scan import grid, verdict

PROTO = (1000, 1e-4)


def scan_with(oracle, seeds=5, rule=grid.Rule(ratio=1.25, high=4096), n=16, d_y=1, depth=2):
    """Drive the scan as the engine does (every needed width answered at once) with ``oracle(width, seed)`` ->
    first step reaching 1e-4 (or None). Returns the answers and the order widths were asked in."""
    widths = grid.grid(rule.ratio, rule.high)
    start = grid.start_width(rule, widths, n, d_y, depth)
    done, asked = {}, []
    for _ in range(200):
        need = grid.needed(rule, widths, start, done, set(), [PROTO], PROTO)
        if not need:
            break
        asked += need
        for w in need:
            done[w] = [{1e-4: oracle(w, s)} for s in range(seeds)]
    assert grid.finished(rule, widths, start, done, [PROTO], PROTO)
    return done, asked, start


def test_the_grid_ratio_is_at_most_the_rule_s_above_small_widths():
    ws = grid.grid(1.25, 5000)
    assert ws[:4] == [1, 2, 3, 4] and all(b / a <= 1.25 + 1e-12 for a, b in zip(ws, ws[1:]) if a >= 4)


def test_a_monotone_threshold_is_scanned_from_below_counting_to_two_widths_past_it():
    thresholds = [20, 26, 30, 33, 41]  # seed s converges at widths >= thresholds[s]
    done, asked, start = scan_with(lambda w, s: 100 if w >= thresholds[s] else None)
    assert start <= grid.counting_width(16, 1, 2) / 2 and min(done) == start  # from below the counting width
    ws = sorted(done)
    assert ws[-1] >= 41 and len([w for w in ws if w >= 41]) == 3  # the first all-converged width and two beyond
    assert grid.m_all(done, PROTO, 2) == min(w for w in ws if w >= 41)
    m50, status = grid.m_50(done, PROTO)
    assert status == "ok" and 26 <= m50 <= 33 and grid.non_monotone(done, PROTO) == []


def test_a_non_monotone_oracle_is_scanned_through_and_its_widths_listed():
    """Seed 2 converges at 10 and 12, fails at 15 and 18, converges from 22: bisection would have reported 10."""
    def oracle(w, s):
        if s == 2:
            return 50 if w in (10, 12) or w >= 22 else None
        return 50 if w >= 10 else None

    done, _, _ = scan_with(oracle)
    assert grid.non_monotone(done, PROTO) == [15, 18]
    assert grid.m_all(done, PROTO, 2) == 22  # every seed from 22 on, at every larger scanned width
    assert grid.fractions(done, PROTO)[15] == pytest.approx(0.8)
    assert grid.m_50(done, PROTO)[0] <= 10  # the fraction made non-decreasing: a non-monotone dip does not move it


def test_convergence_at_the_lowest_width_walks_the_scan_down():
    done, _, start = scan_with(lambda w, s: 5 if w >= 2 else None, n=256, d_y=4, depth=2)
    assert start > 2 and min(done) == 1 and grid.m_all(done, PROTO, 2) == 2


def test_a_budget_the_runs_exceed_counts_them_not_converged():
    done = {w: [{1e-4: 400 * 20 // w}] * 3 for w in (5, 10, 20, 40, 80)}
    assert grid.m_all(done, (1000, 1e-4), 2) == 10 and grid.m_all(done, (400, 1e-4), 2) == 20
    assert grid.m_all(done, (300, 1e-4), 2) is None  # only 40 and 80 converge: not resolved in the range
    assert grid.fraction(done[10], (799, 1e-4)) == 0 and grid.fraction(done[10], (800, 1e-4)) == 1


# -- verdicts on constructed runs ------------------------------------------------------------------------
def curve(fn, T):
    return list(range(T + 1)), [fn(t) for t in range(T + 1)]


def test_a_run_that_reaches_its_target_converged_at_that_step():
    steps, sse = curve(lambda t: 0.9 ** t, 200)
    v = verdict.verdict(steps, sse, level=1e-4, budget=200)
    assert v == {"verdict": "converged", "steps_to": math.ceil(math.log(1e-4) / math.log(0.9))}


@pytest.mark.parametrize("fn", [lambda t: 1.0 if t < 30 else math.nan, lambda t: 1.0 * 1.2 ** t])
def test_a_non_finite_or_growing_loss_diverged(fn):
    steps, sse = curve(fn, 100)
    v = verdict.verdict(steps, sse, level=1e-4, budget=100)
    assert v["verdict"] == "diverged" and v["steps_to"] is None


def test_a_flat_loss_stalled_and_a_slowly_falling_one_is_unfinished_with_its_extrapolation():
    steps, sse = curve(lambda t: 0.5 + 0.5 * 0.5 ** t, 1000)  # a floor at 0.5
    assert verdict.verdict(steps, sse, level=1e-4, budget=1000)["verdict"] == "stalled"
    steps, sse = curve(lambda t: 0.999 ** t, 1000)  # linear rate -log(0.999) per step
    v = verdict.verdict(steps, sse, level=1e-4, budget=1000)
    assert v["verdict"] == "unfinished" and v["late_rate"] == pytest.approx(-math.log(0.999), rel=1e-9)
    assert v["extrapolated"] == pytest.approx(math.log(1e-4) / math.log(0.999), abs=1)


def test_a_run_judged_under_a_shorter_budget_sees_only_its_steps():
    steps, sse = curve(lambda t: 0.99 ** t, 1000)
    assert verdict.verdict(steps, sse, 1e-4, 1000)["verdict"] == "converged"
    assert verdict.verdict(steps, sse, 1e-4, 500)["verdict"] == "unfinished"


# -- exponent fits on synthetic minimal widths ----------------------------------------------------------
def synthetic_cells(a, b, c, seeds=5, noise=0.05, rng_seed=0):
    """Cells whose seed s converges at widths >= 3 n^a L^b d_y^c x log-normal noise, on the scan's grid."""
    rng = np.random.default_rng(rng_seed)
    ws = grid.grid(1.25, 1 << 22)
    out = []
    for n in (8, 16, 32, 64):
        for L in (2, 4, 8):
            for d_y in (1, 2, 4):
                cell = scaling.Cell(("synthetic", "relu"), {"n": n, "L": L, "d_y": d_y})
                m = 3 * n ** a * L ** b * d_y ** c
                th = [m * math.exp(noise * rng.standard_normal()) for _ in range(seeds)]
                lo, hi = min(th) / 3, max(th) * 3
                for w in (w for w in ws if lo <= w <= hi):
                    cell.answers[w] = {s: {1e-4: 10 if w >= th[s] else None} for s in range(seeds)}
                out.append(cell)
    return out


@pytest.mark.parametrize("a,b,c", [(2.0, 1.0, 1.0), (0.5, -0.5, 0.5), (1.0, 0.0, 1.5)])
@pytest.mark.parametrize("which", ["m50", "m_all"])
def test_exponent_fit_recovers_known_exponents(a, b, c, which):
    fit = scaling.fit_exponents(synthetic_cells(a, b, c), (1000, 1e-4), which, n_boot=100)
    assert fit["axes"] == ["n", "L", "d_y"] and fit["points"] == 36
    for axis, true in zip(("n", "L", "d_y"), (a, b, c)):
        est, (lo, hi) = fit[axis]["estimate"], fit[axis]["ci95"]
        assert abs(est - true) < 0.08 and lo - 0.03 <= true <= hi + 0.03 and hi - lo < 0.3
        assert fit[axis]["theory"] == {"n": 2, "L": 1, "d_y": 1}[axis]
        assert fit[axis]["counting"] == {"n": 0.5, "L": -0.5, "d_y": 0.5}[axis]


def test_paired_ratio_and_its_interval():
    r = grid.paired_ratio([2.0, 4.0, 6.0, 8.0], [1.0, 2.0, 3.0, 4.0])
    assert r["median"] == 2.0 and r["ci95"] == [2.0, 2.0] and r["pairs"] == 4 and r["a_greater"] == 4


def test_a_protocol_that_never_resolves_stops_the_scan_at_max_factor_above_the_headline():
    """A hard target no width reaches: without a cap the scan walks the grid to ``high``; with max_factor = 3 it
    stops once its top width is 3x the headline protocol's m*_all (past it by at most the lookahead's two grid
    widths), and the hard one stays unresolved."""
    hard = (1000, 1e-8)

    def run(rule):
        widths = grid.grid(rule.ratio, rule.high)
        start = grid.start_width(rule, widths, 16, 1, 2)
        done = {}
        for _ in range(300):
            need = grid.needed(rule, widths, start, done, set(), [PROTO, hard], PROTO)
            if not need:
                break
            for w in need:  # every seed reaches 1e-4 from width 20 on, none ever reaches 1e-8
                done[w] = [{1e-4: 100 if w >= 20 else None, 1e-8: None} for _ in range(3)]
        return done

    capped = run(grid.Rule(ratio=1.25, high=4096, max_factor=3))
    base = grid.m_all(capped, PROTO, 2)
    assert base == min(w for w in grid.grid(1.25, 4096) if w >= 20) and 3 * base <= max(capped) <= 3 * base * 1.25 ** 2 and grid.m_all(capped, hard, 2) is None
    assert max(run(grid.Rule(ratio=1.25, high=512))) == max(grid.grid(1.25, 512))  # uncapped: up to high
