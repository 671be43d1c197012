"""The atlas's figures: a phase diagram per (data, model) (width against n, colour = fraction of seeds converged,
one panel per (L, d_y), with the counting width, n^2 L d_y and nL drawn on it), the n-exponent of m*_50 against
the budget T per target, and kappa(NTK at init) against the measured steps."""

from __future__ import annotations

import math
from pathlib import Path

from lightning_grelu.results import scaling
from lightning_grelu.results.plots import _pyplot
from lightning_grelu.scan import grid


def phase_diagrams(out: Path, found: list[scaling.Cell], protocol) -> None:
    for g in sorted({c.group for c in found}):
        phase_diagram(out / f"atlas_phase_{g[0]}_{g[1]}.png", [c for c in found if c.group == g], protocol, g)


def phase_diagram(path: Path, cells: list[scaling.Cell], protocol, group) -> None:
    plt = _pyplot()
    panels = sorted({(c.cell["L"], c.cell["d_y"]) for c in cells})
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False, sharex=True, sharey=True)
    cmap = plt.get_cmap("viridis")
    for ax, (L, d_y) in zip(axes.flat, panels):
        mine = sorted((c for c in cells if (c.cell["L"], c.cell["d_y"]) == (L, d_y)), key=lambda c: c.cell["n"])
        for c in mine:
            for w, f in grid.fractions(c.done(), protocol).items():
                ax.scatter(c.cell["n"], w, c=[cmap(f)], s=28, marker="s", edgecolors="none", zorder=3)
        ns = sorted({c.cell["n"] for c in mine})
        if ns:
            ax.plot(ns, [grid.counting_width(n, d_y, L) for n in ns], "--", color="black", lw=1,
                    label="counting sqrt(n d_y / L)")
            ax.plot(ns, [n * n * L * d_y for n in ns], "-", color="tab:red", lw=1, label="theory n^2 L d_y")
            ax.plot(ns, [n * L for n in ns], ":", color="tab:orange", lw=1.2, label="nL")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_title(f"L = {L}, d_y = {d_y}", fontsize=9)
        ax.set_xlabel("n")
        ax.set_ylabel("width m")
        top = max((w for c in mine for w in c.answers), default=2)
        ax.set_ylim(0.8, top * 2.5)
        if ns and ns[0] ** 2 * L * d_y > top * 2.5:  # the theory's width lies far above every scanned one
            ax.text(0.02, 0.97, f"theory n^2 L d_y >= {ns[0] ** 2 * L * d_y}: above the frame", fontsize=7,
                    color="tab:red", transform=ax.transAxes, va="top")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    fig.colorbar(sm, ax=axes, fraction=0.03, label="fraction of seeds converged")
    fig.legend(handles, labels, loc="upper center", ncol=3, fontsize=8, bbox_to_anchor=(0.45, 1.02))
    T, eps = protocol
    fig.suptitle(f"{group[1]} on {group[0]}: reached {eps:.0e} x initial SSE within {T} GD steps", fontsize=10,
                 y=1.06)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def exponent_vs_budget(path: Path, fits: dict, groups, budgets, targets) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 3.4), squeeze=False, sharey=True)
    for ax, g in zip(axes[0], groups):
        for eps in targets:
            pts = [(T, fits[(g, (T, eps), "m50")].get("n")) for T in budgets]
            pts = [(T, e) for T, e in pts if e]
            if pts:
                ax.errorbar([T for T, _ in pts], [e["estimate"] for _, e in pts],
                            yerr=[[e["estimate"] - e["ci95"][0] for _, e in pts],
                                  [e["ci95"][1] - e["estimate"] for _, e in pts]], marker="o", capsize=3,
                            label=f"eps {eps:.0e}")
        ax.axhline(2.0, color="tab:red", lw=1, label="theory 2")
        ax.axhline(0.5, color="black", ls="--", lw=1, label="counting 0.5")
        ax.set_xscale("log")
        ax.set_xlabel("budget T (GD steps)")
        ax.set_title(f"{g[1]} on {g[0]}", fontsize=9)
    axes[0][0].set_ylabel("n exponent of m*_50")
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def kappa_scatter(path: Path, points: list[tuple], protocol) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    colors = {"relu": "tab:red", "grelu": "tab:blue"}
    for model in sorted({p[0] for p in points}):
        ps = [p for p in points if p[0] == model]
        axes[0].scatter([p[1] for p in ps], [p[2] for p in ps], s=8, alpha=0.5, color=colors.get(model), label=model)
        pp = [p for p in ps if p[3]]
        axes[1].scatter([p[3] for p in pp], [p[2] for p in pp], s=8, alpha=0.5, color=colors.get(model), label=model)
    for ax, xl in zip(axes, ("kappa = lambda_max / lambda_min of the NTK at init",
                             "linearised GD's steps (model linearised at init)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel("measured steps to eps")
        ax.legend(fontsize=8)
    if any(p[3] for p in points):
        lo = min(min(p[3] for p in points if p[3]), min(p[2] for p in points))
        hi = max(max(p[3] for p in points if p[3]), max(p[2] for p in points))
        axes[1].plot([lo, hi], [lo, hi], color="black", lw=1)
    T, eps = protocol
    fig.suptitle(f"runs that reached {eps:.0e} x initial SSE within {T} steps", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
