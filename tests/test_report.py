"""grelu-report on a directory of hand-written run records: the expected table, CSV and figure."""

from __future__ import annotations

import csv
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
