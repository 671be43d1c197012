"""grelu-reproduce: every target's smoke profile end to end on a reduced size (the CIFAR-10 and SGEMM
targets on fixture files in the official formats), the missing-data stop, and atomic rewrites."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import write_cifar10, write_fashion_mnist, write_sgemm

REPRODUCE = str(Path(sys.executable).parent / "grelu-reproduce")
FMNIST = ["data.limit_train=120", "data.batch_size=60", "model.width=64"]
FMNIST_TARGETS = ("table2-fmnist", "fig3-fmnist", "inference")


def reproduce(*args, cwd: Path, timeout=600):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run([REPRODUCE, *args, "--results", str(cwd / "results"), "--work", str(cwd / "work")],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def overrides(*items: str) -> list[str]:
    return [a for item in items for a in ("--override", item)]


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def data_dirs(tmp: Path) -> dict[str, list[str]]:
    cifar = write_cifar10(tmp / "cifar", n=24, n_test=24)
    sgemm = write_sgemm(tmp / "sgemm", n=300)
    # Fashion-MNIST in its official files too: the real set's 10,000 test images, evaluated after every epoch at
    # batch 60, were most of these targets' time (test_datasets.py trains on the real files)
    fmnist = write_fashion_mnist(tmp / "fmnist", n=160, n_test=100)  # inference times 64 single images
    return {"cifar": [f"data.data_dir={cifar}"],
            "sgemm": [f"data.data_dir={sgemm}", "data.limit_train=null", "data.batch_size=60"],
            "fmnist": [f"data.data_dir={fmnist}"]}


# target -> (reductions, paper numbers or words its README must quote, measured columns that must be filled)
CASES = {
    "fig2a": (["--seeds", "2", *overrides("trainer.max_epochs=2")], ["all 5 converge", "none converges"],
              ["final train/sse min", "initial train/sse min", "initial train/sse max"]),
    "table2-fmnist": (overrides(*FMNIST, "trainer.max_epochs=1"), ["0.48", "0.02", "0.75"],
                      ["ReLU train/sse", "GReLU train/sse", "GReLU test/acc"]),
    "fig3-fmnist": (overrides(*FMNIST, "trainer.max_epochs=2"),
                    ["continuous at epoch 40"], ["final test/sse"]),
    "inference": (overrides(*FMNIST, "trainer.max_epochs=1", "model.depth=2"), ["r = sqrt(m)/2", "Remark 4"],
                  ["gates unchanged test", "test acc change", "pred change max test", "ms", "x ReLU dense"]),
    "table2": (overrides("trainer.max_epochs=1", "model.width=64"), ["0.27", "0.01"], ["ReLU train/sse"]),
    "fig3": (overrides("trainer.max_epochs=2", "model.width=64", "data.batch_size=60"),
             ["test set a significant loss drop"], ["final test/sse"]),
    "fig2b": (overrides("trainer.max_epochs=3", "model.width=32"), ["increase monotonically"],
              ["probe/grad_diff last epoch"]),
    "fig2c": (overrides("trainer.max_epochs=3", "model.width=32", "callbacks.activation_patterns.size=20"),
              ["20% - 25%"], ["probe/hamming last epoch"]),
    "fig4": (overrides("trainer.max_epochs=2"), ["deeper and narrower"], ["final train/sse"]),
    # narrow enough that the high lrs train on the fixture (at width 128 all four runs diverged in epoch 0, and
    # the table then held a status and nothing measured)
    "fig5": (overrides("trainer.max_epochs=3", "model.width=8", "model.depth=2"), ["oscillates with larger amplitudes"],
             ["final train/sse", "monotone fraction"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("target", list(CASES))
def test_smoke_profile_writes_the_paper_beside_measured_numbers(tmp_path, target):
    extra, quoted, measured = CASES[target]
    dirs = data_dirs(tmp_path)
    data = (dirs["cifar"] if target in ("table2", "fig3") else dirs["fmnist"] if target in FMNIST_TARGETS
            else dirs["sgemm"] if target.startswith(("fig2b", "fig2c", "fig4", "fig5")) else [])
    out = reproduce(target, "--profile", "smoke", *extra, *overrides(*data), cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    res = tmp_path / "results" / target / "smoke"
    readme = (res / "README.md").read_text()
    assert "## The paper" in readme and "## Measured" in readme and "grelu-reproduce" in readme
    assert "commit" in readme and "CPU" in readme  # provenance: commit and hardware
    for q in quoted:
        assert q in readme, q
    csvs = list(res.glob("*.csv"))
    assert csvs and list(res.glob("*.png")), list(res.iterdir())
    rows = [r for p in csvs for r in csv_rows(p)]
    for col in measured:  # the numbers were measured: a filled cell in some row (a diverged run has none) ...
        assert any(r.get(col) not in (None, "") for r in rows), (col, rows[:2])
    assert_the_tables_are_the_records(target, res)  # ... and every checked cell is its run record's value
    from lightning_grelu.reproduce import TARGETS

    engine = TARGETS[target].engine  # a width scan: its records in one file, its progress per batch
    assert list((res / "runs").glob("records.jsonl.gz" if engine else "*/summary.json"))  # what the figures show
    import re

    jobs = [ln for ln in out.stdout.splitlines() if re.match(r"fig2a-smoke: \d+ nets" if engine else r"\[\d+/\d+\] ", ln)]
    def digits(number: str) -> int:  # significant digits of a decimal number as printed
        return len(number.split("e")[0].replace(".", "").lstrip("0"))

    long = [ln for ln in jobs if any(digits(x) > 4 for x in re.findall(r"\d+\.\d+(?:e[-+]?\d+)?", ln))]
    assert jobs and not long, long  # 4 significant digits, not 16
    assert "jobs took" in readme
    title, _, outcome = readme.splitlines()[:3]  # the title states the protocol, the next line the outcome
    assert ("ntk step" in title or "fixed lr" in title) and ("epochs" in title or "GD steps" in title), title
    assert outcome.startswith("**Outcome:** ") and "paper" in outcome and outcome.endswith("."), outcome
    if target == "fig2a":  # the initial SSE differs across seeds: the table shows its range, not seed 0's
        assert all(float(r["initial train/sse min"]) < float(r["initial train/sse max"]) for r in rows)


# -- the tables against the run records, read here with json/csv/gzip (not the targets' own readers) ---------

def summaries(res: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (res / "runs").glob("*/summary.json")}


def column(res: Path, job: str, name: str) -> list[tuple[int, float]]:
    """(epoch, value) of one column of a job's metrics.csv, where the cell is filled."""
    return [(int(r["epoch"]), float(r[name])) for r in csv_rows(res / "runs" / job / "metrics.csv")
            if r.get(name) not in (None, "")]


def one(runs: dict[str, dict], **match) -> dict:
    """The one run whose summary holds every ``key=value`` of ``match``."""
    hits = [s for s in runs.values() if all(s.get(k) == v for k, v in match.items())]
    assert len(hits) == 1, (match, [{k: s.get(k) for k in match} for s in runs.values()])
    return hits[0]


def equal(cell: str, value) -> bool:
    """A table's cell is the record's value (an empty cell: the record has none, e.g. a diverged run's loss)."""
    if value is None or cell == "":
        return value is None and cell == ""
    return float(cell) == pytest.approx(value, rel=1e-12, abs=1e-300)


def assert_the_tables_are_the_records(target: str, res: Path) -> None:
    """Every measured cell checked here equals the value in the run record it reports (each row found by its
    model and size, not by its position), so a table that mixed up runs or columns fails."""
    runs = summaries(res)
    if target.startswith("table2"):
        rows = csv_rows(res / f"{target}.csv")
        assert len(rows) == 3
        for row in rows:
            depth, width = (int(v[1:]) for v in row["ours"].split())
            for model, name in (("relu", "ReLU"), ("grelu", "GReLU")):
                s = one(runs, model=model, depth=depth, width=width)
                for key in ("train/sse", "train/mse", "test/mse", "test/acc"):
                    assert equal(row[f"{name} {key}"], s[key]), (row, model, key, s[key])
    elif target.startswith("fig3"):
        rows = csv_rows(res / f"{target}.csv")
        assert sorted(r["model"] for r in rows) == sorted(runs) == ["grelu_to_relu", "relu"]
        for row in rows:
            s = runs[row["model"]]
            assert equal(row["final train/sse"], s["train/sse"]) and equal(row["final test/sse"], s["test/sse"])
            assert int(row["epochs"]) == s["epochs"]
            per_epoch = [c for c in row if c.startswith("test/sse epoch ")]
            assert per_epoch  # the epochs either side of the switch, from the metrics
            for c in per_epoch:
                epoch = int(c.rsplit(" ", 1)[1])
                assert equal(row[c], dict(column(res, row["model"], "test/sse"))[epoch]), c
        assert equal(next(r for r in rows if r["model"] == "grelu_to_relu")["switch/rel_jump"],
                     runs["grelu_to_relu"]["switch/rel_jump"])
    elif target in ("fig2b", "fig2c"):
        probe = "probe/grad_diff" if target == "fig2b" else "probe/hamming"
        rows = csv_rows(res / f"{target}.csv")
        assert sorted(r["model"] for r in rows) == sorted(runs) == ["grelu", "relu"]
        for row in rows:
            curve = [v for _, v in column(res, row["model"], probe)]
            assert int(row["epochs"]) == len(curve) > 1
            assert equal(row[f"{probe} first epoch"], curve[0]) and equal(row[f"{probe} last epoch"], curve[-1])
            assert equal(row["final train/sse"], runs[row["model"]]["train/sse"])
        if target == "fig2c":
            assert all(v == 0.0 for _, v in column(res, "grelu", probe))  # GReLU's patterns never flip
    elif target in ("fig4", "fig5"):
        rows = csv_rows(res / f"{target}.csv")
        # fig4: 2 models x 5 lrs at w128 d4, and GReLU at lr 1e-4 on 2 widths x 2 depths, of which w128 d4 is the same
        # run as above (13 runs, 14 rows)
        assert (len(runs), len(rows)) == ((13, 14) if target == "fig4" else (4, 4))
        for row in rows:
            s = one(runs, model=row["model"], width=int(row["width"]), depth=int(row["depth"]), lr=float(row["lr"]))
            assert row["status"] == s["status"] and equal(row["final train/sse"], s["train/sse"])
            losses = [v for _, v in column(res, next(k for k, v in runs.items() if v is s), "train/sse")
                      if math.isfinite(v)]  # a diverged run's last epoch is inf or nan
            falls = sum(b < a for a, b in zip(losses, losses[1:]))  # epochs whose loss fell
            want = falls / (len(losses) - 1) if len(losses) > 1 else None
            assert (row["monotone fraction"] or None) == want or float(row["monotone fraction"]) == pytest.approx(want)
    elif target == "inference":
        quality = csv_rows(res / "inference_quality.csv")
        assert {r["net"] for r in quality} == {"grelu", "remark4"}
        for row in quality:  # the Remark 4 net (Psi' = W of the ReLU run) computes the ReLU run's function
            s = runs["grelu" if row["net"] == "grelu" else "relu"]
            assert float(row["test acc full"]) == pytest.approx(s["test/acc"], abs=1e-9), row
            assert float(row["test sse full"]) == pytest.approx(s["test/sse"], rel=1e-9), row
        times = csv_rows(res / "inference_time.csv")
        assert times and all(float(r["ms"]) > 0 for r in times)
    elif target == "fig2a":
        import gzip

        with gzip.open(res / "runs" / "records.jsonl.gz", "rt") as f:
            records = [json.loads(line)["summary"] for line in f if line.strip()]
        rows = csv_rows(res / "fig2a.csv")
        assert sum(int(r["seeds"]) for r in rows) == len(records)  # every record in one row
        for row in rows:
            mine = [r for r in records if (r.get("lr_policy") or "fixed") == row["lr policy"]
                    and r["model"] == row["model"] and r["width"] == int(row["width"])]
            assert len(mine) == int(row["seeds"]) == 2, row
            finals, initials = [r["train/sse"] for r in mine], [r["initial/train_sse"] for r in mine]
            assert equal(row["final train/sse min"], min(finals)) and equal(row["final train/sse max"], max(finals))
            assert equal(row["initial train/sse min"], min(initials))
            assert equal(row["initial train/sse max"], max(initials))
            assert int(row["converged (train/sse <= eps)"]) == sum(v <= float(row["eps"]) for v in finals)
    else:
        raise AssertionError(f"no records check for {target}")


def test_a_target_whose_data_is_missing_stops_before_any_run(tmp_path):
    out = reproduce("table2", "--profile", "smoke", *overrides(f"data.data_dir={tmp_path}/nowhere"), cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "cifar-10-batches-py" in lines[0], out.stderr
    assert not (tmp_path / "results" / "table2").exists()
    assert not list((tmp_path / "work").rglob("summary.json"))


def ran(target: str, stdout: str) -> int:
    """How many runs a command trained: jobs print ``[i/N] job: ...`` (reused ones say so); a width scan's
    workers each say how many trials they ran."""
    import re

    if target == "fig2a":
        return sum(int(k) for k in re.findall(r"this worker ran (\d+) trials", stdout))
    return stdout.count("[") - stdout.count("done before, reused")


def records(res: Path, target: str) -> int:
    import gzip

    if target == "fig2a":
        with gzip.open(res / "runs" / "records.jsonl.gz", "rt") as f:
            return sum(1 for line in f if line.strip())
    return len(list((res / "runs").glob("*/summary.json")))


# a jobs target (table2 on the CIFAR-10 fixture: 3 sizes x 2 models) and a width scan (fig2a: 7 widths x 2 models
# x 2 step-size policies, one seed)
RERUN = {"table2": (["--seeds", "1", *overrides("trainer.max_epochs=1", "model.width=16")], 6),
         "fig2a": (["--seeds", "1", "--workers", "1", *overrides("trainer.max_epochs=2")], 28)}  # 1: in-process


@pytest.mark.slow
@pytest.mark.parametrize("target", list(RERUN))
def test_rerun_reuses_finished_jobs_and_rewrites_the_directory_without_stale_files(tmp_path, target):
    extra, total = RERUN[target]
    args = [target, *extra, *overrides(*data_dirs(tmp_path)["cifar"])] if target == "table2" else [target, *extra]
    first = reproduce(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert ran(target, first.stdout) == total
    res = tmp_path / "results" / target / "smoke"
    (res / "stale.txt").write_text("from an older run")
    csv_name = f"{target}.csv"
    before = (res / csv_name).read_text()
    again = reproduce(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert ran(target, again.stdout) == 0 and records(res, target) == total  # nothing trained again, nothing lost
    if target == "table2":
        assert again.stdout.count("done before, reused") == total
    assert not (res / "stale.txt").exists() and (res / csv_name).read_text() == before
    import re

    # the re-made README still says what computing the reused runs took: the first command's time, and nothing
    # for the command that only re-reported them (it ran no job)
    first_took = float(re.search(r"jobs took ([\d.e+-]+) s", first.stdout).group(1))
    assert "none ran" in again.stdout, again.stdout
    total = re.search(r"every job was finished before \(reused, not run again\): they took ([\d.e+-]+) s over the "
                      r"commands that ran them to their end", (res / "README.md").read_text())
    assert total and float(total.group(1)) == pytest.approx(first_took, rel=1e-3, abs=2e-3)
    assert not [p for p in res.parent.iterdir() if p.name.startswith(".")]  # no temp directories left


def test_unknown_target_is_one_clear_error(tmp_path):
    out = reproduce("table9", cwd=tmp_path)
    assert out.returncode == 2 and "invalid choice: 'table9'" in out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("target", list(RERUN))
def test_a_profile_runs_in_parts_and_says_which_parts_ran(tmp_path, target):
    """--part K/N runs every N-th job (a width scan: every N-th series); the README says which parts ran; the
    last part completes it, and the result then holds every run once."""
    extra, total = RERUN[target]
    args = [target, *extra, *overrides(*data_dirs(tmp_path)["cifar"])] if target == "table2" else [target, *extra]
    first = reproduce(*args, "--part", "1/3", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    # table2: jobs 0 and 3 of 6; fig2a: series 0 and 3 of 4 (7 widths each)
    assert ran(target, first.stdout) == (2 if target == "table2" else 14)
    res = tmp_path / "results" / target / "smoke"
    readme = (res / "README.md").read_text()
    assert "**Parts run:** 1 of 3" in readme and "still to run: 2, 3" in readme
    for k in (2, 3):
        assert reproduce(*args, "--part", f"{k}/3", cwd=tmp_path).returncode == 0
    readme = (res / "README.md").read_text()
    assert "1, 2, 3 of 3" in readme and "all parts have run" in readme
    assert records(res, target) == total
    bad = reproduce(*args, "--part", "4/3", cwd=tmp_path)
    assert bad.returncode == 2 and "--part" in bad.stderr


def test_a_result_readme_states_its_protocol_in_its_title_and_its_outcome_in_one_sentence():
    """On the checked-in Fashion-MNIST Table 2 records: the smoke profile's ntk step (not the paper's lr 1e-4)
    in the title, and whether ReLU or GReLU ended lower, with the numbers, in one sentence."""
    import json

    from lightning_grelu.reproduce import TARGETS
    from lightning_grelu.reproduce.job import Context
    from lightning_grelu.reproduce.target import header

    work = Path(__file__).resolve().parents[1] / "results" / "table2-fmnist" / "smoke" / "runs"
    target = TARGETS["table2-fmnist"]
    target = target() if isinstance(target, type) else target
    text = header(target, Context("smoke"), "grelu-reproduce table2-fmnist --profile smoke", "CPU", "abc1234", work)
    title, _, outcome = text.splitlines()[:3]
    assert "lr 1e-4" not in title and "the ntk step" in title and "d6 w500" in title and "20 epochs" in title
    sse = {d.name: json.loads((d / "summary.json").read_text())["train/sse"] for d in work.iterdir()}
    relu_lower = [a for a in ("d6_w500", "d7_w500", "d4_w750") if sse[f"relu_{a}"] < sse[f"grelu_{a}"]]
    assert outcome.startswith("**Outcome:** ") and outcome.count(". ") == 0 and outcome.endswith(".")
    if len(relu_lower) == 3:
        assert "Unlike the paper's Table 2" in outcome and "ReLU ends below GReLU here in all 3" in outcome
    relu, grelu = sse["relu_d6_w500"], sse["grelu_d6_w500"]
    assert f"d6 w500 {float(f'{relu:.3g}'):g} / {float(f'{grelu:.3g}'):g}" in outcome
