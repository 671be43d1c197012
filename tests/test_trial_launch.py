"""A sweep trial forked from its worker is the process ``python -m lightning_grelu.sweeps.run_trial`` would be
(sweeps/launch.py): its session, parent-death signal, signal handlers, streams, argv, environment and exit, and
the same trained bits."""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_grelu import faults
from lightning_grelu.sweeps import launch

PR_GET_PDEATHSIG = 2


def probe(argv: list[str]) -> int:
    """Runs in the forked child: writes what it sees to ARGV[0]/facts.json."""
    from lightning.fabric.strategies.launchers.subprocess_script import _basic_subprocess_cmd

    out = Path(argv[0])
    sig = ctypes.c_int()
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_GET_PDEATHSIG, ctypes.byref(sig))
    atexit.register(lambda: (out / "child_atexit").write_text("ran"))
    print("to stdout, which the worker discards")
    print("first line\nthe reason", file=sys.stderr)
    facts = {
        "own_session": os.getsid(0) == os.getpid(), "ppid": os.getppid(), "pdeathsig": sig.value,
        "cmd": _basic_subprocess_cmd(), "stdin": sys.stdin.buffer.read(),
        "sigterm_default": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
        "sigint_default": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
        "blocked": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
        "env_given": os.environ.get("GRELU_TEST_GIVEN"), "env_dropped": os.environ.get("GRELU_TEST_DROPPED"),
        "faults_seen": dict(faults._seen), "comm": Path("/proc/self/comm").read_text().strip(),
    }
    (out / "facts.json").write_text(json.dumps({k: (v.decode() if isinstance(v, bytes) else v)
                                                for k, v in facts.items()}))
    return 7


def test_a_forked_trial_is_the_process_the_fresh_command_would_be(tmp_path, monkeypatch):
    monkeypatch.setenv("GRELU_TEST_DROPPED", "the worker's, not given to the trial")
    monkeypatch.setitem(faults._seen, "tell", 1)  # the worker's own count of a crash point
    parent_ran = tmp_path / "worker_atexit"
    handler = atexit.register(lambda: parent_ran.write_text("ran"))
    try:
        env = {k: v for k, v in os.environ.items() if k != "GRELU_TEST_DROPPED"} | {"GRELU_TEST_GIVEN": "yes"}
        argv = [str(tmp_path), "model=relu", "trainer.max_epochs=1"]
        proc = launch.ForkedTrial(argv, env, main=probe)
        out, err = proc.communicate(timeout=120)
    finally:
        atexit.unregister(handler)
    assert proc.returncode == 7
    assert out == "" and err.splitlines() == ["first line", "the reason"]  # stdout discarded, stderr whole
    facts = json.loads((tmp_path / "facts.json").read_text())
    # the command the worker runs when it does not fork: Lightning's DDP launcher re-runs exactly it
    assert facts["cmd"] == [sys.executable, "-m", "lightning_grelu.sweeps.run_trial", *argv]
    assert facts["own_session"] and facts["ppid"] == os.getpid() and facts["pdeathsig"] == signal.SIGTERM
    assert facts["sigterm_default"] and facts["sigint_default"] and facts["blocked"] == []
    assert facts["stdin"] == ""
    assert facts["env_given"] == "yes" and facts["env_dropped"] is None
    assert facts["faults_seen"] == {}
    assert facts["comm"] == "grelu-trial"  # what top shows
    assert (tmp_path / "child_atexit").read_text() == "ran" and not parent_ran.exists()
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == set()  # the worker's mask is back


def crash(argv):
    raise RuntimeError("a bug in the trial")


def interrupted(argv):
    raise KeyboardInterrupt


def hang(argv):
    import time

    time.sleep(600)
    return 0


def test_a_forked_trials_crash_and_kill_reach_the_worker_as_a_fresh_process_s_would(tmp_path):
    proc = launch.ForkedTrial([str(tmp_path)], dict(os.environ), main=crash)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and err.strip().splitlines()[-1] == "RuntimeError: a bug in the trial"
    proc = launch.ForkedTrial([str(tmp_path)], dict(os.environ), main=interrupted)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGINT and err.strip().endswith("KeyboardInterrupt")  # as CPython ends on it
    proc = launch.ForkedTrial([str(tmp_path)], dict(os.environ), main=hang)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.communicate(timeout=0.5)
    assert proc.poll() is None
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    proc.send_signal(signal.SIGTERM)  # reaped: nothing is signalled (its pid may belong to another process)


@pytest.mark.slow
def test_forked_and_fresh_trial_processes_record_the_same_bits(tmp_path):
    """The same two grid trials, forked from a worker that has imported torch and Lightning, and each in a
    fresh interpreter (GRELU_TRIAL_FORK=0): the same losses bit for bit, the same records."""
    grelu_sweep = str(Path(sys.executable).parent / "grelu-sweep")
    summaries = {}
    for fork in ("1", "0"):
        out = tmp_path / f"fork{fork}"
        done = subprocess.run([grelu_sweep, "sweep=ackley_grid", "sweep.n_trials=2", f"sweep.out_dir={out}",
                               "sweep.base=['experiment=ackley_small','trainer.max_epochs=20']"],
                              env={**os.environ, "WANDB_MODE": "disabled", "GRELU_TRIAL_FORK": fork},
                              capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        runs = sorted((out / "trials").iterdir())
        assert len(runs) == 2
        summaries[fork] = [json.loads((r / "summary.json").read_text()) for r in runs]
        for r in runs:
            assert (r / "checkpoints" / "last.ckpt").exists()
            assert len((r / "metrics.csv").read_text().splitlines()) == 21
    for forked, fresh in zip(summaries["1"], summaries["0"]):
        assert forked["status"] == fresh["status"] == "completed"
        assert forked["train/sse"] == fresh["train/sse"]  # bit for bit (JSON keeps a float's shortest repr)
        assert same(forked) == same(fresh)


def same(summary: dict) -> dict:
    """What does not depend on where and when the run ran (its folder, clock, free memory, probe speed)."""
    return {k: v for k, v in summary.items() if k != "run_dir" and not k.startswith(("probe/", "memory/available"))
            and "time" not in k and not k.endswith("_s")}


def test_trials_start_fresh_when_asked_or_when_the_worker_holds_a_cuda_context(monkeypatch):
    import torch

    monkeypatch.delenv("GRELU_TRIAL_FORK", raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert launch.forking()
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)  # a forked child could not use it
    assert not launch.forking()
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setenv("GRELU_TRIAL_FORK", "0")
    assert not launch.forking()
