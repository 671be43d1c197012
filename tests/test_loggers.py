"""logger=csv keeps the summary row (at the run's last GD step), logger=tensorboard writes events with it,
and several loggers at once agree on the summary."""

import csv
import json

import pytest
from conftest import TINY, run_cli


@pytest.mark.slow
def test_csv_and_tensorboard_loggers_keep_the_summary_at_the_last_step(tmp_path):
    run = tmp_path / "run"
    out = run_cli(*TINY, "logger=[csv,tensorboard]", f"paths.run_dir={run}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    summary = json.loads((run / "summary.json").read_text())
    with open(next((run / "csv").rglob("metrics.csv")), newline="") as f:
        rows = list(csv.DictReader(f))
    last = [r for r in rows if r.get("summary/train/sse")]
    assert len(last) == 1 and float(last[0]["summary/train/sse"]) == pytest.approx(summary["train/sse"])
    assert int(last[0]["step"]) == summary["steps"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard")).Reload()
    assert "summary/train/sse" in events.Tags()["scalars"]
    point = events.Scalars("summary/train/sse")[-1]
    assert point.value == pytest.approx(summary["train/sse"], rel=1e-6) and point.step == summary["steps"]
