"""Live progress: a full-batch run says epoch, GD step (inner steps counted), train SSE, lr, speed and
ETA while it trains, on stdout, with the run directory still the last line."""

from pathlib import Path

import pytest
from conftest import TINY, run_cli

from lightning_grelu.cli.train import print_summary


@pytest.mark.slow
def test_a_run_shows_its_progress_in_gd_steps(tmp_path):
    out = run_cli(*TINY, "callbacks=default", "callbacks.progress.every_s=0", "model.inner_steps=5",
                  f"paths.run_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    progress = [ln for ln in lines if ln.startswith("epoch ")]
    assert len(progress) == 30  # every_s=0: one line per epoch when stdout is not a terminal
    last = progress[-1]
    for part in ("epoch 30/30", "GD step 150", "train/sse ", "lr 3e-05", "steps/s", "ETA 0:00:00"):
        assert part in last, last
    assert Path(lines[-1]) == (tmp_path / "run").resolve() and not out.stderr.strip()


def test_the_summary_prints_what_a_switch_is_relative_to_and_the_accuracy(capsys):
    print_summary({"status": "completed", "train/sse": 1.0, "train/acc": 0.9, "switch/rel_jump": 0.29,
                   "switch/sse_before": 1.0, "switch/sse_after": 1.29, "switch/max_rel_pred_diff": 6e-6})
    out = capsys.readouterr().out
    for key in ("train/acc", "switch/sse_before", "switch/sse_after", "switch/rel_jump"):
        assert key in out
