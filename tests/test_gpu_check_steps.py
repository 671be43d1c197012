"""gpu_check's bounded steps, with real processes: a step past its bound is stopped with every process it
started (one that ignores SIGTERM too), and reported as not finished; a failing step names its last line."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _steps import Step, run_step  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # bounds in seconds: one after another (conftest.together)

# the step starts a child that ignores SIGTERM, writes its pid, then both sleep
STUBBORN = """import os, signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); '
                          'print(flush=True); time.sleep(120)'], stdout=subprocess.PIPE)
child.stdout.readline()
open(sys.argv[1], 'w').write(str(child.pid))
print('child started', flush=True)
time.sleep(120)"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie not yet reaped by init is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_step_past_its_bound_is_stopped_with_its_children(tmp_path):
    pidfile = tmp_path / "pid"
    step = Step("stubborn", 30, False, [sys.executable, "-c", STUBBORN, str(pidfile)])
    t = time.perf_counter()
    out = run_step(step, 3.0, dict(os.environ), tmp_path, tmp_path / "logs" / "stubborn.log", grace=1.0)
    assert time.perf_counter() - t < 20
    assert out.status == "TIME" and "stopped at its 3 s bound" in out.detail and "child started" in out.detail
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child)
    assert "stopped at its 3 s bound" in (tmp_path / "logs" / "stubborn.log").read_text()


def test_a_failing_step_names_its_exit_code_and_last_line(tmp_path):
    step = Step("fails", 30, False, [sys.executable, "-c", "import sys; print('working'); sys.exit('no such thing')"])
    out = run_step(step, 30, dict(os.environ), tmp_path, tmp_path / "fails.log")
    assert out.status == "FAIL" and out.detail == "exit 1: no such thing"
    assert out.line().startswith("FAIL") and "fails" in out.line()
