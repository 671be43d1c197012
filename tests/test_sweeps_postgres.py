"""PostgreSQL for real: a throwaway server (Debian's postgresql, installed by .ci/run; the ``postgres`` fixture of
tests/postgres_server.py, a database per test): two workers, one killed with SIGKILL mid-trial (its trial is
retried, nothing completed is lost), four workers at once, and bounded timeouts."""

import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from test_sweeps import GRELU_SWEEP, claims_race, four_workers_share_one_grid_exactly, kill_mid_trial, sweep


@pytest.mark.slow
def test_postgres_two_workers_one_killed_mid_trial_is_run_again(tmp_path, postgres):
    url = postgres
    args = ["sweep=ackley_grid", "sweep.n_trials=4", f"sweep.storage={url}", f"sweep.out_dir={tmp_path}/out",
            "sweep.base=['experiment=ackley_small','callbacks=none','trainer.max_epochs=5']"]
    storage_url = url.replace("postgresql://", "postgresql+psycopg://")
    first = sweep(*args, cwd=tmp_path, wait=False)
    deadline, states = time.time() + 300, []
    while time.time() < deadline:
        try:
            states = [t.state for t in optuna.load_study(study_name="ackley_grid", storage=storage_url).get_trials()]
        except Exception:
            states = []
        if states.count(TrialState.COMPLETE) >= 1 and TrialState.RUNNING in states:
            break
        time.sleep(0.3)
    assert TrialState.RUNNING in states, "worker 1 never started a second trial"
    study = optuna.load_study(study_name="ackley_grid", storage=storage_url)
    done_before = {t.number: t.values for t in study.get_trials() if t.state == TrialState.COMPLETE}
    killed = next(t for t in study.get_trials() if t.state == TrialState.RUNNING)
    finished_first = kill_mid_trial(first, killed)
    workers = [sweep(*args, cwd=tmp_path, wait=False) for _ in range(2)]
    outs = [w.communicate(timeout=600) for w in workers]
    assert all(w.returncode == 0 for w in workers), "\n".join(o[1][-3000:] for o in outs)
    trials = optuna.load_study(study_name="ackley_grid", storage=storage_url).get_trials()
    by_number = {t.number: t for t in trials}
    again = by_number[killed.number]  # a dead worker on this host: its trial went back to the queue
    assert again.state == TrialState.COMPLETE and again.user_attrs["attempts"] == (1 if finished_first else 2)
    assert again.params == killed.params and len(trials) == 4  # the same grid point, run again, no copy
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4 and len({tuple(sorted(t.params.items())) for t in complete}) == 4
    for number, values in done_before.items():  # nothing completed was lost
        assert by_number[number].state == TrialState.COMPLETE and by_number[number].values == values


@pytest.mark.slow
def test_postgres_four_concurrent_workers_run_each_grid_point_exactly_once(tmp_path, postgres):
    storage_url = postgres.replace("postgresql://", "postgresql+psycopg://")
    four_workers_share_one_grid_exactly(postgres, tmp_path,
                                        lambda: optuna.load_study(study_name="ackley_grid", storage=storage_url))


def test_postgres_concurrent_claims_never_hand_one_trial_to_two_workers(tmp_path, postgres):
    claims_race(postgres, tmp_path)


# -- no hang, no slow failure: bounded timeouts, permanent errors known by the driver's classes -------------

REPORT = str(Path(os.sys.executable).parent / "grelu-report")


def timed(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "WANDB_MODE": "disabled", **(env or {})})
    return out, time.monotonic() - t0


def postmaster_pid(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        data = conn.execute("select setting from pg_settings where name = 'data_directory'").fetchone()[0]
    return int((Path(data) / "postmaster.pid").read_text().split()[0])


def refused_url() -> str:
    from postgres_server import free_port

    return f"postgresql://postgres@127.0.0.1:{free_port()}/optuna"  # nothing listens there


@pytest.mark.slow
def test_a_server_that_accepts_and_never_answers_times_out_in_one_line(tmp_path, postgres):
    """Bounded by sweep.db_timeout_s=3: each command takes at most ~3 s more than the same command refused at once
    (a port nothing listens on) just before; the default 30 s, or the kernel's TCP timeouts, would take far longer.
    A bound relative to that start-up, not an absolute one, holds on a loaded machine too."""
    sweep_args = ["sweep=ackley_grid", "sweep.db_timeout_s=3", f"sweep.out_dir={tmp_path}/out"]
    base_sweep = timed([GRELU_SWEEP, *sweep_args, f"sweep.storage={refused_url()}"], tmp_path)[1]
    base_report = timed([REPORT, "--study", "ackley_grid", "--storage", refused_url()], tmp_path)[1]
    pid = postmaster_pid(postgres)
    os.kill(pid, signal.SIGSTOP)  # the kernel still accepts connections; the server answers nothing
    try:
        out, took = timed([GRELU_SWEEP, *sweep_args, f"sweep.storage={postgres}"], tmp_path)
        assert out.returncode == 2 and took < base_sweep + 20, (took, base_sweep, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and "no answer within 3 s" in out.stderr, out.stderr
        out, took = timed([REPORT, "--study", "ackley_grid", "--storage", postgres], tmp_path,
                          env={"GRELU_DB_TIMEOUT_S": "3"})
        assert out.returncode == 2 and took < base_report + 20, (took, base_report, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize("what", ["refused-port", "unknown-database"])
def test_permanent_errors_fail_at_once_in_one_line(tmp_path, postgres, what):
    """"permanent error" is said only when the first try raised it (a transient error is retried with back-off and
    then says "still failing after N tries"): that, not a wall-clock bound a loaded machine can break, shows it was
    not retried."""
    url = refused_url() if what == "refused-port" else postgres.rsplit("/", 1)[0] + "/no_such_db"
    out, _ = timed([GRELU_SWEEP, "sweep=ackley_grid", f"sweep.storage={url}", f"sweep.out_dir={tmp_path}/out"],
                   tmp_path)
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "permanent error" in out.stderr, out.stderr
    assert not (tmp_path / "out").exists()


def test_a_database_error_optuna_wraps_is_retried_when_transient_and_told_by_its_own_words_when_not(tmp_path):
    """Optuna wraps a database error in a commit as StorageInternalError ("An exception is raised during the
    commit..."): four workers opening one SQLite study together ended in that line, exit 2. The database's own
    error decides: a lock held by another worker is retried; a permanent one is told in its own words."""
    import sqlite3

    import optuna
    import sqlalchemy.exc

    from lightning_grelu.sweeps.storage import StorageError, retrying

    db = tmp_path / "s.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")  # another worker holds the write lock
    try:
        sqlite3.connect(db, timeout=0).execute("SELECT * FROM t")
    except sqlite3.OperationalError as e:
        locked = e
    holder.execute("ROLLBACK")
    (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
    try:
        sqlite3.connect(tmp_path / "junk.db").execute("SELECT * FROM sqlite_master")
    except sqlite3.DatabaseError as e:
        junk = e

    def wrapped(orig):
        try:
            raise sqlalchemy.exc.OperationalError("SELECT", {}, orig)
        except sqlalchemy.exc.SQLAlchemyError as e:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from e

    calls = []

    def open_study():
        calls.append(1)
        if len(calls) < 3:
            wrapped(locked)
        return "study"

    assert retrying(open_study, "study 'x'", timeout_s=10) == "study" and len(calls) == 3
    with pytest.raises(StorageError, match="file is not a database"):
        retrying(lambda: wrapped(junk), "study 'x'", timeout_s=10)
