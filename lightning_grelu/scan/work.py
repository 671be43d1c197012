"""Run a width scan with N local workers: ``python -m lightning_grelu.scan.work SPEC.json`` is one worker.

One worker runs in this process; N > 1 start N worker processes on the scan's storage (each with
cores / N torch threads: small nets gain more from more processes than from more threads) and wait for
them, passing SIGTERM / SIGINT on to each once. Workers on other machines join by pointing at the same
storage (``--storage postgresql://...``, or a journal file on a shared filesystem). Exit codes as
grelu-sweep's (errors.TABLE): 0 done, 2 bad spec or a machine that cannot run it, 1 a crash, 128+N stopped by
signal N (their trials back in the queue); a worker that run_workers started exits with the ``trial_exit`` code
of its kind, so that its parent tells it truthfully.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from lightning_grelu.errors import (ConfigError, MachineError, SuiteError, fail, interruption, kind_of_exit, message,
                                   trial_exit_code)
from lightning_grelu.scan import grid
from lightning_grelu.scan.engine import Engine
from lightning_grelu.scan.spec import Scan
from lightning_grelu.signals import SIGNALS, Interrupted

CHILD = "GRELU_SCAN_CHILD"  # set in the workers run_workers starts: their parent reports for them


def to_json(scan: Scan) -> str:
    return json.dumps(dataclasses.asdict(scan))


def from_json(text: str) -> Scan:
    d = json.loads(text)
    rule = d.pop("rule")
    rule["fixed"] = tuple(rule["fixed"]) if rule.get("fixed") is not None else None
    d["stop_on"] = [tuple(p) for p in d.get("stop_on", [])]
    return Scan(rule=grid.Rule(**rule), **d)


def run_workers(scan: Scan, workers: int = 1, progress=print) -> int:
    """Work on the scan until it is finished, with ``workers`` local workers; returns how many trials were
    answered meanwhile. A worker that stops is told in one line of its kind (errors.TABLE), read from its exit
    code and its last line."""
    if workers <= 1:
        return Engine(scan, progress).run()["trials"]
    threads = max(1, (os.cpu_count() or 1) // workers)
    spec = dataclasses.replace(scan, threads=threads)
    engine = Engine(spec, progress)  # creates (or checks) the study once, before the workers race to it
    before = len(engine.states()[0])
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(to_json(spec))
    env = {**os.environ, CHILD: "1"}  # a signal or an error is told once, by this process, not once per worker
    errs = [tempfile.TemporaryFile("w+") for _ in range(workers)]
    procs = [subprocess.Popen([sys.executable, "-m", "lightning_grelu.scan.work", f.name], start_new_session=True,
                              env=env, stderr=err) for err in errs]
    got: list[int] = []

    def forward(signum, frame):
        got.append(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in SIGNALS}
    try:
        codes = _wait_all(procs)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        os.unlink(f.name)
    texts = []
    for err in errs:
        err.seek(0)
        texts.append(err.read())
        err.close()
    if got:
        raise Interrupted(got[0])
    failed = [(c, t) for c, t in zip(codes, texts) if c != 0]
    for code, text in zip(codes, texts):  # warnings of the workers that finished; a failed one's full text
        if text.strip() and (code == 0 or os.environ.get("HYDRA_FULL_ERROR") == "1"):
            sys.stderr.write(text)
    if not failed:
        return len(engine.states()[0]) - before
    code, text = min(failed, key=lambda f: kind_of_exit(f[0]) == "signal")  # an error before a stop
    kind = kind_of_exit(code)
    if kind == "signal":
        raise Interrupted(code - 128)
    line = ([ln for ln in text.splitlines() if ln.strip()] or [f"exit code {code}"])[-1]
    line = line.removeprefix("scan worker: error: ")
    if code < 0:
        line = f"crash: killed by {signal.Signals(-code).name}"
    error = {"parameter": ConfigError, "machine": MachineError}.get(kind, SuiteError)
    raise error(f"a scan worker stopped: {line} (finished trials are kept: run the same command again to go on)")


def _wait_all(procs) -> list[int]:
    """Wait for every worker, reaping each as it ends (an unreaped one would look alive to the others, which
    then never put its trials back)."""
    import time

    codes: dict[int, int] = {}
    while len(codes) < len(procs):
        for i, p in enumerate(procs):
            if i not in codes and p.poll() is not None:
                codes[i] = p.returncode
        time.sleep(0.2)
    return [codes[i] for i in range(len(procs))]


def main(argv: list[str] | None = None) -> int:
    from lightning_grelu.signals import raise_on_signals

    raise_on_signals()
    path = (argv if argv is not None else sys.argv[1:])[0]
    try:
        # one write per line: the workers share a pipe, and print's separate newline would let their lines mix
        Engine(from_json(Path(path).read_text()), progress=lambda line: print(line + "\n", end="", flush=True)).run()
    except (Interrupted, Exception) as e:  # the trials it held are back in the queue (Engine releases them)
        stop = interruption(e)  # a signal, even one that library code re-wrapped while it unwound
        if stop is not None:
            if not os.environ.get(CHILD):
                print(f"scan worker: {stop}: its trials are back in the queue", file=sys.stderr)
            return stop.exit_code
        if not os.environ.get(CHILD):
            fail("scan worker", e)
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            import traceback

            traceback.print_exc()
        print(f"scan worker: error: {message(e)}", file=sys.stderr)
        return trial_exit_code(e)  # its parent (run_workers) reads the kind from it
    return 0


if __name__ == "__main__":
    sys.exit(main())


def fresh_start(scan: Scan) -> None:
    """``--fresh``: the scan's study and trial folders go, so every trial runs again."""
    import shutil

    import optuna

    from lightning_grelu.sweeps.storage import make_storage

    spec = scan.sweep_spec()
    out = Path(scan.out_dir)
    if (out / "study.json").exists() or scan.storage:
        try:
            optuna.delete_study(study_name=scan.name, storage=make_storage(spec.storage_url(), retry_dead=False))
        except KeyError:
            pass
    for name in ("trials", "study.json", "study.log", "study.log.lock"):
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
