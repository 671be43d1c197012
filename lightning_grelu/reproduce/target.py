"""A reproduction target: the runs one of the paper's tables or figures needs, per profile, and how
to turn their run records into that table or figure beside the paper's numbers.

Adding a target is adding one file in this package that defines a ``Target`` subclass and lists it
in ``__init__.py``. The runner (``run_target``) does the rest: checks the data, runs (or reuses, or
resumes) each job, copies the run records, and swaps ``results/<target>/<profile>/`` in atomically.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from lightning_grelu.reproduce.job import Context, Job
from lightning_grelu.reproduce.jobs import run_jobs

PROFILES = ("smoke", "cpu", "paper")
__all__ = ["Context", "Job", "Target", "run_jobs"]  # targets import these from here


class Target:
    name: str = ""
    title: str = ""
    data: str | None = None  # the dataset every job reads, checked before any run
    paper: str = ""  # Markdown: the paper's numbers or claim, quoted
    cannot_show: dict[str, str] = {}  # profile -> what that profile cannot show, said in the README
    profiles: tuple[str, ...] = ("smoke", "paper")
    engine = False  # True: the runs are a width scan (``scan``) run by the width-search engine, not ``jobs``

    def jobs(self, ctx: Context) -> list[Job]:
        raise NotImplementedError

    def scan(self, ctx: Context, work: Path):
        """The width scan of an ``engine`` target (:class:`lightning_grelu.scan.spec.Scan`)."""
        raise NotImplementedError

    def execute(self, ctx: Context, work: Path, fresh: bool, progress) -> int:
        """Run every job into ``work/<label>/``, or an engine target's scan (its trials in ``work/trials/``);
        returns how many jobs (trials) this command ran, not counting those finished before."""
        if self.engine:
            from lightning_grelu.scan.work import fresh_start, run_workers

            scan = self.scan(ctx, work)
            if fresh:
                fresh_start(scan)
            return run_workers(scan, ctx.workers, progress)
        return run_jobs(self.jobs(ctx), ctx, work, fresh, progress)

    def runs(self, ctx: Context, work: Path) -> list:
        """The run records a report reads: the work directory's, or an engine target's study's (from any host)."""
        if self.engine:
            from lightning_grelu.results.records import runs_from_study

            scan = self.scan(ctx, work)
            return runs_from_study(scan.sweep_spec().storage_url(), scan.name)
        from lightning_grelu.reproduce.common import runs_in

        return runs_in(work)

    def report(self, work: Path, out: Path, ctx: Context) -> str:
        """Read the run records under ``work``, write CSV/PNG into ``out``, return the README's body."""
        raise NotImplementedError

    def protocol(self, work: Path, ctx: Context) -> str:
        """The README's title: what was run in this profile (sizes, step, budget), from the run records."""
        return self.title

    def outcome(self, work: Path, ctx: Context) -> str:
        """One sentence under the title: the measured result against the paper's (empty: none to state)."""
        return ""


def seeds(ctx: Context, all_seeds: list[int]) -> list[int]:
    return all_seeds[: ctx.seeds] if ctx.seeds else all_seeds


def copy_records(work: Path, out: Path) -> None:
    """The small files of every run record (not checkpoints), so results can be re-reported from git."""
    for summary in sorted(work.glob("*/summary.json")):
        dest = out / "runs" / summary.parent.name
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("summary.json", "metrics.csv", "config.yaml", "overrides.json"):
            if (summary.parent / name).exists():
                shutil.copy2(summary.parent / name, dest / name)
    for jsonl in sorted(work.glob("*.jsonl")):
        (out / "runs").mkdir(parents=True, exist_ok=True)
        shutil.copy2(jsonl, out / "runs" / jsonl.name)


def header(target: Target, ctx: Context, command: str, hardware: str, commit: str, work: Path | None = None,
           took: tuple[float, float] | None = None, workers: str = "") -> str:
    """The README's head: the protocol in its title, the outcome against the paper in one sentence, then how
    it was made."""
    protocol = target.protocol(work, ctx) if work is not None else target.title
    outcome = target.outcome(work, ctx) if work is not None else ""
    lines = [f"# {target.name}: {protocol} (profile `{ctx.profile}`)", ""]
    if outcome:
        lines += [f"**Outcome:** {outcome}", ""]
    lines += [f"Made by `{command}` at commit `{commit}` on {hardware}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
              + (f"; its jobs took {took[0]:.4g} s, and {took[1]:.4g} s over every command that ran them to its "
                 "end (jobs finished before are reused, not run again; an interrupted command's time is not "
                 "counted)" if took is not None and took[0] else "")
              + (f"; every job was finished before (reused, not run again): they took {took[1]:.4g} s over the "
                 "commands that ran them to their end (an interrupted command's time is not counted)"
                 if took is not None and not took[0] else "")
              + (f"; {workers}." if workers else "."),
             "Every number below was read from the run records in `runs/` (copied from the run directories).", "",
             "Loss: `sse = 1/2 sum_i ||f(x_i)-y_i||^2` over the training set (the paper's eq. 2, which the paper "
             "calls MSE); `mse = 1/n sum_i ||f(x_i)-y_i||^2`.", ""]
    if target.cannot_show.get(ctx.profile):
        lines += [f"**What this profile cannot show:** {target.cannot_show[ctx.profile]}", ""]
    lines += ["## The paper", "", target.paper.strip(), "", ""]
    return "\n".join(lines)
