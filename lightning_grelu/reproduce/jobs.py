"""Run a target's training jobs, reusing what is done and resuming what was interrupted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lightning_grelu.atomic import write_atomic
from lightning_grelu.errors import ConfigError
from lightning_grelu.reproduce.job import Context, Job


def compose(run_dir: Path, overrides: list[str]):
    from lightning_grelu.config_check import composition_error
    from lightning_grelu.sweeps.run_trial import compose_trial

    try:
        return compose_trial(str(run_dir), overrides)
    except Exception as e:
        raise ConfigError(f"a job's config does not compose: {composition_error(e, overrides)}") from None


def check_data(job: Job, ctx: Context, work: Path) -> None:
    """Load the first job's data once: a missing or corrupt file stops the target before any run."""
    from lightning_grelu.config_check import check_constructors, validate
    from lightning_grelu.memory import check_devices
    from lightning_grelu.train import build_data

    cfg = compose(work / job.label, [*job.overrides, *ctx.overrides])
    validate(cfg)
    check_devices(cfg.trainer)  # the paper profile or --override trainer=gpu without a GPU: refused now
    check_constructors(cfg)  # e.g. --override data=fashion_mnist under a job that sets data.n
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


def run_jobs(jobs: list[Job], ctx: Context, work: Path, fresh: bool, progress) -> int:
    """Train each job not finished before; returns how many it trained."""
    from lightning_grelu.train import train

    ran = 0
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
        ran += 1
        if summary["status"] == "interrupted":  # stopped by a signal at an epoch's end, last.ckpt saved
            from lightning_grelu.signals import Interrupted

            raise Interrupted(summary.get("signal", 15), summary.get("epochs"), True)
        progress(f"[{i}/{len(jobs)}] {job.label}: {summary['status']}, train/sse {_num(summary.get('train/sse'))}, "
                 f"{_num(summary.get('wall_time_s'))} s" + (" (resumed)" if resume else ""))
    return ran


def _num(v) -> str:
    """4 significant digits (a progress line is read, not parsed: the records hold every digit)."""
    return f"{v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"
