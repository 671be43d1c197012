"""The edges a researcher meets in the first hour, each as the real command: refusals in one line that write
nothing, a resume that needs its run directory, a diverged run's checkpoint, grelu-eval's split check, a quiet
console, and value checks made before torch and Lightning are imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GRELU_TRAIN, TINY
from lightning_grelu.config_check import CONF_DIR

BIN = Path(sys.executable).parent
ENV = {**os.environ, "WANDB_MODE": "offline", "PATH": f"{BIN}:{os.environ['PATH']}"}


def run(cmd: str, *args: str, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / cmd), *args], cwd=cwd, env={**ENV, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)


def one_line(out: subprocess.CompletedProcess) -> str:
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr[-3000:]
    return lines[0]


def no_gpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def options(group: str, conf: Path = CONF_DIR) -> list[str]:
    """A config group's options, read from its folder here (adding a preset changes no test)."""
    return sorted(p.stem for p in (conf / group).glob("*.yaml"))


REFUSED = [  # (command line, what the one line must name: the bad value, and the way out)
    (["model.width=abc"], ["model.width", "abc"]),
    (["callbacks=[default,nosuch]"], ["nosuch", *options("callbacks")]),
    (["logger=[csv,nosuch]"], ["nosuch", *options("logger")]),
    (["data=cifar10"], ["CIFAR-10", "data/cifar10", "GRELU_DATA_DIR"]),  # where it looked, how to move it
    (["paths.root=/proc/nope"], ["paths.root=/proc/nope"]),
]
if no_gpu():
    REFUSED.append((["trainer=gpu"], ["GPU"]))


@pytest.mark.parametrize("args,says", REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_a_refused_grelu_train_is_one_line_exit_2_and_writes_nothing(tmp_path, args, says):
    out = run("grelu-train", *args, cwd=tmp_path, env={"GRELU_DATA_DIR": str(tmp_path / "data")})
    line = one_line(out)
    assert out.returncode == 2 and all(s in line for s in says), (says, out.stderr[-3000:])
    assert list(tmp_path.iterdir()) == [], list(tmp_path.rglob("*"))  # not even an empty runs/


@pytest.mark.parametrize("args,says", [(["sweep=nope"], ["nope", *options("sweep", CONF_DIR.parent / "sweep_conf")]),
                                       (["sweep.storage=bogus://x"], ["bogus://x", "sqlite:///"])])
def test_a_refused_grelu_sweep_is_one_line_exit_2_and_writes_nothing(tmp_path, args, says):
    out = run("grelu-sweep", *args, cwd=tmp_path)
    line = one_line(out)
    assert out.returncode == 2 and all(s in line for s in says), (says, out.stderr[-3000:])
    assert list(tmp_path.iterdir()) == [], list(tmp_path.rglob("*"))  # no sweeps_out/<name>/


LIGHT_REFUSALS = [  # (module, arguments, what the one line says): refused before torch and Lightning are imported
    ("train", ["model.width=abc"], "model.width"),
    ("train", ["model.lr_policy=adaptive"], "model.lr_policy"),  # a choice the classes also refuse
    ("train", ["model=grelu_to_relu", "model.conversion_target=magic"], "model.conversion_target"),
    ("train", ["data=synthetic", "data.d_in=0"], "data.d_in"),
    ("train", ["+callbacks.mine.every_s=1"], "callbacks.mine has no _target_"),
    ("train", ["ckpt_path=/no/such.ckpt"], "does not exist"),
    ("sweep", ["sweep=nope"], "nope"),
    ("sweep", ["sweep.out_dir=/proc/grelu"], "is not writable"),  # after a trial's config is composed and checked
    ("reproduce", ["fig2a", "--seeds", "0"], "--seeds"),
    ("reproduce", ["table9"], "table9"),
    ("report", ["/no/such/runs"], "/no/such/runs"),
    ("eval", [], "ckpt_path"),
    ("bench", ["--steps", "0"], "--steps"),
    ("bench", ["--case", "huge"], "huge"),
]


@pytest.mark.parametrize("module,args,says", LIGHT_REFUSALS, ids=[f"{m} {' '.join(a)}" for m, a, _ in LIGHT_REFUSALS])
def test_a_refused_value_is_told_before_torch_and_lightning_are_imported(tmp_path, module, args, says):
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", f"lightning_grelu.cli.{module}", *args],
                         cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    told = [ln for ln in out.stderr.splitlines() if not ln.startswith("import time:")]
    assert out.returncode == 2 and len(told) == 1 and says in told[0], out.stderr[-3000:]
    imported = {ln.split("|")[-1].strip() for ln in out.stderr.splitlines() if ln.startswith("import time:")}
    assert "argparse" in imported or "omegaconf" in imported  # the import log was read
    assert not imported & {"torch", "lightning", "lightning.pytorch"}, sorted(imported & {"torch", "lightning"})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_ckpt_path_last_without_a_run_dir_is_refused_naming_the_newest_run_of_that_config(tmp_path):
    args = [*TINY, "trainer.max_epochs=3", "callbacks=default", f"paths.root={tmp_path}/runs"]
    first = run("grelu-train", *args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    made = first.stdout.strip().splitlines()[-1]
    refused = run("grelu-train", *args, "ckpt_path=last", cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    line = one_line(refused)
    assert f"the newest run of this config is {made}" in line
    assert [str(p) for p in (tmp_path / "runs").glob("*/*")] == [made]  # no fresh run was started
    again = subprocess.run(["bash", "-c", line.split(f"{made}: ", 1)[1]], cwd=tmp_path, env=ENV, capture_output=True,
                           text=True, timeout=300)  # the command it names, pasted
    assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr


@pytest.mark.slow
def test_a_run_that_diverges_before_its_first_periodic_checkpoint_keeps_its_initial_state(tmp_path):
    import torch

    from lightning_grelu.callbacks.checkpoint_io import verify

    run_dir = tmp_path / "run"
    out = run("grelu-train", *TINY, "model.lr=1e-2", "callbacks=default", f"paths.run_dir={run_dir}", cwd=tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert out.returncode == 3 and summary["status"] == "diverged" and summary["steps"] < 10, out.stderr
    last = run_dir / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 0  # the initial state, the newest good one
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    (last.parent / "last.ckpt.sha256").read_text()  # verified like every checkpoint


@pytest.mark.slow
def test_grelu_eval_on_a_split_the_run_lacks_says_so_even_where_an_earlier_result_exists(tmp_path):
    run_dir = tmp_path / "run"
    trained = run("grelu-train", *TINY, "trainer.max_epochs=2", "callbacks=default", f"paths.run_dir={run_dir}",
                  cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    ckpt = f"ckpt_path={run_dir}/checkpoints/last.ckpt"
    assert run("grelu-eval", ckpt, "splits=[train]", cwd=tmp_path).returncode == 0
    out = run("grelu-eval", ckpt, "splits=[val]", cwd=tmp_path)
    assert out.returncode == 2 and "the data have no val split" in one_line(out), out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("args,noise", [(["model.lr_policy=ntk"], "FutureWarning"),
                                        (["logger=wandb"], "anonymous setting")])
def test_a_run_prints_no_warning_of_the_libraries_it_uses(tmp_path, args, noise):
    out = run("grelu-train", *TINY, "trainer.max_epochs=2", *args, f"paths.run_dir={tmp_path}/run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert noise not in out.stderr and "Warning" not in out.stderr, out.stderr


@pytest.mark.parametrize("cmd", ["grelu-train", "grelu-eval", "grelu-sweep", "grelu-reproduce", "grelu-report",
                                 "grelu-bench"])
def test_help_is_plain_text(tmp_path, cmd):
    out = run(cmd, "--help", cwd=tmp_path)
    assert out.returncode == 0 and cmd in out.stdout and "``" not in out.stdout, out.stdout
