"""gpu_check's steps: each one a subprocess with its own time bound, its output kept in a log file.

A step runs in a process group of its own, so that a step stopped at its bound takes its children
with it (pytest's trainer processes, grelu-bench's reference loop): nothing it started keeps the GPU
or a pipe, and the next step starts at once.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Step:
    name: str
    bound: int  # seconds
    gpu: bool  # needs a CUDA GPU (skipped, one line, in a rehearsal)
    argv: list[str] = field(default_factory=list)
    why: str = ""  # what the step proves, for the log


@dataclass
class Outcome:
    step: Step
    status: str  # ok, FAIL, TIME (stopped at its bound), skip (no GPU), not run (the budget was spent)
    seconds: float = 0.0
    detail: str = ""

    def line(self) -> str:
        head = {"ok": "ok  ", "FAIL": "FAIL", "TIME": "TIME", "skip": "skip", "not run": "----"}[self.status]
        return f"{head} {self.seconds:6.1f} s  {self.step.name:28s} {self.detail}".rstrip()


def last_line(log: Path, start: int) -> str:
    """The last non-empty line the step wrote (its error, usually)."""
    with open(log, "rb") as f:
        f.seek(start)
        lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "(no output)"


def run_step(step: Step, bound: float, env: dict, cwd: Path, log: Path, grace: float = 10.0) -> Outcome:
    """Run ``step.argv`` for at most ``bound`` seconds, appending its stdout and stderr to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as f:
        f.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}  bound {bound:.0f} s  "
                f"{shlex.join(step.argv)}\n".encode())
        f.flush()  # the header before the child's output, which goes to the file descriptor directly
        start = f.tell()
        t = time.perf_counter()
        proc = subprocess.Popen(step.argv, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = proc.wait(timeout=bound)
        except subprocess.TimeoutExpired:
            stop_group(proc, grace)
            seconds, last = time.perf_counter() - t, last_line(log, start)
            f.write(f"=== stopped at its {bound:.0f} s bound\n".encode())
            return Outcome(step, "TIME", seconds, f"stopped at its {bound:.0f} s bound; last output: {last}")
        seconds = time.perf_counter() - t
    if rc != 0:
        return Outcome(step, "FAIL", seconds, f"exit {rc}: {last_line(log, start)}")
    return Outcome(step, "ok", seconds)


def stop_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the step's whole process group, SIGKILL to what is left of it after ``grace`` seconds."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _alive(proc.pid):
            return
        time.sleep(0.2)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
