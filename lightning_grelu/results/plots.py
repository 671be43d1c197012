"""Figures from run records (matplotlib, Agg): loss curves overlaid, log y."""

from __future__ import annotations

from pathlib import Path

from lightning_grelu.results.records import Run


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves_figure(series: list[tuple[str, list[float], list[float], dict]], title: str, ylabel: str,
                  xlabel: str = "epoch", logy: bool = True, vlines: list[float] = (), vline_label: str = ""):
    """``series``: (label, xs, ys, matplotlib style kwargs). ``vlines`` (e.g. the switch epoch) get one
    legend entry, ``vline_label``. The legend sits beside the axes, never over the curves."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.6, 4.4))
    drawn = False
    for label, xs, ys, style in series:
        if logy:
            xs, ys = zip(*[(x, y) for x, y in zip(xs, ys) if y > 0]) if any(y > 0 for y in ys) else ((), ())
        if xs:
            ax.plot(xs, ys, label=label, **style)
            drawn = True
    for i, x in enumerate(vlines):
        ax.axvline(x, color="grey", lw=0.8, ls=":", label=(vline_label or None) if i == 0 else None)
    if logy and drawn:
        ax.set_yscale("log")
    if not drawn:
        ax.text(0.5, 0.5, "no finite values to plot", ha="center", transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if drawn and len(series) <= 16:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


def curves(path: Path, *args, **kwargs) -> None:
    plt = _pyplot()
    fig = curves_figure(*args, **kwargs)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def line_styles(values) -> dict:
    """A distinct dash pattern per distinct value (e.g. per depth), in sorted order."""
    dashes = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3))]
    return {v: dashes[i % len(dashes)] for i, v in enumerate(sorted(set(values)))}


def loss_curves(path: Path, runs: list[Run], label_of, column: str = "train/sse", title: str = "") -> None:
    series = []
    for r in runs:
        xs, ys = r.curve(column)
        series.append((label_of(r), xs, ys, {"lw": 1}))
    curves(path, series, title or column, column)


def grouped_loss_curves(path: Path, runs: list[Run], by: list[str], column: str = "train/sse") -> None:
    plt = _pyplot()
    fig = grouped_loss_figure(runs, by, column)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def grouped_loss_figure(runs: list[Run], by: list[str], column: str = "train/sse"):
    """Many runs, legibly: one colour per group (its keys), one compact legend entry per group (the values of
    the keys that differ between groups, and its run count; keys every group shares go to the title), x in GD
    steps (``step``: runs with different steps per epoch share the axis truthfully), log y limited from the
    smallest value to just above the largest starting loss (a diverged run's 1e22 does not flatten the
    others). A diverged run ends in an x at its last finite value (a run that diverged at once is that x
    alone), with one legend entry saying so."""
    import numpy as np

    from lightning_grelu.results.tables import fmt, group_runs

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.4, 4.8))
    groups = group_runs(runs, by)
    differ = [i for i in range(len(by)) if len({k[i] for k in groups}) > 1]
    shared = [f"{by[i]}={fmt(next(iter(groups))[i])}" for i in range(len(by)) if i not in differ and groups]
    cmap = plt.get_cmap("tab10" if len(groups) <= 10 else "viridis")
    values, starts, diverged = [], [], False
    for i, (key, members) in enumerate(groups.items()):
        colour = cmap(i % 10) if len(groups) <= 10 else cmap(i / max(len(groups) - 1, 1))
        name = ", ".join(fmt(key[j]) for j in differ) or "all"
        label = f"{name[:32]} ({len(members)})"
        for j, r in enumerate(members):
            xs, ys = r.curve(column, x="step" if r.metrics.get("step") else "epoch")
            pts = [(x, y) for x, y in zip(xs, ys) if y > 0]
            if pts:
                ax.plot(*zip(*pts), color=colour, lw=0.9, alpha=0.8, label=label if j == 0 else None)
                values += [y for _, y in pts]
                starts.append(pts[0][1])
                if r.get("status") == "diverged":
                    ax.plot(*pts[-1], marker="x", ms=8, mew=1.6, color=colour, ls="none",
                            label=None if diverged else "x: diverged (last finite value)")
                    diverged = True
    if values:
        ax.set_yscale("log")
        # top: a little above the largest starting loss (a diverging run leaves the plot upwards, marked as
        # such by its line; it no longer squeezes every other run into one band); bottom: the smallest value
        logs = np.log10(values)
        ax.set_ylim(10 ** (logs.min() - 0.2), 10 ** (np.log10(max(starts)) + 0.5))
        title = ", ".join(by[j] for j in differ) + " (runs)" if differ else "runs"
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, title=title,
                  title_fontsize=7)
    else:
        ax.text(0.5, 0.5, "no finite values to plot", ha="center", transform=ax.transAxes)
    ax.set_xlabel("GD step")
    ax.set_ylabel(column)
    where = f"; {', '.join(shared)}" if shared else ""
    ax.set_title(f"{column} per GD step, {_plural(len(runs), 'run')} in {_plural(len(groups), 'group')}{where}",
                 fontsize=10)
    fig.tight_layout()
    return fig
