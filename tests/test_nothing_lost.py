"""Nothing lost: a run killed with SIGKILL at chosen points (GRELU_DIE_AT) keeps every checkpoint and
record it had written, readable; resuming it with ``ckpt_path=last`` gives the uninterrupted run's
metrics step for step (across the GReLU->ReLU switch, with cached gates); divergence keeps the last good
checkpoint; W&B resumes the same run; an unwritable or full disk is refused before training."""

from __future__ import annotations

import csv
import glob
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import TINY, compose_cfg, run_cli

# GReLU (cached gates) for 12 epochs, converted to ReLU at 12, ReLU to 24; a checkpoint every 3 epochs
RUN = [*TINY, "model=grelu_to_relu", "trainer.max_epochs=24", "model.switch_epoch=12", "callbacks=default",
       "callbacks.model_checkpoint.every_n_epochs=3"]


def metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(int(r["epoch"]), float(r["train/sse"])) for r in metrics(run_dir)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full") / "run"
    out = run_cli(*RUN, f"paths.run_dir={run_dir}")
    assert out.returncode == 0, out.stderr
    return run_dir


def killed(tmp_path: Path, point: str) -> subprocess.CompletedProcess:
    return run_cli(*RUN, f"paths.run_dir={tmp_path / 'run'}", cwd=tmp_path, env={"GRELU_DIE_AT": point})


def assert_intact(run_dir: Path) -> None:
    """Whatever the killed run left is whole: checkpoints load, records parse."""
    for ckpt in (run_dir / "checkpoints").glob("*.ckpt"):
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        assert "state_dict" in state and "epoch" in state, ckpt
    if (run_dir / "metrics.csv").exists():
        assert all(r["train/sse"] for r in metrics(run_dir))
    if (run_dir / "summary.json").exists():
        json.loads((run_dir / "summary.json").read_text())
    assert (run_dir / "config.yaml").exists()


@pytest.mark.slow
@pytest.mark.parametrize("point", ["train_step:20", "checkpoint:3", "switch", "metrics:2", "summary"])
def test_killed_run_keeps_its_records_and_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted, point):
    out = killed(tmp_path, point)
    assert out.returncode == -signal.SIGKILL, out.stderr
    run_dir = tmp_path / "run"
    assert_intact(run_dir)
    assert (run_dir / "checkpoints" / "last.ckpt").exists()  # a previous checkpoint survived
    resumed = run_cli(*RUN, f"paths.run_dir={run_dir}", "ckpt_path=last", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    full = json.loads((uninterrupted / "summary.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["switch/epoch"] == 12
    # step for step: every epoch's train SSE equals the uninterrupted run's
    mine, theirs = losses(run_dir), losses(uninterrupted)
    assert [e for e, _ in mine] == [e for e, _ in theirs] == list(range(24))
    assert [v for _, v in mine] == pytest.approx([v for _, v in theirs], rel=1e-9, abs=1e-12)
    assert summary["train/sse"] == pytest.approx(full["train/sse"], rel=1e-9)
    assert summary["steps"] == full["steps"]


@pytest.mark.slow
def test_divergence_keeps_the_last_good_checkpoint(tmp_path):
    # lr at the edge of stability: the loss grows for a while, then overflows
    run_dir = tmp_path / "run"
    out = run_cli(*TINY, "model.lr=3e-3", "trainer.max_epochs=200", "callbacks=default",
                  "callbacks.model_checkpoint.every_n_epochs=1", f"paths.run_dir={run_dir}", cwd=tmp_path)
    assert out.returncode == 3, out.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged"
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["epoch"] >= 1  # it trained for a while before diverging
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())


@pytest.mark.slow
def test_wandb_resumes_the_same_run(tmp_path):
    run_dir = tmp_path / "run"
    base = [*TINY, "logger=wandb", "callbacks=default", f"paths.run_dir={run_dir}"]
    env = {"WANDB_MODE": "offline"}
    assert run_cli(*base, "trainer.max_epochs=5", cwd=tmp_path, env=env).returncode == 0
    out = run_cli(*base, "trainer.max_epochs=10", "ckpt_path=last", "overwrite=true", cwd=tmp_path, env=env)  # extend
    assert out.returncode == 0, out.stderr
    runs = sorted(glob.glob(str(run_dir / "wandb" / "offline-run-*")))
    assert len(runs) == 2
    ids = {r.rsplit("-", 1)[1] for r in runs}
    assert len(ids) == 1 and (run_dir / "wandb" / "run_id").read_text().strip() in ids
    fresh = tmp_path / "fresh"  # a new run gets a new id
    assert run_cli(*TINY, "logger=wandb", f"paths.run_dir={fresh}", cwd=tmp_path, env=env).returncode == 0
    assert (fresh / "wandb" / "run_id").read_text() != (run_dir / "wandb" / "run_id").read_text()


def test_full_disk_is_refused_before_training(tmp_path, monkeypatch):
    import shutil

    from lightning_grelu.errors import MachineError
    from lightning_grelu.train import train

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 << 30, 10 << 30, 1 << 20))
    with pytest.raises(MachineError, match="not enough disk space"):  # the machine's, not the job's parameters
        train(compose_cfg(tmp_path / "run", *TINY))
    assert not (tmp_path / "run" / "metrics.csv").exists() and not (tmp_path / "run" / "config.yaml").exists()


def test_unwritable_run_directory_is_refused_before_training(tmp_path):
    (tmp_path / "afile").write_text("x")
    out = run_cli(*TINY, f"paths.run_dir={tmp_path / 'afile' / 'run'}", cwd=tmp_path)
    assert out.returncode == 2 and "cannot write the run directory" in out.stderr
    if os.geteuid() != 0:  # root writes anywhere: a read-only directory only stops other users
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        out = run_cli(*TINY, f"paths.root={ro}", cwd=tmp_path)
        assert out.returncode == 2 and "not writable" in out.stderr
