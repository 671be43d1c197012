"""PostgreSQL for real: a throwaway server (Debian's postgresql, installed by .ci/run): two workers, one
killed with SIGKILL mid-trial (its trial is retried, nothing completed is lost), and four workers at once."""

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from test_sweeps import GRELU_SWEEP, claims_race, four_workers_share_one_grid_exactly, kill_mid_trial, sweep

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres(tmp_path):
    if not PG_BIN:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries missing: .ci/run must install Debian's postgresql")
        pytest.skip("needs Debian's postgresql (apt-get install postgresql)")
    # pytest's temp dirs are root-only; the server's user needs its own readable place
    home = Path(tempfile.mkdtemp(prefix="grelu-pg-"))
    os.chmod(home, 0o755)
    bin_dir, data, port = PG_BIN[-1], home / "data", free_port()
    data.mkdir()
    as_user = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(data, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True, timeout=120)  # noqa: E731
    run(f"{bin_dir}/initdb", "-D", str(data), "-U", "postgres", "--auth=trust")
    run(f"{bin_dir}/pg_ctl", "-D", str(data), "-l", str(data / "log"), "-w", "-o",
        f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start")
    try:
        run(f"{bin_dir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "optuna")
        yield f"postgresql://postgres@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run([*as_user, f"{bin_dir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(home, ignore_errors=True)


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


@pytest.mark.slow
def test_a_server_that_accepts_and_never_answers_times_out_in_one_line(tmp_path, postgres):
    pid = postmaster_pid(postgres)
    os.kill(pid, signal.SIGSTOP)  # the kernel still accepts connections; the server answers nothing
    try:
        out, took = timed([GRELU_SWEEP, "sweep=ackley_grid", f"sweep.storage={postgres}", "sweep.db_timeout_s=3",
                           f"sweep.out_dir={tmp_path}/out"], tmp_path)
        assert out.returncode == 2 and took < 30, (took, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and "no answer within 3 s" in out.stderr, out.stderr
        out, took = timed([REPORT, "--study", "ackley_grid", "--storage", postgres], tmp_path,
                          env={"GRELU_DB_TIMEOUT_S": "3"})
        assert out.returncode == 2 and took < 30 and len(out.stderr.strip().splitlines()) == 1, (took, out.stderr)
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize("what", ["refused-port", "unknown-database"])
def test_permanent_errors_fail_at_once_in_one_line(tmp_path, postgres, what):
    from test_sweeps_postgres import free_port as fp

    url = (f"postgresql://postgres@127.0.0.1:{fp()}/optuna" if what == "refused-port"
           else postgres.rsplit("/", 1)[0] + "/no_such_db")
    out, took = timed([GRELU_SWEEP, "sweep=ackley_grid", f"sweep.storage={url}", f"sweep.out_dir={tmp_path}/out"],
                      tmp_path)
    assert out.returncode == 2 and took < 15, (took, out.stderr)
    assert len(out.stderr.strip().splitlines()) == 1 and "permanent error" in out.stderr, out.stderr
