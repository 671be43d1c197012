"""Run a target's jobs, reusing what is done and resuming what was interrupted, then publish."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from lightning_grelu.errors import ConfigError
from lightning_grelu.reproduce.target import Context, Job, Target, copy_records, header, write_json


def compose(run_dir: Path, overrides: list[str]):
    from lightning_grelu.sweeps.run_trial import compose_trial

    try:
        return compose_trial(str(run_dir), overrides)
    except Exception as e:
        raise ConfigError(f"a job's config does not compose: {str(e).splitlines()[0]}") from None


def check_data(job: Job, ctx: Context, work: Path) -> None:
    """Load the first job's data once: a missing or corrupt file stops the target before any run."""
    from hydra.utils import instantiate

    from lightning_grelu.config_check import validate
    from lightning_grelu.data.base import DataError
    from lightning_grelu.train import _without_name

    cfg = compose(work / job.label, [*job.overrides, *ctx.overrides])
    validate(cfg)
    try:
        instantiate(_without_name(cfg.data)).setup("fit")
    except DataError as e:
        raise ConfigError(str(e)) from None
    except Exception as e:
        cause = e.__cause__ or e.__context__
        if isinstance(cause, DataError):
            raise ConfigError(str(cause)) from None
        raise


def finished(run_dir: Path, overrides: list[str]) -> bool:
    try:
        done = json.loads((run_dir / "summary.json").read_text())["status"] in ("completed", "diverged")
        same = json.loads((run_dir / "overrides.json").read_text()) == overrides
    except (OSError, ValueError, KeyError):
        return False
    return done and same


def run_jobs(jobs: list[Job], ctx: Context, work: Path, fresh: bool, progress) -> None:
    from lightning_grelu.train import train

    if jobs:
        check_data(jobs[0], ctx, work)
    for i, job in enumerate(jobs, 1):
        run_dir = work / job.label
        overrides = [*job.overrides, *ctx.overrides]
        if not fresh and finished(run_dir, overrides):
            progress(f"[{i}/{len(jobs)}] {job.label}: done before, reused")
            continue
        resume = []
        if not fresh and (run_dir / "checkpoints" / "last.ckpt").exists() and _same(run_dir, overrides):
            resume = ["ckpt_path=last"]  # an interrupted job continues from its last checkpoint
        elif run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "overrides.json", overrides)
        summary = train(compose(run_dir, [*overrides, *resume]))
        progress(f"[{i}/{len(jobs)}] {job.label}: {summary['status']}, train/sse {summary['train/sse']}"
                 + (" (resumed)" if resume else ""))


def _same(run_dir: Path, overrides: list[str]) -> bool:
    try:
        return json.loads((run_dir / "overrides.json").read_text()) == overrides
    except (OSError, ValueError):
        return False


def run_target(target: Target, ctx: Context, results_root: Path, work_root: Path, fresh: bool = False,
               progress=print, device: str = "cpu") -> Path:
    import torch

    from lightning_grelu.bench import commit, hardware
    from lightning_grelu.results.publish import atomic_dir

    work = (work_root / target.name / ctx.profile).resolve()
    work.mkdir(parents=True, exist_ok=True)
    target.execute(ctx, work, fresh, progress)
    dest = results_root / target.name / ctx.profile
    command = "grelu-reproduce " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[0].endswith(
        "grelu-reproduce") else f"grelu-reproduce {target.name} --profile {ctx.profile}"
    dev = torch.device("cuda" if device == "gpu" and torch.cuda.is_available() else "cpu")
    with atomic_dir(dest) as out:
        copy_records(work, out)
        body = target.report(work, out, ctx)
        (out / "README.md").write_text(header(target, ctx, command, hardware(dev), commit()) + "## Measured\n\n" + body)
    return dest
