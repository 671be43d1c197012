"""Figures from run records (matplotlib, Agg): loss curves overlaid, log y."""

from __future__ import annotations

from pathlib import Path

from lightning_grelu.results.records import Run


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves(path: Path, series: list[tuple[str, list[float], list[float], dict]], title: str, ylabel: str,
           xlabel: str = "epoch", logy: bool = True, vlines: list[float] = ()) -> None:
    """``series``: (label, xs, ys, matplotlib style kwargs)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    drawn = False
    for label, xs, ys, style in series:
        if logy:
            xs, ys = zip(*[(x, y) for x, y in zip(xs, ys) if y > 0]) if any(y > 0 for y in ys) else ((), ())
        if xs:
            ax.plot(xs, ys, label=label, **style)
            drawn = True
    for x in vlines:
        ax.axvline(x, color="grey", lw=0.8, ls=":")
    if logy and drawn:
        ax.set_yscale("log")
    if not drawn:
        ax.text(0.5, 0.5, "no finite values to plot", ha="center", transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if drawn and len(series) <= 16:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def loss_curves(path: Path, runs: list[Run], label_of, column: str = "train/sse", title: str = "") -> None:
    series = []
    for r in runs:
        xs, ys = r.curve(column)
        series.append((label_of(r), xs, ys, {"lw": 1}))
    curves(path, series, title or column, column)
