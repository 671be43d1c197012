"""A reproduction target: the runs one of the paper's tables or figures needs, per profile, and how
to turn their run records into that table or figure beside the paper's numbers.

Adding a target is adding one file in this package that defines a ``Target`` subclass and lists it
in ``__init__.py``. The runner (``run_target``) does the rest: checks the data, runs (or reuses, or
resumes) each job, copies the run records, and swaps ``results/<target>/<profile>/`` in atomically.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

PROFILES = ("smoke", "paper")


@dataclass
class Job:
    label: str  # unique within a target and profile; the run directory's name
    overrides: list[str]  # grelu-train overrides
    tags: dict = field(default_factory=dict)


@dataclass
class Context:
    """How a target is being run: the profile, and the reductions a caller asked for."""

    profile: str
    seeds: int | None = None  # keep only the first N seeds (tests, quick looks)
    overrides: list[str] = field(default_factory=list)  # appended to every job
    part: tuple[int, int] | None = None  # (K, N): run only the K-th of N interleaved parts of the jobs

    def in_part(self, items: list) -> list:
        """The items of this part: every N-th, from the (K-1)-th (all of them when no part is set)."""
        if self.part is None:
            return items
        k, n = self.part
        return [item for i, item in enumerate(items) if i % n == k - 1]


class Target:
    name: str = ""
    title: str = ""
    data: str | None = None  # the dataset every job reads, checked before any run
    paper: str = ""  # Markdown: the paper's numbers or claim, quoted
    cannot_show: dict[str, str] = {}  # profile -> what that profile cannot show, said in the README

    def jobs(self, ctx: Context) -> list[Job]:
        raise NotImplementedError

    def execute(self, ctx: Context, work: Path, fresh: bool, progress) -> None:
        """Run every job into ``work/<label>/`` (override for targets that are not training runs)."""
        from lightning_grelu.reproduce.runner import run_jobs

        run_jobs(self.jobs(ctx), ctx, work, fresh, progress)

    def report(self, work: Path, out: Path, ctx: Context) -> str:
        """Read the run records under ``work``, write CSV/PNG into ``out``, return the README's body."""
        raise NotImplementedError


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


def header(target: Target, ctx: Context, command: str, hardware: str, commit: str) -> str:
    lines = [f"# {target.name}: {target.title} (profile `{ctx.profile}`)", "",
             f"Made by `{command}` at commit `{commit}` on {hardware}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
             "Every number below was read from the run records in `runs/` (copied from the run directories).", "",
             "Loss: `sse = 1/2 sum_i ||f(x_i)-y_i||^2` over the training set (the paper's eq. 2, which the paper "
             "calls MSE); `mse = 1/n sum_i ||f(x_i)-y_i||^2`.", ""]
    if target.cannot_show.get(ctx.profile):
        lines += [f"**What this profile cannot show:** {target.cannot_show[ctx.profile]}", ""]
    lines += ["## The paper", "", target.paper.strip(), "", ""]
    return "\n".join(lines)
