"""Run a target's jobs, reusing what is done and resuming what was interrupted, then publish."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lightning_grelu.atomic import atomic_dir, write_atomic
from lightning_grelu.errors import ConfigError
from lightning_grelu.reproduce.target import Context, Job, Target, copy_records, header


def compose(run_dir: Path, overrides: list[str]):
    from lightning_grelu.sweeps.run_trial import compose_trial

    try:
        return compose_trial(str(run_dir), overrides)
    except Exception as e:
        raise ConfigError(f"a job's config does not compose: {str(e).splitlines()[0]}") from None


def check_data(job: Job, ctx: Context, work: Path) -> None:
    """Load the first job's data once: a missing or corrupt file stops the target before any run."""
    from lightning_grelu.config_check import validate
    from lightning_grelu.train import build_data

    from lightning_grelu.memory import check_devices

    cfg = compose(work / job.label, [*job.overrides, *ctx.overrides])
    validate(cfg)
    check_devices(cfg.trainer)  # the paper profile or --override trainer=gpu without a GPU: refused now
    build_data(cfg)


def recorded_overrides(run_dir: Path) -> list[str] | None:
    try:
        return json.loads((run_dir / "overrides.json").read_text())
    except (OSError, ValueError):
        return None


def finished(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "summary.json").read_text())["status"] in ("completed", "diverged")
    except (OSError, ValueError, KeyError):
        return False


def run_jobs(jobs: list[Job], ctx: Context, work: Path, fresh: bool, progress) -> None:
    from lightning_grelu.train import train

    jobs = ctx.in_part(jobs)
    if jobs:
        check_data(jobs[0], ctx, work)
    for i, job in enumerate(jobs, 1):
        run_dir = work / job.label
        overrides = [*job.overrides, *ctx.overrides]
        same = not fresh and recorded_overrides(run_dir) == overrides
        if same and finished(run_dir):
            progress(f"[{i}/{len(jobs)}] {job.label}: done before, reused")
            continue
        resume = []
        if same and (run_dir / "checkpoints" / "last.ckpt").exists():
            resume = ["ckpt_path=last"]  # an interrupted job continues from its last checkpoint
        elif run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(run_dir / "overrides.json", json.dumps(overrides, indent=2) + "\n")
        summary = train(compose(run_dir, [*overrides, *resume]))
        if summary["status"] == "interrupted":  # stopped by a signal at an epoch's end, last.ckpt saved
            from lightning_grelu.signals import Interrupted

            raise Interrupted(summary.get("signal", 15), summary.get("epochs"), True)
        progress(f"[{i}/{len(jobs)}] {job.label}: {summary['status']}, train/sse {summary['train/sse']}"
                 + (" (resumed)" if resume else ""))


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
        except ConfigError:  # bad input writes nothing: not even the lock's folder, if only the lock is in it
            if made is not None and all(p.is_dir() or p.name == ".lock" for p in made.rglob("*")):
                shutil.rmtree(made, ignore_errors=True)
            raise


def _run_target(target, ctx, results_root, work, command, fresh, progress, device) -> Path:
    import torch

    from lightning_grelu.bench import commit, hardware

    target.execute(ctx, work, fresh, progress)
    parts = note_part(work, ctx)
    dest = results_root / target.name / ctx.profile
    dev = torch.device("cuda" if device == "gpu" and torch.cuda.is_available() else "cpu")
    with atomic_dir(dest) as out:
        copy_records(work, out)
        body = target.report(work, out, ctx)
        (out / "README.md").write_text(header(target, ctx, command, hardware(dev), commit()) + parts
                                       + "## Measured\n\n" + body)
    return dest


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
