"""grelu-train and grelu-sweep behave as Hydra apps: --help, -h, --cfg job and shell completion work,
write nothing, and neither lists the other's config groups. The option lists are read from the config
folders here, so adding a preset or rewording the help changes no test."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_grelu.config_check import CONF_DIR

BIN = Path(sys.executable).parent
SWEEP_CONF = CONF_DIR.parent / "sweep_conf"


def run(command, *args, cwd):
    return subprocess.run([str(BIN / command), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "WANDB_MODE": "disabled"})


def groups_of(conf: Path) -> dict[str, set[str]]:
    """Each config group folder and the options in it (its .yaml files)."""
    return {d.name: {p.stem for p in d.glob("*.yaml")} for d in conf.iterdir() if d.is_dir()}


def listed_groups(help_text: str) -> dict[str, set[str]]:
    """The help's "Configuration groups" section as {group: options}."""
    section = help_text.split("== Configuration groups ==")[1].split("== Config ==")[0]
    out = {}
    for line in section.splitlines():
        group, sep, options = line.partition(": ")
        if sep and " " not in group.strip():
            out[group.strip()] = {o.strip() for o in options.split(",")}
    return out


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_grelu_sweep_help(tmp_path, flag):
    out = run("grelu-sweep", flag, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "grelu-sweep" in out.stdout.split("== Configuration groups ==")[0]  # its own help, named
    assert listed_groups(out.stdout) == groups_of(SWEEP_CONF)  # every sweep, and none of grelu-train's groups
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
    assert "grelu-train" in out.stdout.split("== Configuration groups ==")[0]
    listed = listed_groups(out.stdout)
    assert listed == groups_of(CONF_DIR)  # every group with every option; no sweep group (grelu-train has none)
    assert not list(tmp_path.iterdir())
