"""The trainability atlas: the width search, the exponent fit on frontiers with known exponents, and
the target end to end on a tiny profile."""

import math
from pathlib import Path

import numpy as np
import pytest

from lightning_grelu.reproduce import atlas
from lightning_grelu.reproduce.runner import run_target
from lightning_grelu.reproduce.target import Context
from lightning_grelu.results import scaling


@pytest.mark.parametrize("threshold", [1, 3, 7, 40, 100, 513, 5000])
def test_search_finds_the_threshold_of_a_monotone_answer(threshold):
    tried = {}

    def converges(w):
        tried[w] = w >= threshold
        return tried[w]

    m = atlas.search(converges, start=16, low=1, high=4096, resolution=1.5)
    if threshold > 4096:
        assert m is None
    else:
        assert m >= threshold and (m == 1 or m / max(w for w, c in tried.items() if not c) <= 1.5 + 1e-9)
        assert tried.get(2 * m, True) and tried.get(4 * m, True)  # the monotonicity checks ran and passed


def test_a_non_monotone_answer_is_recorded_as_a_violation():
    s = scaling.Search(("ackley", "relu"), {"n": 8, "L": 2, "d_y": 1}, 0)
    answer = lambda w: w in (11, 16, 23, 64)  # noqa: E731  fails at 32 (= 2 m*) and 44 though 11 converged
    m = atlas.search(lambda w: s.tried.setdefault(w, answer(w)), start=8, low=1, high=4096, resolution=1.5)
    assert m == s.m_star == 11 and s.violations == [22, 44]


def synthetic_searches(a, b, c, seeds=5, noise=0.05, rng_seed=0):
    """Frontiers m* = 3 n^a L^b d_y^c times log-normal noise per seed, bracketed at m*/1.4 (failed)."""
    rng = np.random.default_rng(rng_seed)
    out = []
    for n in (8, 16, 32, 64):
        for L in (2, 4, 8):
            for d_y in (1, 2, 4):
                for s in range(seeds):
                    m = max(2, round(3 * n ** a * L ** b * d_y ** c * math.exp(noise * rng.standard_normal())))
                    out.append(scaling.Search(("synthetic", "relu"), {"n": n, "L": L, "d_y": d_y}, s,
                                              {m: True, max(1, int(m / 1.4)): False}))
    return out


@pytest.mark.parametrize("a,b,c", [(2.0, 1.0, 1.0), (1.0, 0.0, 0.5), (0.5, -0.3, 1.5)])
def test_exponent_fit_recovers_known_exponents(a, b, c):
    fit = scaling.fit_exponents(synthetic_searches(a, b, c), n_boot=300)
    assert fit["axes"] == ["n", "L", "d_y"] and fit["points"] == 4 * 3 * 3 * 5
    for axis, true in zip(("n", "L", "d_y"), (a, b, c)):
        est, (lo, hi) = fit[axis]["estimate"], fit[axis]["ci95"]
        assert abs(est - true) < 0.05 and lo <= true <= hi and hi - lo < 0.2
        assert fit[axis]["theory"] == {"n": 2, "L": 1, "d_y": 1}[axis]


def test_censored_and_unconverged_searches_are_left_out_of_the_fit():
    pts = synthetic_searches(1.0, 1.0, 1.0, seeds=2)
    pts.append(scaling.Search(("synthetic", "relu"), {"n": 8, "L": 2, "d_y": 1}, 9, {1: True}))  # censored
    pts.append(scaling.Search(("synthetic", "relu"), {"n": 8, "L": 2, "d_y": 1}, 8, {4096: False}))  # none
    assert scaling.fit_exponents(pts, n_boot=10)["points"] == 4 * 3 * 3 * 2


@pytest.mark.slow
def test_atlas_target_end_to_end_on_a_tiny_profile(tmp_path, monkeypatch):
    monkeypatch.setitem(atlas.PROFILES, "smoke", dict(ns=[4, 8], depths=[2], d_ys=[1, 2], d=6, steps=200, inner=100,
                                                      eps=1e-3, width=(1, 256), resolution=1.5, seeds=[0, 1],
                                                      base=["callbacks=none"]))
    lines = []
    dest = run_target(atlas.Atlas(), Context("smoke"), tmp_path / "results", tmp_path / "work", "grelu-reproduce atlas",
                      progress=lines.append)
    readme = (dest / "README.md").read_text()
    assert "Omega(n^2 L d_y)" in readme and "### Exponents" in readme and "2, 1, 1" in readme
    for name in ("atlas.csv", "atlas_exponents.csv", "atlas_n.png", "atlas_L.png", "atlas_d_y.png"):
        assert (dest / name).exists(), name
    assert len(lines) == (2 + 4) * 2 * 2  # one line per (cell, model, seed) search
    # every job is an ordinary run record with the ntk policy's lr in it
    summaries = list(Path(dest / "runs").glob("*/summary.json"))
    assert summaries and all('"lr_policy": "ntk"' in p.read_text() for p in summaries)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "work").rglob("summary.json")}
    run_target(atlas.Atlas(), Context("smoke"), tmp_path / "results", tmp_path / "work", "grelu-reproduce atlas",
               progress=lambda _: None)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "work").rglob("summary.json")} == stamps  # all reused
