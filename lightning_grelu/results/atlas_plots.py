"""The atlas's figures: minimal width m* against one axis (n, L or d_y), the other two held at their
smallest values, per (data, model): the seeds' m* (dots), their median (line), the fitted power law
(dashed) and the theory line m = n^2 L d_y (black)."""

from __future__ import annotations

import math
from pathlib import Path

from lightning_grelu.results import scaling
from lightning_grelu.results.plots import _pyplot

STYLE = {("ackley", "relu"): ("tab:red", "o"), ("ackley", "grelu"): ("tab:blue", "o"),
         ("synthetic", "relu"): ("tab:orange", "s"), ("synthetic", "grelu"): ("tab:cyan", "s")}


def plot_axes(out: Path, found: list[scaling.Search], fits: dict) -> None:
    for axis in scaling.AXES:
        plot_axis(out / f"atlas_{axis}.png", axis, found, fits)


def plot_axis(path: Path, axis: str, found: list[scaling.Search], fits: dict) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    others = [a for a in scaling.AXES if a != axis]
    fixed = {a: min(s.cell[a] for s in found) for a in others} if found else {}
    xs_all: set[int] = set()
    for group in sorted({s.group for s in found}):
        pts = [s for s in found if s.group == group and all(s.cell[a] == fixed[a] for a in others)]
        xs = sorted({s.cell[axis] for s in pts})
        if len(xs) < 2:
            continue  # this axis does not vary for this group (Ackley has d_y = 1 only)
        xs_all.update(xs)
        color, marker = STYLE.get(group, ("grey", "^"))
        label = f"{group[0]} {group[1]}"
        for s in pts:
            if s.m_star is not None:
                ax.plot(s.cell[axis], s.m_star, marker, color=color, alpha=0.35, ms=4)
        med = [(x, scaling.median_width([s.m_star for s in pts if s.cell[axis] == x])) for x in xs]
        med = [(x, m) for x, m in med if m is not None]
        if med:
            ax.plot(*zip(*med), "-", color=color, lw=1.5, label=f"{label}: m* (median of seeds)")
        fit = fits.get(group, {})
        if axis in fit:
            pred = [scaling.predict(fit, {**fixed, axis: x}) for x in xs]
            ax.plot(xs, pred, "--", color=color, lw=1,
                    label=f"{label}: fit, exponent {fit[axis]['estimate']:.2f}")
    if xs_all:
        xs = sorted(xs_all)
        theory = [math.prod({**fixed, axis: x}[a] ** scaling.THEORY[a] for a in scaling.AXES) for x in xs]
        ax.plot(xs, theory, "k-", lw=1.2, label="theory m = n^2 L d_y")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(xs, [str(x) for x in xs])  # the values measured, not log-decade labels
        ax.minorticks_off()
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        ax.text(0.5, 0.5, f"{axis} does not vary in these records", ha="center", transform=ax.transAxes)
    held = ", ".join(f"{a} = {v}" for a, v in fixed.items())
    ax.set_title(f"Minimal width m* vs {axis} ({held}); ntk step", fontsize=10)
    ax.set_xlabel(axis)
    ax.set_ylabel("minimal converging width m*")
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)

