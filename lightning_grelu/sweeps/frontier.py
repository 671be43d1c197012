"""Frontier mode: for each cell (e.g. depth x lr x n), the smallest width from which every seed reaches ``eps``
within the step budget, on the one width-search engine (:mod:`lightning_grelu.scan`).

A frontier is a width scan: the cells are its series, ``width.low``..``width.high`` its range on a grid of
ratio ``resolution``, and every (cell, width, seed) an ordinary trial of the sweep's study, so a re-started
frontier resumes and several workers on one study share it. Every width from ``low`` up to two grid widths
past the first one where every seed converges is run, with every seed: no convergence is assumed monotone in
width. Writes ``frontier.csv``, ``frontier.md`` and ``frontier.png`` (width vs n or depth, log axes, the
theory line m = n^2 L and the paper's p-grid m = (n^2 L)^p) in the sweep's out_dir.

    frontier:
      cells: {data.n: [8, 16], model.depth: [2], model.lr: [1.0e-4]}
      width: {low: 4, high: 512}
      seeds: [0, 1]
      resolution: 1.5      # grid ratio between consecutive widths
"""

from __future__ import annotations

import itertools
from pathlib import Path

from lightning_grelu.atomic import write_atomic, write_csv_atomic
from lightning_grelu.scan import grid
from lightning_grelu.scan.grid import P_GRID
from lightning_grelu.sweeps.spec import FrontierSpec, SweepSpec


def frontier_scan(spec: SweepSpec, fspec: FrontierSpec):
    """The frontier as a width scan on the sweep's own storage and out_dir."""
    from lightning_grelu.scan.spec import Scan

    names = list(fspec.cells)
    series = [dict(zip(names, values)) for values in itertools.product(*fspec.cells.values())] or [{}]
    return Scan(name=spec.name, base=list(spec.base), series=series, seeds=list(fspec.seeds),
                rule=grid.Rule(ratio=fspec.resolution, low=fspec.low, high=fspec.high), out_dir=spec.out_dir,
                storage=spec.storage_url(), device="cuda" if any("trainer=gpu" in b for b in spec.base) else "cpu")


class Frontier:
    def __init__(self, spec: SweepSpec, fspec: FrontierSpec, progress=print):
        from lightning_grelu.scan.engine import Engine

        self.spec, self.fspec, self.progress = spec, fspec, progress
        self.engine = Engine(frontier_scan(spec, fspec), progress)

    def run(self) -> list[dict]:
        e = self.engine
        e.run()
        answered, _ = e.states()
        rows = []
        for s in e.series:
            done = e.done(s, answered)
            m = grid.m_all(done, s.headline, e.scan.rule.beyond)
            below = [w for w in done if m is None or w < m]
            failing = [w for w in below if grid.fraction(done[w], s.headline) < 1]
            rows.append({**s.overrides, "frontier_width": m, "largest_failing": max(failing) if failing else None,
                         "m50": round(grid.m_50(done, s.headline)[0] or 0, 2) or None,
                         "non_monotone": " ".join(map(str, grid.non_monotone(done, s.headline))) or None})
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
          f"Smallest width from which every seed reaches eps = {base['eps']:g}"
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
    other = sorted({k for r in rows for k in r if k not in (x_key, "frontier_width", "largest_failing", "m50",
                                                           "non_monotone")})
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
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        for axis in (ax.xaxis, ax.yaxis):  # plain numbers (8, 16, 200), not 6x10^0
            axis.set_major_formatter(ScalarFormatter())
            axis.set_minor_formatter(NullFormatter())
        ax.set_xticks(xs)
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
