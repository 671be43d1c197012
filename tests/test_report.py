"""grelu-report on a directory of hand-written run records: the expected table, CSV and figure."""

from __future__ import annotations

import csv
import os
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPORT = str(Path(sys.executable).parent / "grelu-report")


def fixture_run(root: Path, name: str, model: str, width: int, sse: float, status: str = "completed") -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({"status": status, "model": model, "width": width,
                                                "train/sse": sse, "steps_to_eps": 10 if sse < 1e-3 else None}))
    (d / "config.yaml").write_text(yaml.safe_dump({"experiment_name": "fx", "model": {"name": model, "width": width}}))
    (d / "metrics.csv").write_text("epoch,step,train/sse\n0,1,5.0\n1,2,2.5\n2,3,%s\n" % sse)


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    fixture_run(root, "a", "relu", 100, 0.5)
    fixture_run(root, "b", "relu", 100, 0.25)
    fixture_run(root, "c", "grelu", 100, 1e-4)
    fixture_run(root / "nested", "d", "grelu", 100, 3e-4)
    fixture_run(root, "e", "grelu", 100, float("nan"), status="diverged")
    return root


def test_report_groups_runs_and_aggregates_their_final_metrics(tmp_path, runs):
    out = subprocess.run([REPORT, str(runs), "--by", "model.name", "--metrics", "train/sse,steps_to_eps",
                          "--out", str(tmp_path / "rep")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "rep" / "report.csv", newline="") as f:
        rows = {r["model.name"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"relu", "grelu"}
    assert rows["relu"]["runs"] == "2" and float(rows["relu"]["train/sse"]) == pytest.approx(0.375)
    assert float(rows["relu"]["train/sse_min"]) == 0.25 and float(rows["relu"]["train/sse_max"]) == 0.5
    assert rows["grelu"]["runs"] == "3" and rows["grelu"]["diverged"] == "1"  # the NaN run is counted, not averaged
    assert float(rows["grelu"]["train/sse"]) == pytest.approx(2e-4)
    assert float(rows["grelu"]["steps_to_eps"]) == 10
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| grelu | 3 | 2 | 1 |" in md and "sum_i" in md
    assert (tmp_path / "rep" / "loss_curves.png").stat().st_size > 1000
    assert "relu" in out.stdout and "5 runs" in out.stdout


def test_report_on_a_corrupt_record_names_the_file(tmp_path, runs):
    (runs / "a" / "summary.json").write_text("{not json")
    out = subprocess.run([REPORT, str(runs), "--out", str(tmp_path / "rep")], capture_output=True, text=True)
    assert out.returncode == 2 and "a/summary.json: corrupt" in out.stderr
    assert not (tmp_path / "rep").exists()


def test_report_reads_a_sweeps_study(tmp_path, runs):
    import optuna

    url = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(study_name="st", storage=url)
    for name in ("a", "c"):
        t = study.ask()
        t.set_user_attr("run_dir", str(runs / name))
        study.tell(t, 1.0)
    out = subprocess.run([REPORT, "--study", "st", "--storage", url, "--by", "model.name", "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "2 runs" in out.stdout and "grelu" in out.stdout and "relu" in out.stdout


def test_groups_sort_numerically_and_every_mean_has_its_count(tmp_path):
    from lightning_grelu.results.records import find_runs
    from lightning_grelu.results.tables import aggregate

    root = tmp_path / "runs"
    for i, w in enumerate((118, 14, 200, 20, 14)):
        fixture_run(root, f"r{i}", "relu", w, 1e-4 if i != 4 else 0.5)
    rows = aggregate(find_runs(root), ["model.width"], ["train/sse", "steps_to_eps", "test/acc"])
    assert [r["model.width"] for r in rows] == [14, 20, 118, 200]  # not "118" < "14" < "20" < "200"
    w14 = rows[0]
    assert w14["runs"] == 2 and w14["steps_to_eps_n"] == 1 and w14["steps_to_eps"] == 10  # 1 of 2 reached eps
    assert w14["train/sse_n"] == 2 and w14["test/acc"] is None and w14["test/acc_n"] == 0  # missing, not 0


def test_the_console_table_keeps_whole_headers_on_a_narrow_terminal(tmp_path, runs):
    out = subprocess.run([REPORT, str(runs), "--by", "model.name", "--out", str(tmp_path / "rep")],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "90"})
    assert out.returncode == 0, out.stderr
    for header in ("train/sse_min", "train/sse_max", "steps_to_eps_n", "completed"):
        assert header in out.stdout, out.stdout
    assert "…" not in out.stdout


def test_loss_curves_are_grouped_in_gd_steps_with_robust_limits(tmp_path):
    from lightning_grelu.results.plots import grouped_loss_figure
    from lightning_grelu.results.records import find_runs

    root = tmp_path / "runs"
    for i in range(12):
        fixture_run(root, f"g{i}", "grelu" if i % 2 else "relu", 100, 1e-3)
    bad = root / "g0" / "metrics.csv"  # one run blew up
    bad.write_text("epoch,step,train/sse\n0,4,5.0\n1,8,1e10\n2,12,1e22\n")
    fig = grouped_loss_figure(find_runs(root), ["model.name"], "train/sse")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(labels) == ["grelu (6)", "relu (6)"]  # one entry per group, its run count
    assert ax.get_ylim()[1] < 1e12  # the 1e22 point does not set the scale
    assert ax.get_xlabel() == "GD step" and max(max(ln.get_xdata()) for ln in ax.get_lines()) == 12


def test_an_unknown_by_key_is_one_line_naming_it_and_the_keys_there_are(tmp_path, runs):
    out = subprocess.run([REPORT, str(runs), "--by", "nonexistent.key", "--out", str(tmp_path / "rep")],
                         capture_output=True, text=True, timeout=120)
    line, = out.stderr.strip().splitlines()
    assert out.returncode == 2 and "--by nonexistent.key" in line and "model.width" in line and "train/sse" in line
    assert not (tmp_path / "rep").exists()


def test_a_study_is_grouped_by_its_own_parameters_by_default(tmp_path):
    import optuna

    root = tmp_path / "runs"
    points = [("relu", 16, 0.5), ("relu", 64, 0.25), ("grelu", 16, 0.1), ("grelu", 16, 0.3)]
    url = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(study_name="st", storage=url)
    for i, (model, width, sse) in enumerate(points):
        fixture_run(root, f"t{i}", model, width, sse)
        study.enqueue_trial({"model": model, "model.width": width})  # as grelu-sweep's space names them
        t = study.ask()
        t.set_user_attr("run_dir", str(root / f"t{i}"))
        t.suggest_categorical("model", ["relu", "grelu"])
        t.suggest_int("model.width", 16, 64)
        study.tell(t, sse)
    out = subprocess.run([REPORT, "--study", "st", "--storage", url, "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "r" / "report.csv", newline="") as f:
        rows = [(r["model"], r["model.width"], r["runs"]) for r in csv.DictReader(f)]
    assert sorted(rows) == [("grelu", "16", "2"), ("relu", "16", "1"), ("relu", "64", "1")]


def test_the_loss_figure_is_readable_compact_legend_and_diverged_runs_marked(tmp_path):
    from lightning_grelu.results.plots import grouped_loss_figure
    from lightning_grelu.results.records import find_runs

    root = tmp_path / "runs"
    fixture_run(root, "a", "relu", 100, 0.5)
    fixture_run(root, "b", "grelu", 100, 1e-4)
    fixture_run(root, "c", "grelu", 100, float("nan"), status="diverged")
    (root / "c" / "metrics.csv").write_text("epoch,step,train/sse\n0,1,5.0\n1,2,inf\n")  # diverged at step 2
    out = subprocess.run([REPORT, str(root), "--out", str(tmp_path / "rep")], capture_output=True, text=True,
                         timeout=120)  # the default grouping: experiment_name, model.name
    assert out.returncode == 0, out.stderr
    fig = grouped_loss_figure(find_runs(root), ["experiment_name", "model.name"], "train/sse")
    ax = fig.axes[0]
    legend = ax.get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert sorted(labels) == ["grelu (2)", "relu (1)", "x: diverged (last finite value)"]  # no "=", no "(1 runs)"
    assert "3 runs in 2 groups; experiment_name=fx" in ax.get_title()  # the shared key, once
    fig.canvas.draw()
    width = legend.get_window_extent().width / fig.bbox.width
    assert width < 0.3, width  # beside the axes, not half the figure
    marks = [ln for ln in ax.get_lines() if ln.get_marker() == "x"]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [1] and list(marks[0].get_ydata()) == [5.0]
