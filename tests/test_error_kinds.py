"""One error taxonomy, driven through every way a job runs: each kind of error (the job's parameters, the
machine, a crash of the suite) through grelu-train, a sweep trial and a reproduction job, as real commands.

| kind | grelu-train | sweep trial | grelu-reproduce |
|---|---|---|---|
| parameter (data.val_size too large) | exit 2, one line | FAIL with its reason, the worker goes on | exit 2, one line |
| machine (a missing data directory) | exit 2, one line | back to WAITING, the worker stops: exit 2, one line | exit 2, one line |
| crash (GRELU_RAISE_AT=train_step) | exit 1, one line `crash: ...` | FAIL `crash: ...`, the worker goes on | exit 1, one line |
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import errno
import signal

import optuna
import pytest
from optuna.trial import TrialState

from lightning_grelu import errors
from lightning_grelu.data.base import DataError
from lightning_grelu.signals import Interrupted
from tests.conftest import compose_cfg
from tests.fixtures import write_fashion_mnist

BIN = Path(sys.executable).parent
CRASH = {"GRELU_RAISE_AT": "train_step"}
SMALL = ["data=fashion_mnist", "data.limit_train=16", "data.batch_size=16", "model.width=16", "model.depth=1",
         "trainer.max_epochs=1", "callbacks=none"]


def bad(kind: str, data: Path, tmp: Path) -> tuple[list[str], dict]:
    """(overrides, environment) that make a job fail with ``kind``."""
    if kind == "parameter":  # the fixture's 60 training images cannot give up 10,000,000 to validation
        return [f"data.data_dir={data}", "data.val_size=10000000"], {}
    if kind == "machine":
        return [f"data.data_dir={tmp / 'no_such_dir'}"], {}
    return [f"data.data_dir={data}"], CRASH


NEEDLE = {"parameter": "data.val_size=10000000 leaves no training images", "machine": "train-images-idx3-ubyte",
          "crash": "crash: InjectedCrash: injected at train_step"}
CODE = {"parameter": 2, "machine": 2, "crash": 1}


# -- the table itself: which exception is which kind, and what each kind becomes -----------------------------

def test_the_kinds_are_distinct():
    assert not issubclass(errors.MachineError, errors.ParameterError)  # a machine error never blames a trial
    assert not issubclass(errors.ParameterError, errors.MachineError)
    assert errors.ConfigError is errors.ParameterError and issubclass(DataError, errors.MachineError)


# (exception, kind, a command's exit code, the trial process's exit code)
EXCEPTIONS = [
    (errors.ConfigError("model.width must be ..."), "parameter", 2, 2),
    (DataError("train-images-idx3-ubyte.gz not found"), "machine", 2, 5),
    (OSError(errno.ENOSPC, "No space left on device"), "machine", 2, 5),
    (OSError(errno.EROFS, "Read-only file system"), "machine", 2, 5),
    (MemoryError(), "machine", 2, 5),
    (type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory"), "machine", 2, 5),
    (type("StorageInternalError", (Exception,), {})("commit failed"), "machine", 2, 5),
    (FileNotFoundError(errno.ENOENT, "no such file"), "crash", 1, 1),  # not the machine's: a path the suite made
    (TypeError("unexpected keyword"), "crash", 1, 1),
    (KeyError("x"), "crash", 1, 1),
    (Interrupted(signal.SIGTERM), "signal", 143, 143),
    (KeyboardInterrupt(), "signal", 130, 130),
]


@pytest.mark.parametrize("exc,kind,code,trial_code", EXCEPTIONS, ids=[f"{type(e).__name__}" for e, *_ in EXCEPTIONS])
def test_each_exception_has_one_kind_one_exit_code_and_one_trial_outcome(exc, kind, code, trial_code):
    assert errors.classify(exc) == kind
    assert errors.exit_code(exc) == code and errors.trial_exit_code(exc) == trial_code
    assert errors.kind_of_exit(trial_code) == kind  # what the sweep worker reads back from the trial's process
    if kind == "crash":
        assert errors.message(exc).startswith(f"crash: {type(exc).__name__}")


@pytest.mark.parametrize("code,kind", [(0, "completed"), (3, "diverged"), (4, "pruned"), (-9, "crash"), (7, "crash")])
def test_the_other_exit_codes_of_a_trial_process(code, kind):
    assert errors.kind_of_exit(code) == kind


@pytest.mark.parametrize("group", ["model", "data"])
def test_every_option_of_a_group_is_built_from_its_own_keys(group):
    """What lets a sweep worker check its trials without importing Lightning: an option that holds only its own
    yaml's keys can be built (checked here against its class, under every option of the other group)."""
    from lightning_grelu.config_check import check_constructors, group_options

    other = "data" if group == "model" else "model"
    for option in group_options(group):
        for with_ in group_options(other):
            check_constructors(compose_cfg(Path("/tmp/unused"), f"{group}={option}", f"{other}={with_}"),
                               trust_files=False)


def test_the_light_checks_choices_are_the_nets_own():
    """config_check refuses a choice before torch is imported; the net refuses the same set of values."""
    from lightning_grelu import config_schema
    from lightning_grelu.nets.grelu_to_relu import TARGETS

    assert config_schema.CONVERSION_TARGETS == TARGETS


def run(argv: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    full = {**os.environ, "WANDB_MODE": "disabled", **env}
    full.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(argv, cwd=cwd, env=full, capture_output=True, text=True, timeout=600)


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


@pytest.fixture
def data(tmp_path) -> Path:
    return write_fashion_mnist(tmp_path / "fmnist")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["parameter", "machine", "crash"])
def test_grelu_train(tmp_path, data, kind):
    overrides, env = bad(kind, data, tmp_path)
    out = run([str(BIN / "grelu-train"), *SMALL, *overrides, f"paths.run_dir={tmp_path / 'run'}"], tmp_path, env)
    assert out.returncode == CODE[kind], out.stderr[-3000:]
    line = one_line(out.stderr)
    assert line.startswith("grelu-train: error: ") and NEEDLE[kind] in line, line
    if kind != "crash":  # refused before anything was written
        assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
    else:  # a crash is recorded, and said to be one
        assert '"status": "failed"' in (tmp_path / "run" / "summary.json").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["parameter", "machine", "crash"])
def test_sweep_trial(tmp_path, data, kind):
    """Two trials: data.val_size 0 and 1 (the parameter case: 0 and 10,000,000)."""
    overrides, env = bad(kind, data, tmp_path)
    values = [0, 10000000] if kind == "parameter" else [0, 1]
    base = [o for o in overrides if not o.startswith("data.val_size")]
    out_dir = tmp_path / "out"
    out = run([str(BIN / "grelu-sweep"), "sweep=ackley_grid", "sweep.n_trials=2", f"sweep.out_dir={out_dir}",
               "sweep.base=[" + ",".join(f"'{o}'" for o in [*SMALL, *base]) + "]",
               f"sweep.space={{data.val_size: {{type: int, low: 0, high: {values[1]}, grid: {values}}}}}"],
              tmp_path, env)
    trials = optuna.load_study(study_name="ackley_grid", storage=f"sqlite:///{out_dir}/study.db").get_trials()
    by_value = {t.params["data.val_size"] if t.params else t.system_attrs.get("fixed_params", {}).get(
        "data.val_size"): t for t in trials}
    if kind == "machine":  # not the trials' fault: both wait for a machine that has the data; the worker stops
        assert out.returncode == 2, out.stderr[-3000:]
        line = one_line(out.stderr)
        assert "cannot run on this machine" in line and NEEDLE[kind] in line, line
        assert [t.state for t in trials] == [TrialState.WAITING, TrialState.WAITING]
        return
    assert out.returncode == 0, out.stderr[-3000:]  # the worker went on after the failed trial
    assert not out.stderr.strip(), out.stderr[-3000:]
    if kind == "parameter":
        bad_trial, good = by_value[10000000], by_value[0]
        assert good.state == TrialState.COMPLETE
        assert bad_trial.state == TrialState.FAIL and NEEDLE[kind] in bad_trial.user_attrs["fail_reason"]
        assert not bad_trial.user_attrs["fail_reason"].startswith(("crash", "trial:"))
    else:
        assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
        assert all(t.user_attrs["fail_reason"].startswith(NEEDLE[kind]) for t in trials), trials


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["parameter", "machine", "crash"])
def test_reproduction_job(tmp_path, data, kind):
    overrides, env = bad(kind, data, tmp_path)
    flags = [a for o in [*SMALL[1:], *overrides] for a in ("--override", o)]
    out = run([str(BIN / "grelu-reproduce"), "table2-fmnist", "--results", str(tmp_path / "results"),
               "--work", str(tmp_path / "work"), *flags], tmp_path, env)
    assert out.returncode == CODE[kind], out.stderr[-3000:]
    line = one_line(out.stderr)
    assert line.startswith("grelu-reproduce: error: table2-fmnist: ") and NEEDLE[kind] in line, line
    assert not (tmp_path / "results").exists()  # no results from a stopped target
    if kind != "crash":  # refused before any job ran
        assert not [p for p in (tmp_path / "work").rglob("*") if p.is_file() and p.name != ".lock"]
