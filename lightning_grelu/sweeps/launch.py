"""A trial's process, forked from its worker: the process ``python -m lightning_grelu.sweeps.run_trial`` would
be, without paying that process's start-up each time.

A fresh trial process spends about 5 s of CPU importing torch, Lightning and Hydra before it trains
(``python -X importtime -m lightning_grelu.sweeps.run_trial``); a worker runs trial after trial. So the worker
imports them once, at its first trial, and forks each trial from itself. The child is made into what the
fresh command would be:

- its own session, as ``start_new_session`` gave it (a Ctrl-C reaches the worker, which passes it on once);
  the worker's signals are blocked from the fork until the child has set its own, so none lands in between;
- the parent-death signal (``run_trial.die_with_parent``), fresh signal handlers, stdin from /dev/null,
  stdout discarded, stderr to a file the worker reads its reason from (the last line);
- ``sys.argv`` and ``__main__`` as that command sets them, so Lightning's DDP launcher, which starts the other
  ranks by re-running the command, starts ``python -m lightning_grelu.sweeps.run_trial RUN_DIR ...``;
- its environment; the crash-point counters of :mod:`lightning_grelu.faults` at zero;
- at its end, a normal exit's work: its non-daemon threads joined, its own ``atexit`` handlers run, its
  streams flushed; then ``os._exit``, so that nothing of the worker's (its storage connections, its
  ``finally`` blocks) runs in the child.

The fork is safe because, when it forks, the worker runs no thread of its own (its storage keeper runs only
while a trial runs and is joined after it) and has done no torch computation: no OpenMP pool and no CUDA
context exist to be copied (where CUDA was initialised anyway, the trial is a fresh process).
``GRELU_TRIAL_FORK=0`` makes every trial a fresh process.
"""

from __future__ import annotations

import atexit
import gc
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

from lightning_grelu.signals import SIGNALS

MODULE = "lightning_grelu.sweeps.run_trial"
_POLL_S = 0.02


def forking() -> bool:
    """Whether trials are forked: on by default where the platform forks; off with GRELU_TRIAL_FORK=0 and
    where the worker's torch has initialised CUDA (a forked child could not use it)."""
    if os.environ.get("GRELU_TRIAL_FORK", "1") == "0" or not hasattr(os, "fork"):
        return False
    torch = sys.modules.get("torch")
    return not (torch is not None and torch.cuda.is_initialized())


def preload() -> None:
    """What a trial imports, once, in the worker (before its first fork)."""
    import lightning_grelu.sweeps.pruning  # noqa: F401
    import lightning_grelu.sweeps.run_trial  # noqa: F401
    import lightning_grelu.train  # noqa: F401


class ForkedTrial:
    """A forked trial process, with the part of :class:`subprocess.Popen`'s interface the worker uses."""

    def __init__(self, argv: list[str], env: dict[str, str], main=None):
        """``main(argv) -> exit code`` runs in the child: ``run_trial.main`` unless a test gives another.
        The worker has called :func:`preload` (where a signal can still give its claimed trial back)."""
        self.returncode: int | None = None
        self._err = tempfile.TemporaryFile("w+b")  # a file, not a pipe: a long stderr never blocks the child
        for stream in (sys.stdout, sys.stderr):  # nothing buffered here is written twice (once by the child)
            stream.flush()
        worker = os.getpid()
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            self.pid = os.fork()
            if self.pid == 0:
                _child(argv, env, self._err.fileno(), blocked, worker, main)  # never returns
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:  # never signal a pid that was reaped (and may be reused)
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait for the exit (signals to the worker are handled meanwhile); returns ("", its stderr).
        Raises subprocess.TimeoutExpired after ``timeout`` seconds, leaving the process running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired([MODULE], timeout)
            time.sleep(_POLL_S)
        self._err.seek(0)
        text = self._err.read().decode(errors="replace")
        self._err.close()
        return "", text


def _child(argv: list[str], env: dict[str, str], err_fd: int, mask, worker: int, main) -> None:
    code = 1
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(err_fd, 2)
        os.close(devnull)
        # streams over those descriptors, as a fresh interpreter opens them (the worker's may be wrapped)
        sys.stdin = sys.__stdin__ = open(0, closefd=False)
        sys.stdout = sys.__stdout__ = open(1, "w", closefd=False)
        sys.stderr = sys.__stderr__ = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")
        for s in SIGNALS:
            signal.signal(s, signal.default_int_handler if s == signal.SIGINT else signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        atexit._clear()  # the worker's exit handlers are the worker's
        from lightning_grelu import faults
        from lightning_grelu.sweeps import run_trial

        faults._seen.clear()
        os.environ.clear()
        os.environ.update(env)
        sys.argv = [run_trial.__file__, *argv]
        sys.modules["__main__"].__spec__ = importlib.util.find_spec(MODULE)
        _name("grelu-trial")
        run_trial.die_with_parent(worker)  # a worker that died before this call: as if it had been told
        code = (main or run_trial.main)(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:  # as a fresh process ends on it: its traceback, then killed by SIGINT
        traceback.print_exc()
        code = -signal.SIGINT
    except BaseException:  # noqa: BLE001 - as an uncaught exception ends a fresh process: its traceback, exit 1
        traceback.print_exc()
        code = 1
    finally:
        try:
            gc.collect()  # what only a collection closes (files in reference cycles) is closed, as at a normal exit
            threading._shutdown()
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
            if code == -signal.SIGINT:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGINT)
        finally:
            os._exit(code if code >= 0 else 128 - code)


def _name(comm: str) -> None:
    """Linux: the name ``top`` and ``ps -o comm`` show (its command line stays the worker's)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(15, comm.encode(), 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass
