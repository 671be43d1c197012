"""Frontier mode: for each cell (e.g. depth x lr x n), the smallest width at which every seed reaches
``eps`` within the step budget, by bisection on log-width.

Every width evaluated is a set of ordinary trials in the sweep's study (fixed parameters: the
cell's, the width, the seed), so any finished trial with the same parameters is reused: a
re-started frontier resumes, and workers of the same study share results. Writes
``frontier.csv``, ``frontier.md`` and ``frontier.png`` (width vs n or depth, log axes, the theory
line m = n^2 L and the paper's p-grid m = (n^2 L)^p) in the sweep's out_dir.

    frontier:
      cells: {data.n: [8, 16], model.depth: [2], model.lr: [1.0e-4]}
      width: {low: 4, high: 512}
      seeds: [0, 1]
      resolution: 1.5      # stop when high / low <= resolution
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from lightning_grelu.atomic import write_atomic
from lightning_grelu.errors import ConfigError
from lightning_grelu.sweeps.spec import SweepSpec
from lightning_grelu.sweeps.worker import claim, open_study, run_trial

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


class Frontier:
    def __init__(self, spec: SweepSpec, fspec: FrontierSpec, progress=print):
        self.spec, self.fspec, self.progress = spec, fspec, progress
        self.study, self.storage = open_study(spec, placeholders=False)

    def _known(self) -> dict[tuple, bool]:
        """Finished trials of the study: params -> converged."""
        out = {}
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
            if "converged" in t.user_attrs and "params" in t.user_attrs:
                out[_key(t.user_attrs["params"])] = bool(t.user_attrs["converged"])
        return out

    def converges(self, cell: dict, width: int) -> bool:
        """All seeds reach eps at this width (runs only the trials not already finished)."""
        known = self._known()
        for seed in self.fspec.seeds:
            params = {**cell, "model.width": width, "seed": seed}
            if _key(params) not in known:
                self.study.enqueue_trial(params, skip_if_exists=True)
                trial = claim(self.study, self.storage)
                if trial is None:  # another worker took it: wait for its result
                    continue
                run_trial(self.spec, self.study, self.storage, trial, params_override=params)
                known = self._known()
            if not known.get(_key(params), False):
                return False
        return True

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
        rows = [self.cell_frontier(dict(zip(names, values)))
                for values in itertools.product(*self.fspec.cells.values())]
        write_frontier(Path(self.spec.out_dir), rows, self.spec)
        return rows


def write_frontier(out: Path, rows: list[dict], spec: SweepSpec) -> None:
    out.mkdir(parents=True, exist_ok=True)
    keys = list(rows[0])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    write_atomic(out / "frontier.csv", buf.getvalue())
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
