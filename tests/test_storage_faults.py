"""A study's storage that fails under running workers (deleted, truncated, replaced, its disk full): one line
naming the storage and what to do, exit 2, no traceback (heartbeat threads included), nothing completed lost,
and the trial in hand resumable. Real grelu-sweep workers, real files, a real full filesystem.

Before: a deleted SQLite file was not noticed (the worker wrote on into the deleted file and exited 0: every
result lost); a truncated one ended in a 100-190 line StorageInternalError traceback."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from test_sweep_faults import CKPT, args, mounts, one_line  # noqa: F401  (mounts: a fixture)
from test_sweeps import load, sweep

pytestmark = pytest.mark.slow


@pytest.fixture
def workers():
    """Workers a test started; those still running when it ends (a failed test) are killed with their trials."""
    started = []
    yield lambda w: started.append(w) or w
    for w in started:
        if w.poll() is None:
            os.killpg(w.pid, signal.SIGKILL)  # its own session: the worker and its trial process
            w.communicate()


def wait_for(check, timeout: float = 300, what: str = "the condition"):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            got = check()
        except Exception:  # the storage is being written: look again
            got = None
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def in_hand(url: str):
    """A RUNNING trial whose run has a checkpoint (so that stopping it leaves something to resume)."""
    def check():
        for t in load(url, "ackley_grid").get_trials():
            if t.state == TrialState.RUNNING and "run_dir" in t.user_attrs and (
                    Path(t.user_attrs["run_dir"]) / "checkpoints" / "last.ckpt").exists():
                return t
        return None
    return check


def finished_and_in_hand(url: str):
    def check():
        trials = load(url, "ackley_grid").get_trials()
        if any(t.state == TrialState.COMPLETE for t in trials):
            return in_hand(url)()
        return None
    return check


def summary(trial) -> dict:
    return json.loads((Path(trial.user_attrs["run_dir"]) / "summary.json").read_text())


def stopped_in_one_line(worker: subprocess.Popen, *needles: str) -> str:
    out, err = worker.communicate(timeout=300)
    assert worker.returncode == 2, (worker.returncode, err[-3000:])
    line = one_line(err)
    assert line.startswith("grelu-sweep: error: the study's storage ") and all(n in line for n in needles), line
    return line


SHORT = "sweep.space={trainer.max_epochs: {type: int, low: 300, high: 301, grid: [300, 301]}}"  # seconds each
# two trials, a short one (sweep.seed 0 runs it first) and a long one
SHORT_THEN_LONG = "sweep.space={trainer.max_epochs: {type: int, low: 100, high: 3000, grid: [100, 3000]}}"
# two trials neither of which can finish while the test waits for the other one to start (minutes each)
BOTH_LONG = "sweep.space={trainer.max_epochs: {type: int, low: 100000, high: 100001, grid: [100000, 100001]}}"


def test_a_deleted_study_file_is_one_line_and_a_restored_backup_resumes_the_trial_in_hand(tmp_path, workers):
    url = f"sqlite:///{tmp_path}/out/study.db"
    db = tmp_path / "out" / "study.db"
    a = args(tmp_path, CKPT, SHORT_THEN_LONG, n=2)
    w = workers(sweep(*a, cwd=tmp_path, wait=False))
    held = wait_for(finished_and_in_hand(url), what="one trial finished and the next under way")
    done = next(t for t in load(url, "ackley_grid").get_trials() if t.state == TrialState.COMPLETE)
    backup = tmp_path / "backup.db"
    with sqlite3.connect(db) as src, sqlite3.connect(backup) as dst:  # what a backup of a live study holds
        src.backup(dst)
    db.unlink()
    line = stopped_in_one_line(w, f"{db} was deleted", f"trial {held.number} stopped with its checkpoint")
    assert "Restore the storage" in line
    stopped = summary(held)
    assert stopped["status"] == "interrupted" and stopped["epochs"] > 0  # it stopped at an epoch's end
    finished = json.loads((Path(done.user_attrs["run_dir"]) / "summary.json").read_text())
    mtime = (Path(done.user_attrs["run_dir"]) / "summary.json").stat().st_mtime_ns
    shutil.copy(backup, db)  # restored
    again = sweep(*a, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    trials = {t.number: t for t in load(url, "ackley_grid").get_trials()}
    assert [t.state for t in trials.values()] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[done.number].values[0] == finished["train/sse"]  # the finished trial: kept, not run again
    assert (Path(done.user_attrs["run_dir"]) / "summary.json").stat().st_mtime_ns == mtime
    resumed = trials[held.number]
    assert resumed.user_attrs["attempts"] == 2  # the trial in hand went on from its checkpoint
    assert summary(resumed)["status"] == "completed" and summary(resumed)["attempts"] == 2
    assert len((Path(resumed.user_attrs["run_dir"]) / "metrics.csv").read_text().splitlines()) == 3001


def test_a_truncated_study_file_is_one_line(tmp_path, workers):
    url = f"sqlite:///{tmp_path}/out/study.db"
    w = workers(sweep(*args(tmp_path, CKPT, n=1), cwd=tmp_path, wait=False))
    held = wait_for(in_hand(url), what="a trial under way")
    with open(tmp_path / "out" / "study.db", "r+b") as f:
        f.truncate(0)
    stopped_in_one_line(w, "study.db was truncated", f"trial {held.number} stopped with its checkpoint")
    assert summary(held)["status"] == "interrupted"
    assert (Path(held.user_attrs["run_dir"]) / "checkpoints" / "last.ckpt").exists()


def test_a_study_file_replaced_by_another_is_one_line(tmp_path, workers):
    url = f"sqlite:///{tmp_path}/out/study.db"
    w = workers(sweep(*args(tmp_path, CKPT, n=1), cwd=tmp_path, wait=False))
    wait_for(in_hand(url), what="a trial under way")
    other = tmp_path / "other.db"
    with sqlite3.connect(tmp_path / "out" / "study.db") as src, sqlite3.connect(other) as dst:
        src.backup(dst)
    other.replace(tmp_path / "out" / "study.db")  # e.g. a backup restored over a study in use
    stopped_in_one_line(w, "study.db was replaced by another file")


def test_a_deleted_journal_stops_both_workers_in_one_line_each(tmp_path, workers):
    log = tmp_path / "study.log"
    url = f"journal://{log}"
    # both trials long: with 3000 epochs the first could finish before the second had its checkpoint, and its
    # worker then rightly said "had finished" (seen under load in a full run)
    a = args(tmp_path, CKPT, BOTH_LONG, f"sweep.storage={url}", n=2)
    started = [workers(sweep(*a, cwd=tmp_path, wait=False))]
    wait_for(lambda: log.exists() and load(url, "ackley_grid").user_attrs.get("n_trials"), what="the study")
    started.append(workers(sweep(*a, cwd=tmp_path, wait=False)))
    wait_for(lambda: sum(t.state == TrialState.RUNNING and (Path(t.user_attrs.get("run_dir", "/nowhere")) /
                                                              "checkpoints" / "last.ckpt").exists()
                         for t in load(url, "ackley_grid").get_trials()) == 2, what="both trials under way")
    log.unlink()
    for w in started:
        stopped_in_one_line(w, f"{log} was deleted", "stopped with its checkpoint")
    assert not log.exists()  # nothing re-made it (an append would have started a journal holding only its tail)


def fill(disk: Path) -> Path:
    """Fill a filesystem to its last byte (a read-only remount is refused while a database is open on it)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 20, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    return filler


def test_a_journal_whose_disk_fills_under_a_worker_is_one_line_and_nothing_is_lost_when_freed(tmp_path, mounts,
                                                                                             workers):
    disk = tmp_path / "disk"
    mounts(disk, "size=16m")
    url = f"journal://{disk}/study.log"
    a = args(tmp_path, CKPT, f"sweep.storage={url}", SHORT, n=2)
    w = workers(sweep(*a, cwd=tmp_path, wait=False))
    held = wait_for(in_hand(url), what="a trial under way")
    filler = fill(disk)  # the next write to the journal (this trial's result, or the next claim) cannot be made
    stopped_in_one_line(w, url, "No space left on device", "had finished")
    finished = summary(held)
    assert finished["status"] == "completed"
    mtime = (Path(held.user_attrs["run_dir"]) / "summary.json").stat().st_mtime_ns
    filler.unlink()  # space again
    again = sweep(*a, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    trials = load(url, "ackley_grid").get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    told = next(t for t in trials if t.number == held.number)
    assert told.values[0] == finished["train/sse"]  # told from its record, not run again
    assert (Path(held.user_attrs["run_dir"]) / "summary.json").stat().st_mtime_ns == mtime


def test_a_width_scans_journal_deleted_under_its_workers_is_one_line(tmp_path, workers):
    """The width-search engine (grelu-reproduce's atlas, two local workers): each worker notices, the command
    tells it once."""
    work = tmp_path / "work" / "atlas" / "smoke"
    cmd = [str(Path(sys.executable).parent / "grelu-reproduce"), "atlas", "--profile", "smoke", "--seeds", "2",
           "--part", "1/8", "--workers", "2", "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results")]
    w = workers(subprocess.Popen(cmd, cwd=tmp_path, env={**os.environ, "WANDB_MODE": "disabled"}, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True))
    wait_for(lambda: len(list((work / "trials").glob("*"))) >= 16, what="the scan under way")
    (work / "study.log").unlink()
    out, err = w.communicate(timeout=300)
    assert w.returncode == 2, (w.returncode, err[-3000:])
    line = one_line(err)
    assert line.startswith("grelu-reproduce: error: atlas: a scan worker stopped: the study's storage ") and (
        f"{work / 'study.log'} was deleted" in line), line
    assert not (tmp_path / "results").exists() and not (work / "study.log").exists()
