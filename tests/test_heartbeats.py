"""Heartbeats on PostgreSQL never take a trial from a live worker or a dead worker's trial from its checkpoint:
a local dead worker's trial goes back to the queue under its own number however long the kill took to notice, a
trial put back and claimed again is not stale, and a width scan's batch keeps its heartbeats until the last of
its trials is told. Run with a short heartbeat (1 s, grace 3 s) so the grace period passes within a test."""

from __future__ import annotations

import subprocess
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from lightning_grelu.sweeps import storage as storage_mod
from lightning_grelu.sweeps import worker


@pytest.fixture
def short_heartbeat(monkeypatch):
    monkeypatch.setattr(storage_mod, "HEARTBEAT_S", 1)  # grace 3 s; the keeper beats about every second
    return 3.0


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def study_of(url: str, n: int):
    storage = storage_mod.make_storage(url, retry_dead=True, timeout_s=30, create=True)
    study = optuna.create_study(study_name="hb", storage=storage)
    for _ in range(n):
        study.enqueue_trial({}, skip_if_exists=False)
    return study, storage


def test_a_dead_local_workers_trial_is_requeued_under_its_number_not_failed_as_stale(postgres, short_heartbeat):
    study, storage = study_of(postgres, 1)
    trial = worker.claim(study, storage)
    storage.record_heartbeat(trial._trial_id)  # its worker's keeper beat while the worker lived
    storage.set_trial_user_attr(trial._trial_id, "worker", f"{worker.socket.gethostname()}:{dead_pid()}")
    time.sleep(short_heartbeat + 1.5)  # the kill is noticed after the grace period
    worker.fail_dead_trials(study, storage)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.WAITING]  # not FAIL plus a new trial that starts over
    assert "died" in trials[0].user_attrs["requeued_because"]

    again = worker.claim(study, storage)  # claimed again: its old heartbeat must not make it stale
    assert again is not None and again.number == trial.number
    worker.fail_dead_trials(study, storage)  # another worker looks at once
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING]


@pytest.mark.slow
def test_a_scan_batch_keeps_its_heartbeats_until_its_last_trial_is_told(postgres, short_heartbeat, tmp_path,
                                                                      monkeypatch):
    from lightning_grelu.scan import engine, grid, runner
    from lightning_grelu.scan.spec import Scan

    train, write = runner.run, runner.write_record

    def train_longer(*args, **kwargs):  # long enough for the keeper to beat
        time.sleep(2.5)
        return train(*args, **kwargs)

    def write_slowly(*args, **kwargs):  # a large batch's records on a busy disk
        time.sleep(1.5)
        return write(*args, **kwargs)

    monkeypatch.setattr(runner, "run", train_longer)
    monkeypatch.setattr(runner, "write_record", write_slowly)
    scan = Scan(name="hb-scan", base=["callbacks=none", "model.lr_policy=ntk", "trainer.max_epochs=20",
                                      "eps=1e-4", "eps_relative=true"],
                series=[{"data": "ackley", "data.n": 8, "data.d": 4, "model": "relu", "model.depth": 2}],
                seeds=[0, 1], rule=grid.Rule(fixed=(8, 16, 24)), out_dir=str(tmp_path / "scan"), storage=postgres)
    stop, failed = threading.Event(), []

    def rival():  # another worker, on another host: it knows dead workers only by their heartbeats
        other = optuna.load_study(study_name="hb-scan", storage=storage_mod.make_storage(
            postgres, retry_dead=True, timeout_s=30, create=False))
        while not stop.wait(0.2):
            before = {t.number for t in other.get_trials(states=(TrialState.FAIL,))}
            optuna.storages.fail_stale_trials(other)
            failed.extend({t.number for t in other.get_trials(states=(TrialState.FAIL,))} - before)

    eng = engine.Engine(scan, progress=lambda line: None)
    thread = threading.Thread(target=rival, daemon=True)
    thread.start()
    try:
        ran = eng.run()
    finally:
        stop.set()
        thread.join()
    assert failed == []
    trials = optuna.load_study(study_name="hb-scan", storage=storage_mod.make_storage(
        postgres, retry_dead=True, timeout_s=30, create=False)).get_trials()
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    assert ran["trials"] == 6
