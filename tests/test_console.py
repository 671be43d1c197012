"""A run's console shows only what the user needs: no Lightning banner, tips or warnings about settings
the suite chose on purpose (per-epoch logging on full-batch runs, unsynced per-rank throughput probes)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, run_cli

NOISE = ("sync_dist", "log_every_n_steps", "logging interval", "GPU available", "TPU available", "Tip:", "Warning")


@pytest.mark.slow
@pytest.mark.parametrize("extra", [["logger=csv"], ["trainer=ddp_cpu"]], ids=["csv", "ddp_cpu"])
def test_grelu_train_prints_no_noise(tmp_path, extra):
    out = run_cli(*TINY, "callbacks=[default,probes]", *extra, f"paths.run_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert not [n for n in NOISE if n in out.stdout + out.stderr], out.stdout + out.stderr


@pytest.mark.slow
def test_grelu_bench_prints_its_table_only():
    out = subprocess.run([str(Path(sys.executable).parent / "grelu-bench"), "--case", "tiny", "--device", "cpu",
                          "--steps", "2", "--repeats", "1", "--warmup", "1"], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "WANDB_MODE": "disabled"})
    assert out.returncode == 0, out.stderr
    assert not [n for n in NOISE if n in out.stdout + out.stderr], out.stdout + out.stderr
    assert "grelu-bench" in out.stdout
