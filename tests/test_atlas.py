"""The atlas end to end on a tiny profile: the report's numbers are the records' (recomputed here from the
records, not from the report's code), its README answers first, and a second run reuses every trial."""

import csv
import gzip
import json

import pytest

from lightning_grelu.reproduce import atlas
from lightning_grelu.reproduce.runner import run_target
from lightning_grelu.reproduce.target import Context

TINY = dict(ns=[8, 16], depths=[2], d_ys=[1, 2], d=8, budgets=[100, 300], high=256, seeds=[0, 1, 2], base=[])


pytestmark = pytest.mark.slow  # the module's atlas takes about 30 s: make test runs it, make test-fast does not


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("atlas")
    saved = atlas.PROFILES["smoke"]
    atlas.PROFILES["smoke"] = TINY
    try:
        dest = run_target(atlas.Atlas(), Context("smoke", workers=1), tmp / "results", tmp / "work",
                          "grelu-reproduce atlas --profile smoke")
        yield tmp, dest
    finally:
        atlas.PROFILES["smoke"] = saved


def records(dest):
    with gzip.open(dest / "runs" / "records.jsonl.gz", "rt") as f:
        return [json.loads(line)["summary"] for line in f]


def test_the_readme_answers_first_and_names_its_protocol(made):
    _, dest = made
    text = (dest / "README.md").read_text().splitlines()
    assert text[0].startswith("# atlas: minimal width m*(T, eps) vs n in 8..16") and "T up to 300 GD steps" in text[0]
    assert text[2].startswith("**Outcome:** Under T = 300 GD steps and eps = 1e-04 x the initial SSE")
    assert "m*_50 ~ n^" in text[2] and "counting width" in text[2] and "Theorem 1" in text[2]
    assert text[2].count(". ") == 0 and text[2].endswith(".")  # one sentence
    assert text[4].endswith("; 1 worker process on 1 host ran its trials.")  # read from the study's trials
    answer = next(ln for ln in text if ln.startswith("**Answer.**"))
    assert "The paper says GReLU converges faster" in answer
    for f in ("atlas.csv", "atlas_exponents.csv", "atlas_verdicts.csv", "atlas_grelu_vs_relu.csv",
              "atlas_exponent_vs_T.png", "atlas_kappa_steps.png", "atlas_phase_synthetic_grelu.png"):
        assert (dest / f).stat().st_size > 0, f


def test_fractions_and_verdict_counts_are_the_records(made):
    _, dest = made
    runs = records(dest)
    assert len(runs) == len({(r["data"], r["model"], r["n_train"], r["depth"], r["d_out"], r["width"], r["seed"])
                             for r in runs})  # each run once
    for row in csv.DictReader(open(dest / "atlas.csv")):
        mine = [r for r in runs if (r["data"], r["model"], r["n_train"], r["depth"], r["d_out"]) ==
                (row["data"], row["model"], int(row["n"]), int(row["L"]), int(row["d_y"]))]
        for item in row["fraction converged per width"].split():
            w, f = item.split(":")
            at = [r for r in mine if r["width"] == int(w)]
            ok = [r["steps_to/1e-04"] is not None and r["steps_to/1e-04"] <= 300 for r in at]
            assert len(at) == 3 and float(f) == pytest.approx(sum(ok) / 3, abs=0.05)
        assert row["runs conv/div/stall/unfin"] == "/".join(  # every table counts each kind (headline protocol)
            str(sum(r["verdicts"]["300"]["1e-04"] == v for r in mine)) for v in ("converged", "diverged", "stalled", "unfinished"))
    for row in csv.DictReader(open(dest / "atlas_exponents.csv")):
        mine = [r for r in runs if (r["data"], r["model"]) == (row["data"], row["model"])]
        assert row["runs conv/div/stall/unfin"] == "/".join(
            str(sum(r["verdicts"][row["T"]][row["eps"]] == v for r in mine)) for v in ("converged", "diverged", "stalled", "unfinished"))
    for row in csv.DictReader(open(dest / "atlas_verdicts.csv")):
        mine = [r for r in runs if (r["data"], r["model"]) == (row["data"], row["model"])]
        counts = "/".join(str(sum(r["verdicts"][row["T"]]["1e-04"] == v for r in mine))
                          for v in ("converged", "diverged", "stalled", "unfinished"))
        assert row["eps 1e-04: conv/div/stall/unfin"] == counts


def test_every_scan_reaches_below_counting_and_beyond_its_all_converged_width(made):
    _, dest = made
    for row in csv.DictReader(open(dest / "atlas.csv")):
        widths = [int(item.split(":")[0]) for item in row["fraction converged per width"].split()]
        fracs = [float(item.split(":")[1]) for item in row["fraction converged per width"].split()]
        assert min(widths) <= float(row["counting width"])
        if row["m*_all"] != "> scanned":
            assert sum(w >= int(row["m*_all"]) for w in widths) >= 3 and fracs[-3:] == [1.0] * 3


def test_a_second_run_reuses_every_trial(made):
    tmp, _ = made
    from test_scan_workers import trials

    before = len(trials(f"journal:///{tmp}/work/atlas/smoke/study.log"))
    saved = atlas.PROFILES["smoke"]
    atlas.PROFILES["smoke"] = TINY
    try:
        run_target(atlas.Atlas(), Context("smoke", workers=1), tmp / "results", tmp / "work", "again")
    finally:
        atlas.PROFILES["smoke"] = saved
    assert len(trials(f"journal:///{tmp}/work/atlas/smoke/study.log")) == before
