"""grelu-train and grelu-sweep behave as Hydra apps: --help, -h, --cfg job and shell completion work,
write nothing, and neither lists the other's config groups."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def run(command, *args, cwd):
    return subprocess.run([str(BIN / command), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "WANDB_MODE": "disabled"})


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_grelu_sweep_help(tmp_path, flag):
    out = run("grelu-sweep", flag, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "grelu-sweep: one Optuna sweep worker" in out.stdout
    assert "sweep: ackley_frontier, ackley_grid, ackley_width_lr" in out.stdout
    assert "model:" not in out.stdout.split("== Config ==")[0]  # grelu-train's groups are not grelu-sweep's
    assert not list(tmp_path.iterdir())


def test_grelu_sweep_cfg_job_prints_the_composed_sweep(tmp_path):
    out = run("grelu-sweep", "--cfg", "job", "sweep=ackley_grid", "sweep.n_trials=3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "name: ackley_grid" in out.stdout and "n_trials: 3" in out.stdout
    assert not list(tmp_path.iterdir())


def test_grelu_sweep_shell_completion(tmp_path):
    out = run("grelu-sweep", "--shell-completion", "install=bash", cwd=tmp_path)
    assert out.returncode == 0 and "grelu-sweep" in out.stdout, out.stderr


def test_grelu_train_help_lists_its_groups_only(tmp_path):
    out = run("grelu-train", "--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    groups = out.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
    assert "data: ackley" in groups and "synthetic" in groups
    assert "sweep:" not in groups  # grelu-train cannot use a sweep
    assert "grelu-train: train one" in out.stdout
