"""Frontier mode: for each cell (e.g. depth x lr x n), the smallest width at which every seed reaches
``eps`` within the step budget, by bisection on log-width.

Every width evaluated is a set of ordinary trials in the sweep's study (fixed parameters: the
cell's, the width, the seed), so any finished trial with the same parameters is reused: a
re-started frontier resumes, and several workers on one study share the work (each starts at its
own cell, runs whatever trial is waiting, and waits for the trials others are running). Writes
``frontier.csv``, ``frontier.md`` and ``frontier.png`` (width vs n or depth, log axes, the theory
line m = n^2 L and the paper's p-grid m = (n^2 L)^p) in the sweep's out_dir.

    frontier:
      cells: {data.n: [8, 16], model.depth: [2], model.lr: [1.0e-4]}
      width: {low: 4, high: 512}
      seeds: [0, 1]
      resolution: 1.5      # stop when high / low <= resolution
"""

from __future__ import annotations

import itertools
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from optuna.trial import TrialState

from lightning_grelu.atomic import write_atomic, write_csv_atomic
from lightning_grelu.errors import ConfigError
from lightning_grelu.sweeps.spec import SweepSpec
from lightning_grelu.sweeps.worker import claim, fail_dead_trials, open_study, run_trial

P_GRID = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass
class FrontierSpec:
    cells: dict[str, list]
    low: int
    high: int
    seeds: list[int]
    resolution: float = 1.5


def parse_frontier(node: dict) -> FrontierSpec:
    cells = dict(node.get("cells") or {})
    width = node.get("width") or {}
    low, high = int(width.get("low", 1)), int(width.get("high", 0))
    if not 1 <= low < high:
        raise ConfigError(f"sweep.frontier.width: need 1 <= low < high, got low={low} high={high}")
    seeds = list(node.get("seeds") or [0])
    resolution = float(node.get("resolution", 1.5))
    if resolution <= 1:
        raise ConfigError(f"sweep.frontier.resolution must be > 1, got {resolution}")
    return FrontierSpec(cells, low, high, seeds, resolution)


def _key(params: dict) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in params.items()))


POLL_S = 1.0  # how often a worker looks again at trials other workers are running


class Frontier:
    def __init__(self, spec: SweepSpec, fspec: FrontierSpec, progress=print):
        self.spec, self.fspec, self.progress = spec, fspec, progress
        self.study, self.storage = open_study(spec, placeholders=False)

    def _states(self) -> dict[tuple, bool | str]:
        """params -> converged (a finished trial answers), or "pending" (WAITING or RUNNING somewhere).
        Parameters absent here need a trial: never tried, or only tried by a worker that died."""
        out: dict[tuple, bool | str] = {}
        for t in self.study.get_trials(deepcopy=False):
            params = t.user_attrs.get("params") or t.system_attrs.get("fixed_params")
            if params is None:
                continue
            key = _key(params)
            if t.state.is_finished() and "converged" in t.user_attrs:
                out[key] = bool(t.user_attrs["converged"])
            elif t.state in (TrialState.WAITING, TrialState.RUNNING) and not isinstance(out.get(key), bool):
                out[key] = "pending"
        return out

    def converges(self, cell: dict, width: int) -> bool:
        """All seeds reach eps at this width. Runs only what no finished trial answers. Workers of one
        study share the work: each enqueues its missing seeds, runs any WAITING trial it can claim (its
        own or another worker's), and waits for the ones running elsewhere."""
        wanted = {_key(p): p for p in ({**cell, "model.width": width, "seed": s} for s in self.fspec.seeds)}
        while True:
            fail_dead_trials(self.study, self.storage, self.spec)  # a dead worker's trial becomes absent: run again
            states = self._states()
            answers = [states.get(k) for k in wanted]
            if False in answers:
                self._drop_waiting(wanted, "not needed: another seed did not converge at this width")
                return False
            if all(a is True for a in answers):
                return True
            for key, params in wanted.items():
                if key not in states:
                    self.study.enqueue_trial(params, skip_if_exists=False)
            trial = claim(self.study, self.storage)
            if trial is not None:
                run_trial(self.spec, self.study, self.storage, trial, fixed=True)
            else:
                time.sleep(POLL_S)

    def _drop_waiting(self, wanted: dict, reason: str) -> None:
        """Seeds still WAITING once the answer is known would cost a run each for nothing: fail them
        (without a ``converged`` mark, so a later question about them enqueues them again)."""
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if _key(t.system_attrs.get("fixed_params") or {}) in wanted:
                if self.storage.set_trial_state_values(t._trial_id, TrialState.RUNNING):  # ours to drop
                    self.storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
                    self.storage.set_trial_state_values(t._trial_id, TrialState.FAIL)

    def cell_frontier(self, cell: dict) -> dict:
        lo, hi = self.fspec.low, self.fspec.high
        if not self.converges(cell, hi):  # the widest net fails: the frontier lies beyond the range
            return {**cell, "frontier_width": None, "largest_failing": hi}
        if self.converges(cell, lo):
            return {**cell, "frontier_width": lo, "largest_failing": None}
        while hi / lo > self.fspec.resolution:
            mid = round(math.sqrt(lo * hi))
            if mid in (lo, hi):
                break
            if self.converges(cell, mid):
                hi = mid
            else:
                lo = mid
            self.progress(f"{self.spec.name}: {cell} frontier in ({lo}, {hi}]")
        return {**cell, "frontier_width": hi, "largest_failing": lo}

    def run(self) -> list[dict]:
        names = list(self.fspec.cells)
        cells = [dict(zip(names, values)) for values in itertools.product(*self.fspec.cells.values())]
        # workers started together begin at different cells (then reuse each other's answers)
        start = os.getpid() % len(cells)
        found = {i: self.cell_frontier(cells[i]) for i in [*range(start, len(cells)), *range(start)]}
        rows = [found[i] for i in range(len(cells))]
        write_frontier(Path(self.spec.out_dir), rows, self.spec)
        return rows


def write_frontier(out: Path, rows: list[dict], spec: SweepSpec) -> None:
    out.mkdir(parents=True, exist_ok=True)
    keys = list(rows[0])
    write_csv_atomic(out / "frontier.csv", rows, keys)
    md = [f"# Convergence frontier: {spec.name}", "",
          f"Smallest width at which every seed reaches eps within the step budget (base: `{' '.join(spec.base)}`).",
          "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    md += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    write_atomic(out / "frontier.md", "\n".join(md) + "\n")
    plot_frontier(out / "frontier.png", rows)


def plot_frontier(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_key = "data.n" if len({r.get("data.n") for r in rows}) > 1 else "model.depth"
    fig, ax = plt.subplots(figsize=(6, 4.5))
    found = [r for r in rows if r["frontier_width"] is not None and r.get(x_key) is not None]
    xs = sorted({float(r[x_key]) for r in found})
    ax.plot([float(r[x_key]) for r in found], [r["frontier_width"] for r in found], "o-", label="frontier (measured)")
    if x_key == "data.n" and xs:
        depth = float(found[0].get("model.depth", 1))
        for p in P_GRID:
            ax.plot(xs, [(n * n * depth) ** p for n in xs], "--" if p == 1 else ":", lw=1,
                    label="theory m = n^2 L" if p == 1 else f"(n^2 L)^{p}")
        ax.plot(xs, [n * depth for n in xs], "-.", lw=1, label="m = nL")
    if found:
        ax.set_xscale("log")
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no cell converged within the width range", ha="center", transform=ax.transAxes)
    ax.set_xlabel(x_key)
    ax.set_ylabel("width m")
    if found:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
