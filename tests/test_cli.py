"""grelu-train as a user runs it: the default job, divergence, DDP, a non-editable install (bad input: test_bad_input.py)."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, TINY, run_cli


def test_default_job_runs_and_prints_its_run_dir_last(tmp_path):
    out = run_cli(cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    run_dir = Path(out.stdout.strip().splitlines()[-1])
    assert run_dir.is_dir() and run_dir.is_relative_to(tmp_path / "runs")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["model"] == "grelu"
    assert summary["train/sse"] < 1e-3 * summary["initial/train_sse"]
    assert (run_dir / "config.yaml").exists() and (run_dir / "metrics.csv").exists()
    assert (run_dir / "checkpoints" / "last.ckpt").exists()


def test_divergence_exits_3_with_status_diverged(tmp_path):
    out = run_cli(*TINY, "model.lr=10", f"paths.run_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert out.returncode == 3, out.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged" and "lower model.lr" in summary["error"]
    assert summary["train/sse"] is None
    assert "diverged" in out.stderr


@pytest.mark.slow
def test_ddp_two_cpu_processes_match_one_process(tmp_path):
    one = run_cli(*TINY, f"paths.run_dir={tmp_path / 'one'}", cwd=tmp_path)
    two = run_cli(*TINY, "trainer=ddp_cpu", f"paths.run_dir={tmp_path / 'two'}", cwd=tmp_path)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    s1 = json.loads((tmp_path / "one" / "summary.json").read_text())
    s2 = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert s2["status"] == "completed" and s2["steps"] == s1["steps"]
    # the global full-batch gradient is the same on 1 or 2 devices
    assert s2["train/sse"] == pytest.approx(s1["train/sse"], rel=1e-3)


@pytest.mark.slow
def test_ddp_switch_on_two_cpu_processes(tmp_path):
    out = run_cli(*TINY, "model=grelu_to_relu", "trainer=ddp_cpu", f"paths.run_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["switch/epoch"] == 15 and s["switch/rel_jump"] < 1e-3


@pytest.mark.slow
def test_ddp_switch_with_n_gt_m_all_reduces_the_normal_equations(tmp_path):
    """n=10 > m=8: each rank accumulates its shard's Gram matrices; the sums must give the same fit."""
    narrow = [*TINY, "model=grelu_to_relu", "model.width=8", "model.ridge=1e-9"]
    one = run_cli(*narrow, f"paths.run_dir={tmp_path / 'one'}", cwd=tmp_path)
    two = run_cli(*narrow, "trainer=ddp_cpu", f"paths.run_dir={tmp_path / 'two'}", cwd=tmp_path)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    s1 = json.loads((tmp_path / "one" / "summary.json").read_text())
    s2 = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert s1["switch/exact"] is False and s2["switch/exact"] is False
    assert 0 < s1["switch/rel_residual"] < 1
    assert s2["switch/rel_residual"] == pytest.approx(s1["switch/rel_residual"], rel=1e-3)
    assert s2["switch/max_rel_pred_diff"] == pytest.approx(s1["switch/max_rel_pred_diff"], rel=1e-3)
    assert s1["switch/input_rank_l1"] == s2["switch/input_rank_l1"] == 8  # n > m: the ideal rank is m


@pytest.mark.slow
def test_non_editable_install_ships_its_configs(tmp_path):
    wheel_dir, site = tmp_path / "wheel", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(wheel_dir), str(REPO)], check=True, capture_output=True, timeout=300)
    wheel = next(wheel_dir.glob("lightning_grelu-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for cfg in ("train.yaml", "model/grelu.yaml", "data/ackley.yaml", "trainer/ddp_cpu.yaml", "logger/wandb.yaml"):
        assert f"lightning_grelu/conf/{cfg}" in names, cfg
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = "import sys, lightning_grelu.cli.train as c; assert c.__file__.startswith(sys.argv[1]); sys.argv=sys.argv[1:]; c.main()"
    out = subprocess.run([sys.executable, "-c", code, str(site), *TINY, f"paths.run_dir={tmp_path / 'run'}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_image_data_under_ddp_and_bf16(tmp_path):
    from fixtures import write_fashion_mnist
    root = write_fashion_mnist(tmp_path / "fmnist", n=64, n_test=16)
    out = run_cli("data=fashion_mnist", f"data.data_dir={root}", "data.batch_size=16", "model.width=64",
                  "model.depth=2", "model.lr=1e-4", "trainer=ddp_cpu", "trainer.precision=bf16-mixed",
                  "trainer.max_epochs=2", "callbacks=none", f"paths.run_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    # 64 images, global batch 16 split over 2 ranks: 4 steps an epoch, as on one device
    assert s["status"] == "completed" and s["steps"] == 8 and s["test/acc"] is not None
