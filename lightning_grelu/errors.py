"""The suite's errors, named for whose fault they are, and the one table that maps them to exit codes and
sweep-trial outcomes.

Three kinds, raised where the cause is known:

- ``parameter`` (:class:`ParameterError`, alias ``ConfigError``): the job's own parameters (a config value, a
  command-line argument, a sweep spec, a record or checkpoint named as input). Another machine would refuse
  the same job: a command exits 2; a sweep trial FAILs with its reason and the worker goes on.
- ``machine`` (:class:`MachineError`): this machine cannot run the job whatever its parameters (no GPU, an
  unwritable or full disk, memory, missing or damaged data files, the study's storage). A command exits 2; a
  sweep trial goes back to WAITING for a machine that can run it, and the worker stops.
- ``crash``: anything else, a fault of the suite itself. A command exits 1; a sweep trial FAILs with
  ``crash: ...`` and the worker goes on.

Outcomes that are not errors keep their own codes: diverged 3, pruned 4 (a sweep trial's process), stopped
by signal N 128+N. Every command prints its error through :func:`fail`: one line, the kind's exit code.
Light on purpose: the commands import it before anything heavy.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import signal
import sys
from dataclasses import dataclass

from lightning_grelu.signals import Interrupted


class SuiteError(Exception):
    """An error whose cause is known; its message is one line naming the problem and the fix."""

    kind = "crash"


class ParameterError(SuiteError, ValueError):
    """The job's parameters are wrong (a value out of range, an unknown key, a bad argument or input file)."""

    kind = "parameter"


ConfigError = ParameterError  # the name most call sites use


class MachineError(SuiteError):
    """This machine cannot run the job, whatever its parameters: no GPU, an unwritable or full disk, memory,
    missing or damaged data files, the study's storage. Not a subclass of ParameterError: a sweep never blames
    a trial's parameters for it."""

    kind = "machine"


@dataclass(frozen=True)
class Outcome:
    kind: str
    exit: int  # a command's exit code
    trial_exit: int  # the exit code of a sweep trial's (or a scan worker's) own process: tells its parent the kind
    trial: str  # what the study records for the trial
    worker: str  # what a sweep worker does next


# The one table (README "Exit codes" shows it). 128 + N for signal N is added by exit_code.
TABLE = {o.kind: o for o in [
    Outcome("completed", 0, 0, "COMPLETE", "goes on"),
    Outcome("crash", 1, 1, "FAIL (fail_reason 'crash: ...')", "goes on"),
    Outcome("parameter", 2, 2, "FAIL (fail_reason: the one line)", "goes on"),
    Outcome("diverged", 3, 3, "FAIL (fail_reason 'diverged: ...'; a width scan: COMPLETE, objective inf)", "goes on"),
    Outcome("pruned", 4, 4, "PRUNED", "goes on"),
    Outcome("machine", 2, 5, "WAITING (back in the queue)", "stops, exit 2"),
    Outcome("signal", 128, 128, "WAITING (back in the queue)", "stops, exit 128+N"),
]}
EXIT_FAILED, EXIT_CONFIG, EXIT_DIVERGED = TABLE["crash"].exit, TABLE["parameter"].exit, TABLE["diverged"].exit
EXIT_PRUNED, EXIT_MACHINE = TABLE["pruned"].trial_exit, TABLE["machine"].trial_exit  # trial processes only

# OS errors that say the machine cannot go on (disk full, read-only, permissions, quota, I/O), not the suite
MACHINE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EIO})


def storage_failure(e: BaseException) -> bool:
    """A database error of the study's storage (SQLAlchemy's, or Optuna's wrapper of it): the storage's
    fault. Read from the class's module, so that neither library is imported here."""
    return any(c.__module__.split(".")[0] == "sqlalchemy" or c.__name__ == "StorageInternalError"
               for c in type(e).__mro__)


def interruption(e: BaseException) -> Interrupted | None:
    """The signal that stopped the command, if one did: ``e`` itself, or one found on its cause/context chain. A
    signal is raised wherever the program is, inside library code too, and code that unwinds there can replace
    it: Hydra's config loader turns it into a ConfigCompositionException, a half-run ``finally`` into an
    UnboundLocalError, and the suite's own wrappers into a one-line error. The chain still holds it."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, Interrupted):
            return e
        if isinstance(e, KeyboardInterrupt):
            return Interrupted(signal.SIGINT)
        e = e.__cause__ or e.__context__
    return None


def classify(e: BaseException) -> str:
    """The kind of an exception: ``parameter``, ``machine``, ``signal`` or ``crash``."""
    if interruption(e) is not None:
        return "signal"
    if isinstance(e, SuiteError):
        return e.kind
    if isinstance(e, OSError) and e.errno in MACHINE_ERRNOS:
        return "machine"
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or storage_failure(e):
        return "machine"  # host or GPU memory ran out although the estimate fitted; a database that failed
    return "crash"


def exit_code(e: BaseException) -> int:
    """A command's exit code for an exception (128 + N for signal N)."""
    kind = classify(e)
    if kind == "signal":
        return interruption(e).exit_code
    return TABLE[kind].exit


def trial_exit_code(e: BaseException) -> int:
    """The exit code of a sweep trial's own process, which its worker maps back with :func:`kind_of_exit`."""
    kind = classify(e)
    return exit_code(e) if kind == "signal" else TABLE[kind].trial_exit


def kind_of_exit(code: int | None) -> str:
    """The kind a trial process's (or a scan worker's) exit code says; a process killed by a signal it
    could not handle (negative code: SIGKILL, the kernel's OOM killer) crashed."""
    if code is not None and code > 128:
        return "signal"
    by_code = {o.trial_exit: k for k, o in TABLE.items() if k != "signal"}
    return by_code.get(code, "crash")


def message(e: BaseException) -> str:
    """The one line an exception is told in (without the command's name)."""
    kind = classify(e)
    if kind == "signal":
        return str(interruption(e))
    text = " ".join(str(e).split()) if str(e) else ""
    if isinstance(e, SuiteError):  # a plain SuiteError: a crash another process reported in its own line
        return text
    what = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return what if kind == "machine" else f"crash: {what}"


def fail(prog: str, e: BaseException, crash_hint: str = "HYDRA_FULL_ERROR=1 for the traceback", where: str = ""):
    """Tell ``e`` in one line on stderr (``prog: error: where: message``) and exit with its kind's code. A crash
    says how to see its traceback (``HYDRA_FULL_ERROR=1``, where it re-raises instead)."""
    kind = classify(e)
    if kind == "crash" and os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise e
    line = f"{where}: {message(e)}" if where else message(e)
    if kind == "crash" and crash_hint:
        line += f" ({crash_hint})"
    sys.stderr.write(f"{prog}: {line}\n" if kind == "signal" else f"{prog}: error: {line}\n")
    sys.stderr.flush()
    sys.exit(exit_code(e))


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the suite's error style: one line (what is wrong, where help is), exit 2; and help texts
    in plain words (the docstrings they come from mark code ``like this``; a terminal shows it as is)."""

    def format_help(self) -> str:
        return re.sub(r"``([^`]+)``", r"\1", super().format_help())

    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(EXIT_CONFIG)
