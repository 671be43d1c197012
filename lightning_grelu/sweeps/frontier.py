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
                run_trial(self.spec, self.study, self.storage, trial, fixed=True, distributions=self.distributions())
            else:
                time.sleep(POLL_S)

    def distributions(self) -> dict:
        """The frontier's parameters as Optuna distributions: width over its log range, cells and seeds as
        the categorical values they take."""
        from optuna.distributions import CategoricalDistribution, IntDistribution

        out = {name: CategoricalDistribution(list(values)) for name, values in self.fspec.cells.items()}
        out["model.width"] = IntDistribution(self.fspec.low, self.fspec.high, log=True)
        out["seed"] = CategoricalDistribution(list(self.fspec.seeds))
        return out

    def _drop_waiting(self, wanted: dict, reason: str) -> None:
        """Seeds still WAITING once the answer is known would cost a run each for nothing: mark them PRUNED
        with ``skipped_because`` (not FAIL: nothing went wrong, and a failure would read as one in
        optuna-dashboard), without a ``converged`` mark, so a later question about them enqueues them again."""
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if _key(t.system_attrs.get("fixed_params") or {}) in wanted:
                if self.storage.set_trial_state_values(t._trial_id, TrialState.RUNNING):  # ours to drop
                    self.storage.set_trial_user_attr(t._trial_id, "skipped_because", reason)
                    self.storage.set_trial_state_values(t._trial_id, TrialState.PRUNED)

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


def base_values(spec: SweepSpec) -> dict:
    """The keys a cell may leave to the base config (n, depth, eps, ...), composed as a trial would be."""
    from lightning_grelu.sweeps.run_trial import compose_trial

    cfg = compose_trial("/tmp/unused", spec.base)
    return {"data.n": cfg.data.get("n"), "model.depth": cfg.model.depth, "model.lr": cfg.model.lr,
            "eps": cfg.eps, "eps_relative": bool(cfg.get("eps_relative", False)), "max_epochs": cfg.trainer.max_epochs}


def write_frontier(out: Path, rows: list[dict], spec: SweepSpec) -> None:
    out.mkdir(parents=True, exist_ok=True)
    keys = list(rows[0])
    write_csv_atomic(out / "frontier.csv", rows, keys)
    base = base_values(spec)
    md = [f"# Convergence frontier: {spec.name}", "",
          f"Smallest width at which every seed reaches eps = {base['eps']:g}"
          f"{' x the initial SSE' if base['eps_relative'] else ''} within the step budget "
          f"(base: `{' '.join(spec.base)}`; depth {base['model.depth']} and n {base['data.n']} unless a cell says).",
          "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    md += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    write_atomic(out / "frontier.md", "\n".join(md) + "\n")
    plot_frontier(out / "frontier.png", rows, base, spec.name)


def frontier_figure(rows: list[dict], base: dict, name: str):
    """Measured frontier per group of the other cell keys (its own colour and marker), the theory line
    m = n^2 L and the p-grid (n^2 L)^p in greys, m = nL apart, for each group's own depth (a cell's, else
    the base config's); legend beside the axes, eps in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def val(r, k):
        v = r.get(k)
        return float(v) if v is not None else (float(base[k]) if base.get(k) is not None else None)

    x_key = "data.n" if len({str(r.get("data.n")) for r in rows}) > 1 else "model.depth"
    other = sorted({k for r in rows for k in r if k not in (x_key, "frontier_width", "largest_failing")})
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple((k, r.get(k)) for k in other), []).append(r)
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    colors, markers = plt.get_cmap("tab10").colors, "osD^v<>p*h"
    any_found = False
    for i, (g, members) in enumerate(sorted(groups.items(), key=lambda kv: str(kv[0]))):
        found = sorted((r for r in members if r["frontier_width"] is not None), key=lambda r: val(r, x_key))
        label = "measured" + (" (" + ", ".join(f"{k.split('.')[-1]}={v}" for k, v in g) + ")" if g else "")
        if found:
            any_found = True
            ax.plot([val(r, x_key) for r in found], [r["frontier_width"] for r in found], "-",
                    marker=markers[i % len(markers)], color=colors[i % len(colors)], label=label, zorder=3)
    xs = sorted({val(r, x_key) for r in rows if val(r, x_key) is not None})
    # one theory family per value of the key that is not on the x axis (depth when x is n, n when x is depth)
    theory_for = sorted({(val(r, "model.depth") if x_key == "data.n" else None,
                          val(r, "data.n") if x_key != "data.n" else None) for r in rows}, key=str)
    if xs and any_found:
        for depth, n in theory_for:
            if x_key == "data.n":
                L = depth or 1.0
                tag = f" (L={L:g})" if len(theory_for) > 1 else ""
                base_line = [x * x * L for x in xs]
                nl = [x * L for x in xs]
            else:
                tag = f" (n={n:g})" if len(theory_for) > 1 else ""
                base_line = [(n or 1.0) ** 2 * x for x in xs]
                nl = [(n or 1.0) * x for x in xs]
            ax.plot(xs, base_line, "--", color="black", lw=1.2, label="theory m = n^2 L" + tag)
            for j, p in enumerate(q for q in P_GRID if q < 1):
                ax.plot(xs, [b ** p for b in base_line], ":", lw=1, color=str(0.35 + 0.1 * j),
                        label=f"(n^2 L)^{p}" + tag)
            ax.plot(xs, nl, "-.", lw=1.2, color="tab:red", label="m = nL" + tag)
        ax.set_xscale("log")
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no cell converged within the width range", ha="center", transform=ax.transAxes)
    ax.set_xlabel("n (training samples)" if x_key == "data.n" else "L (depth)")
    ax.set_ylabel("smallest converging width m")
    eps = f"eps = {base['eps']:g}" + (" x initial SSE" if base.get("eps_relative") else "")
    ax.set_title(f"{name}: smallest width at which every seed reaches {eps}\nwithin {base.get('max_epochs')} "
                 "epochs", fontsize=9)
    if any_found:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


def plot_frontier(path: Path, rows: list[dict], base: dict, name: str) -> None:
    import matplotlib.pyplot as plt

    fig = frontier_figure(rows, base, name)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
