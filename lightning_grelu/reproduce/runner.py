"""Run a target (its jobs, under a lock on its work directory), then publish its results atomically."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from lightning_grelu.atomic import atomic_dir, write_atomic
from lightning_grelu.errors import ConfigError, MachineError
from lightning_grelu.reproduce.job import Context
from lightning_grelu.reproduce.target import Target, copy_records, header


def run_target(target: Target, ctx: Context, results_root: Path, work_root: Path, command: str,
               fresh: bool = False, progress=print, device: str = "cpu") -> Path:
    from lightning_grelu.run_dir import Lock

    work = (work_root / target.name / ctx.profile).resolve()
    made = work  # the topmost folder this command creates: a refused input removes it again
    while not made.parent.exists():
        made = made.parent
    made = None if made.exists() else made
    # one reproduction of a target at a time: a second one would delete and mix the first one's jobs
    with Lock(work, "--work (or wait: one grelu-reproduce of a target and profile at a time)"):
        try:
            return _run_target(target, ctx, results_root, work, command, fresh, progress, device)
        except (ConfigError, MachineError):  # a refusal writes nothing: not even the lock's folder, if only the
            # lock is in it
            if made is not None and all(p.is_dir() or p.name == ".lock" for p in made.rglob("*")):
                shutil.rmtree(made, ignore_errors=True)
            raise


def _run_target(target, ctx, results_root, work, command, fresh, progress, device) -> Path:
    import torch

    from lightning_grelu.bench import commit, hardware

    t0 = time.monotonic()
    ran = target.execute(ctx, work, fresh, progress)
    took = time.monotonic() - t0  # what this command's jobs took (finished jobs are reused, not re-run)
    if ran:
        progress(f"{target.name} ({ctx.profile}): {ran} jobs took {took:.4g} s")
    else:  # a command that only re-reports adds nothing to what computing the jobs took
        progress(f"{target.name} ({ctx.profile}): every job was finished before; none ran")
        took = 0.0
    took = (took, add_time(work, took))
    parts = note_part(work, ctx)
    dest = results_root / target.name / ctx.profile
    dev = torch.device("cuda" if device == "gpu" and torch.cuda.is_available() else "cpu")
    with atomic_dir(dest) as out:
        copy_records(work, out)
        if target.engine:  # a width scan's records: one compact file
            from lightning_grelu.results.records import write_jsonl

            write_jsonl(target.runs(ctx, work), out / "runs" / "records.jsonl.gz")
        body = target.report(work, out, ctx)
        (out / "README.md").write_text(header(target, ctx, command, hardware(dev), commit(), work, took,
                                              workers(target, ctx, work)) + parts
                                       + "## Measured\n\n" + body)
    return dest


def workers(target, ctx, work: Path) -> str:
    """Who ran a width scan's trials: the worker processes (each command starts its own) and their hosts, read
    from the study; empty for other targets."""
    if not target.engine:
        return ""
    ran = {r.worker for r in target.runs(ctx, work) if r.worker}
    hosts = {w.rsplit(":", 1)[0] for w in ran}
    return (f"{len(ran)} worker process{'es' if len(ran) != 1 else ''} on {len(hosts)} host{'s' if len(hosts) != 1 else ''}"
            " ran its trials")


def add_time(work: Path, seconds: float) -> float:
    """The wall time of every command that ran this target's jobs in ``work`` to its end (``time.json``; an
    interrupted command is not counted): a result re-made from reused jobs still says what computing them took."""
    path = work / "time.json"
    try:
        total = float(json.loads(path.read_text())["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        total = 0.0
    total += seconds
    write_atomic(path, json.dumps({"seconds": round(total, 3)}) + "\n")
    return total


def note_part(work: Path, ctx: Context) -> str:
    """Record which parts of a target have run (``parts.json`` in its work dir) and say so for the
    README: a profile run in parts (--part K/N, on short GPU windows) is complete when all N have."""
    path = work / "parts.json"
    try:
        done = json.loads(path.read_text())
    except (OSError, ValueError):
        done = {}
    if ctx.part is None:
        done = {"all": True}
    else:
        k, n = ctx.part
        if not done.get("all"):
            done = {"n": n, "done": sorted(set(done.get("done", []) if done.get("n") == n else []) | {k})}
    write_atomic(path, json.dumps(done) + "\n")
    if done.get("all"):
        return ""
    missing = [k for k in range(1, done["n"] + 1) if k not in done["done"]]
    return (f"**Parts run:** {', '.join(map(str, done['done']))} of {done['n']} (`--part K/{done['n']}`)"
            + (f"; still to run: {', '.join(map(str, missing))}. The numbers below cover the finished parts only."
               if missing else "; all parts have run.") + "\n\n")
