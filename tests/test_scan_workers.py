"""Several workers share one width scan: 3 on PostgreSQL and 2 on SQLite make the same atlas table as one worker
on its journal file, each trial run once; a killed worker loses nothing; a signalled one puts its trials back."""

import csv
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState


REPRODUCE = str(Path(sys.executable).parent / "grelu-reproduce")
SMALL = ["atlas", "--profile", "smoke", "--seeds", "2", "--part", "3/32"]  # 2 series of the smoke atlas


def reproduce(tmp: Path, *args, env=None):
    return subprocess.run([REPRODUCE, *SMALL, "--work", str(tmp / "work"), "--results", str(tmp / "results"), *args],
                          cwd=tmp, capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})})


def table(tmp: Path) -> list[dict]:
    return list(csv.DictReader(open(tmp / "results" / "atlas" / "smoke" / "atlas.csv")))


def trials(storage: str, name: str = "atlas-smoke"):
    if storage.startswith("journal:///"):
        path = storage[len("journal:///"):]
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    elif storage.startswith("postgresql://"):
        storage = storage.replace("postgresql://", "postgresql+psycopg://")
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def once_each(ts) -> Counter:
    """Every trial COMPLETE, and each (series, width, seed) exactly once."""
    assert all(t.state == TrialState.COMPLETE for t in ts), Counter(t.state.name for t in ts)
    return Counter(tuple(sorted((k, str(v)) for k, v in t.user_attrs["params"].items())) for t in ts)


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory) -> Path:
    """The scan run undisturbed by one worker on its journal file: the table and trials the others must equal
    (made once for the tests below, which only read it)."""
    one = tmp_path_factory.mktemp("one")
    out = reproduce(one, "--workers", "1")
    assert out.returncode == 0, out.stderr
    return one


@pytest.mark.slow
def test_three_postgres_and_two_sqlite_workers_make_the_one_workers_table(tmp_path, postgres, one_worker):
    one, lite, pg = one_worker, tmp_path / "lite", tmp_path / "pg"
    for d in (lite, pg):
        d.mkdir()
    ref = once_each(trials(f"journal:///{one}/work/atlas/smoke/study.log"))
    assert set(ref.values()) == {1}
    for d, storage, n in ((lite, f"sqlite:///{lite}/s.db", 2), (pg, postgres, 3)):
        out = reproduce(d, "--workers", str(n), "--storage", storage)
        assert out.returncode == 0, out.stderr
        assert out.stdout.count("every series is finished") == n  # every worker worked to the end
        got = once_each(trials(storage))
        assert got == ref  # the same trials, each run once: none duplicated, none lost
        ran = [int(line.split("this worker ran ")[1].split()[0]) for line in out.stdout.splitlines()
               if "this worker ran" in line]
        assert sum(ran) == len(ref) and sum(r > 0 for r in ran) >= 2  # shared, not one doing it all
        assert table(d) == table(one)
        busy = sum(r > 0 for r in ran)  # the README says who ran the trials, read from the study
        assert f"; {busy} worker processes on 1 host ran its trials." in (d / "results/atlas/smoke/README.md").read_text()


@pytest.mark.slow
def test_a_killed_worker_loses_nothing_and_the_next_one_finishes_the_scan(tmp_path, one_worker):
    """GRELU_DIE_AT=tell:5: the worker is SIGKILLed after writing a batch's records, at its 5th report to the study:
    4 trials told, one finished but untold, the rest of its batch RUNNING under a dead pid. The next worker tells
    the finished one from its record and runs the others again; the table equals an undisturbed run's."""
    clean, hit = one_worker, tmp_path / "hit"
    hit.mkdir()
    died = reproduce(hit, "--workers", "1", env={"GRELU_DIE_AT": "tell:5"})
    assert died.returncode != 0
    storage = f"journal:///{hit}/work/atlas/smoke/study.log"
    states = Counter(t.state for t in trials(storage))
    assert states[TrialState.COMPLETE] == 4 and states[TrialState.RUNNING] > 1
    out = reproduce(hit, "--workers", "1")
    assert out.returncode == 0, out.stderr
    ts = trials(storage)
    assert once_each(ts) == once_each(trials(f"journal:///{clean}/work/atlas/smoke/study.log"))
    attempts = Counter(t.user_attrs.get("attempts") for t in ts)
    assert attempts[2] >= 1 and any("died" in t.user_attrs.get("requeued_because", "") for t in ts)
    assert table(hit) == table(clean)


@pytest.mark.slow
def test_a_signalled_worker_puts_its_trials_back_and_a_restart_finishes(tmp_path):
    cmd = [REPRODUCE, *SMALL, "--workers", "1", "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results")]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "work" / "atlas" / "smoke" / "study.log"
    def started() -> bool:
        try:
            return any(t.state == TrialState.COMPLETE for t in trials(f"journal:///{log}"))
        except (KeyError, OSError, ValueError):  # not yet created
            return False

    deadline = time.time() + 300
    while time.time() < deadline and not started():
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert "SIGTERM" in err and len(err.strip().splitlines()) == 1
    assert not [t for t in trials(f"journal:///{log}") if t.state == TrialState.RUNNING]  # none left claimed
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    once_each(trials(f"journal:///{log}"))
