"""A misconfiguration or a fault never burns a study, and every stop of a worker is told truthfully:
real grelu-sweep workers, real signals, real SIGKILL, real read-only and full filesystems.

Classes: a machine that cannot run the trials (GPU preset on CPU, missing data, read-only or full disk)
is refused before any claim or stops the worker leaving the trial claimable; Ctrl-C/SIGTERM return the
trial to the queue and a restart resumes it from its checkpoint; a worker SIGKILLed alone stops its trial
(which resumes later), and a trial that had finished is kept; out_dir and study are bound together."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from test_sweeps import load, sweep
from tests.fixtures import write_fashion_mnist

CKPT = ("sweep.base=['experiment=ackley_small','callbacks=default','callbacks.model_checkpoint.every_n_epochs=50',"
        "'trainer.max_epochs=1000']")
FAST = "sweep.base=['experiment=ackley_small','callbacks=none','trainer.max_epochs=5']"


def args(tmp_path: Path, *extra: str, n: int = 2) -> list[str]:
    return ["sweep=ackley_grid", f"sweep.n_trials={n}", f"sweep.out_dir={tmp_path}/out", *extra]


def study(tmp_path: Path) -> optuna.Study:
    return load(f"sqlite:///{tmp_path}/out/study.db", "ackley_grid")


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def wait_running_with_checkpoint(tmp_path: Path, timeout: float = 300) -> optuna.trial.FrozenTrial:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            running = [t for t in study(tmp_path).get_trials() if t.state == TrialState.RUNNING]
        except Exception:
            running = []
        for t in running:
            if "run_dir" in t.user_attrs and (Path(t.user_attrs["run_dir"]) / "checkpoints" / "last.ckpt").exists():
                return t
        time.sleep(0.2)
    raise AssertionError("no trial got under way")


# -- a machine that cannot run the trials: refused before any claim, nothing written -------------------------

def mount_tmpfs(path: Path, opts: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}): needs root")


@pytest.fixture
def mounts():
    made = []
    yield lambda path, opts: (mount_tmpfs(path, opts), made.append(path))
    for p in made:
        subprocess.run(["umount", str(p)], capture_output=True)


def test_a_gpu_preset_on_a_cpu_node_is_refused_before_any_trial(tmp_path):
    out = sweep(*args(tmp_path, "sweep.trial_overrides=['trainer=gpu']"), cwd=tmp_path)
    assert out.returncode == 2 and "no CUDA GPU" in one_line(out.stderr)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["out_dir", "journal"])
def test_a_read_only_filesystem_is_refused_before_any_trial(tmp_path, mounts, where):
    mounts(tmp_path / "ro", "ro,size=4m")
    extra = [f"sweep.out_dir={tmp_path}/ro/out"] if where == "out_dir" else [f"sweep.storage=journal://{tmp_path}/ro/s.log"]
    out = sweep(*args(tmp_path), *extra, cwd=tmp_path)
    assert out.returncode == 2 and ("not writable" in one_line(out.stderr) or "Read-only" in out.stderr), out.stderr


def test_a_full_disk_is_refused_before_any_trial(tmp_path, mounts):
    mounts(tmp_path / "full", "size=1m")
    out = sweep(*args(tmp_path), f"sweep.out_dir={tmp_path}/full/out", cwd=tmp_path)
    assert out.returncode == 2 and "MiB free" in one_line(out.stderr)


@pytest.mark.slow
def test_missing_data_stops_the_worker_and_the_trial_waits_for_a_machine_that_has_it(tmp_path):
    data = tmp_path / "fmnist"
    base = ("sweep.base=['data=fashion_mnist','data.data_dir=" + str(data) + "','data.limit_train=64',"
            "'callbacks=none','trainer.max_epochs=2']")
    a = args(tmp_path, base)
    out = sweep(*a, cwd=tmp_path)
    assert out.returncode == 2 and "cannot run on this machine" in one_line(out.stderr), out.stderr
    trials = study(tmp_path).get_trials()
    assert [t.state for t in trials] == [TrialState.WAITING, TrialState.WAITING]  # nothing burnt
    write_fashion_mnist(data)  # the cause is fixed
    out = sweep(*a, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert [t.state for t in study(tmp_path).get_trials()] == [TrialState.COMPLETE, TrialState.COMPLETE]


# -- signals: the trial in hand goes back to the queue and resumes -------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signalled_worker_says_so_and_its_trial_resumes_after_a_restart(tmp_path, sig):
    w = sweep(*args(tmp_path, CKPT, n=1), cwd=tmp_path, wait=False)
    t = wait_running_with_checkpoint(tmp_path)
    w.send_signal(sig)
    out, err = w.communicate(timeout=300)
    assert w.returncode == 128 + sig and "back in the queue" in one_line(err), err
    trial = study(tmp_path).get_trials()[0]
    assert trial.state == TrialState.WAITING
    run_dir = Path(t.user_attrs["run_dir"])
    stopped = json.loads((run_dir / "summary.json").read_text())
    assert stopped["status"] == "interrupted" and stopped["epochs"] > 0
    again = sweep(*args(tmp_path, CKPT, n=1), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    trial = study(tmp_path).get_trials()[0]
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["attempts"] == 2
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1001  # one record: the first attempt's epochs, then the rest


@pytest.mark.slow
def test_a_worker_killed_alone_stops_its_trial_which_a_restart_resumes(tmp_path):
    w = sweep(*args(tmp_path, CKPT, n=1), cwd=tmp_path, wait=False)
    t = wait_running_with_checkpoint(tmp_path)
    os.kill(w.pid, signal.SIGKILL)  # the worker only, not its trial process
    w.communicate(timeout=60)
    pid = t.user_attrs["trial_pid"]
    t0 = time.monotonic()
    while Path(f"/proc/{pid}").exists() and time.monotonic() - t0 < 120:  # the orphan stops (parent-death signal)
        time.sleep(0.1)
    run_dir = Path(t.user_attrs["run_dir"])
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    again = sweep(*args(tmp_path, CKPT, n=1), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    trial = study(tmp_path).get_trials()[0]
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["attempts"] == 2
    assert "died" in trial.user_attrs["requeued_because"]


@pytest.mark.slow
def test_a_trial_that_finished_before_its_worker_died_is_kept_not_run_again(tmp_path):
    env_args = args(tmp_path, FAST, n=1)
    w = subprocess.run([str(Path(os.sys.executable).parent / "grelu-sweep"), *env_args], cwd=tmp_path,
                       env={**os.environ, "WANDB_MODE": "disabled", "GRELU_DIE_AT": "tell"},
                       capture_output=True, text=True, timeout=300)
    assert w.returncode == -9
    trial = study(tmp_path).get_trials()[0]
    assert trial.state == TrialState.RUNNING
    summary_path = Path(trial.user_attrs["run_dir"]) / "summary.json"
    finished = json.loads(summary_path.read_text())
    mtime = summary_path.stat().st_mtime_ns
    again = sweep(*env_args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    trial = study(tmp_path).get_trials()[0]
    assert trial.state == TrialState.COMPLETE and trial.values[0] == finished["train/sse"]
    assert summary_path.stat().st_mtime_ns == mtime  # not run again


# -- out_dir and study are bound ---------------------------------------------------------------------------

@pytest.mark.slow
def test_two_studies_never_share_an_out_dir_and_a_lost_study_is_not_recreated_into_it(tmp_path):
    first = sweep(*args(tmp_path, FAST, n=1), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = sorted(p.name for p in (tmp_path / "out" / "trials").iterdir())
    other = sweep("sweep=ackley_width_lr", "sweep.n_trials=1", f"sweep.out_dir={tmp_path}/out", FAST, cwd=tmp_path)
    assert other.returncode == 2 and "holds the trials of study 'ackley_grid'" in one_line(other.stderr)
    (tmp_path / "out" / "study.db").unlink()  # the study's storage is lost
    again = sweep(*args(tmp_path, FAST, n=1), cwd=tmp_path)
    assert again.returncode == 2 and "does not exist" in one_line(again.stderr)
    (tmp_path / "out" / "study.db").write_bytes(b"")  # ... or truncated: an empty file
    again = sweep(*args(tmp_path, FAST, n=1), cwd=tmp_path)
    assert again.returncode == 2 and "has no such study" in one_line(again.stderr), again.stderr
    assert sorted(p.name for p in (tmp_path / "out" / "trials").iterdir()) == before
