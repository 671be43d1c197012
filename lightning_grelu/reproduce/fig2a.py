"""Figure 2a: the lower trainability bound on the Ackley-like problem. Widths m = (n^2 L)^p for
p < 1 and m = nL should not reach zero loss; m = n^2 L should, for every seed, ReLU and GReLU.

Two step-size policies side by side, same widths and seeds: the paper's protocol (``fixed``: one lr for
every width) and ``ntk`` (eta = 1 / lambda_max of each net's NTK at init), so a reader sees whether
"narrower never converges" survives a step suited to each width."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lightning_grelu.reproduce.common import color
from lightning_grelu.reproduce.target import Context, Target, seeds
from lightning_grelu.results import tables
from lightning_grelu.results.plots import _pyplot
from lightning_grelu.scan import grid
from lightning_grelu.scan.grid import P_GRID
from lightning_grelu.scan.verdict import VERDICTS

if TYPE_CHECKING:
    from lightning_grelu.scan.spec import Scan

POLICIES = ("fixed", "ntk")  # the paper's one lr for every width; 1 / lambda_max(NTK) per net
PROFILES = {
    # n=10, d=10, L=2 (n^2 L = 200), 600 GD steps; CPU, a minute
    "smoke": dict(n=10, depth=2, p=P_GRID, base=["experiment=ackley_small", "trainer.max_epochs=600"]),
    # the paper's problem on this CPU: n=100, d=200, L=4, the widths up to (n^2 L)^0.7 and nL; 2000 GD steps at the
    # paper's lr 1e-4 (the paper states neither budget nor lr for Fig. 2a: these are the suite's paper profile's)
    "cpu": dict(n=100, depth=4, p=(0.5, 0.6, 0.7), base=["experiment=ackley_theory_width", "trainer=cpu",
                                                       "trainer.max_epochs=2000"]),
    # the paper's n=100, d=200, L=4 (n^2 L = 40,000), one GPU
    "paper": dict(n=100, depth=4, p=P_GRID, base=["experiment=ackley_theory_width"]),
}


def widths(n: int, depth: int, ps=P_GRID) -> dict[str, int]:
    out = {"nL": n * depth}
    out.update({f"p={p}": round((n * n * depth) ** p) for p in ps})
    return out


class Fig2a(Target):
    name = "fig2a"
    title = "lower trainability bound: widths (n^2 L)^p and nL on the Ackley-like problem, fixed lr and ntk step"
    profiles = ("smoke", "cpu", "paper")
    engine = True
    paper = """Section 6.1, Figure 2a: (n, d) = (100, 200), L = 4, full-batch GD, 5 seeds, ReLU and GReLU.
For m = n^2 L = 40,000 the plotted curve is the *maximal* loss over the 5 seeds; for m = (n^2 L)^p, p < 1,
and m = nL it is the *minimal* one. "All 5 runs with our theoretical width converged to zero error, for
both ReLU and GReLU. In contrast, none of the runs with lower width converged, for both networks."
(The paper gives curves, not numbers, and states neither the step budget nor the learning rate of Fig. 2a.)"""
    cannot_show = {"smoke": "the paper's sizes: n=10, d=10, L=2 (n^2 L = 200) on CPU, 600 GD steps; the `fixed` "
                            "policy uses one learning rate (3e-5) for every width, as the paper fixes one.",
                   "cpu": "the widths p >= 0.8 (4,804 to 40,000: hours to days per run on 2 cores); the paper's "
                          "problem itself (n=100, d=200, L=4) at nL and p <= 0.7, 2000 GD steps."}

    def scan(self, ctx: Context, work: Path) -> Scan:
        # a scan is built to run or read one, not to list targets or refuse a command
        from lightning_grelu.scan.spec import Scan

        p = PROFILES[ctx.profile]
        base = [*p["base"], "callbacks=none", "model.inner_steps=1", *ctx.overrides]
        series = [{"model": model, "model.lr_policy": policy} for policy in POLICIES for model in ("relu", "grelu")]
        ws = tuple(sorted(set(widths(p["n"], p["depth"], p["p"]).values())))
        device = "cuda" if ctx.profile == "paper" or any("trainer=gpu" in o for o in ctx.overrides) else "cpu"
        return Scan(name=f"fig2a-{ctx.profile}", base=base, series=ctx.in_part(series), space=series,
                    seeds=seeds(ctx, [0, 1, 2, 3, 4]), rule=grid.Rule(fixed=ws, high=max(ws)), out_dir=str(work),
                    storage=ctx.storage, device=device)

    def protocol(self, work: Path, ctx: Context) -> str:
        p = PROFILES[ctx.profile]
        runs = self.runs(ctx, work)
        T = runs[0].get("budget_steps") if runs else None
        fixed = sorted({r.get("lr") for r in runs if (r.get("lr_policy") or "fixed") == "fixed"})
        n_seeds = len({r.get("seed") for r in runs})
        return (f"widths (n^2 L)^p and nL at n = {p['n']}, L = {p['depth']}; {T} GD steps, the paper's fixed lr "
                f"{fixed[0] if fixed else '-'} and the ntk step, {n_seeds} seeds, ReLU and GReLU")

    def rows(self, runs, ctx: Context) -> list[dict]:
        """A row per (policy, model, width): seeds converged, verdicts, the initial and final SSE ranges."""
        p = PROFILES[ctx.profile]
        labels = {w: lbl for lbl, w in widths(p["n"], p["depth"], p["p"]).items()}
        rows = []
        for (policy, model, width), members in tables.group_runs(runs, ["lr_policy", "model", "width"]).items():
            finals = [r.get("train/sse") for r in members]
            finite = [v for v in finals if isinstance(v, (int, float))]
            initial = [v for v in (r.get("initial/train_sse") for r in members) if isinstance(v, (int, float))]
            lrs = [r.get("lr") for r in members if isinstance(r.get("lr"), (int, float))]
            eps = members[0].get("eps")
            kinds = [r.get("verdict") for r in members]
            rows.append({"lr policy": policy or "fixed", "model": model, "width": width,
                         "label": labels.get(width, "?"), "seeds": len(members),
                         "converged (train/sse <= eps)": sum(v <= eps for v in finite),
                         "verdicts conv/div/stall/unfin": "/".join(str(kinds.count(k)) for k in VERDICTS),
                         "eps": eps, "lr min": min(lrs) if lrs else None, "lr max": max(lrs) if lrs else None,
                         # the initial SSE varies ~10x across seeds: its range, not one seed's
                         "initial train/sse min": min(initial) if initial else None,
                         "initial train/sse max": max(initial) if initial else None,
                         "final train/sse min": min(finite) if finite else None,
                         "final train/sse max": max(finite) if finite else None,
                         "paper (fixed lr)": "all 5 converge" if labels.get(width) == "p=1.0" else "none converges"})
        rows.sort(key=lambda r: (r["lr policy"], r["model"], r["width"]))
        return rows

    @staticmethod
    def converged_at(rows: list[dict], policy: str, model: str) -> str:
        """The widths at which every seed converged, in words, and those at which some seed diverged."""
        mine = sorted((r for r in rows if r["lr policy"] == policy and r["model"] == model), key=lambda r: r["width"])
        ok = [r["label"] for r in mine if r["converged (train/sse <= eps)"] == r["seeds"]]
        words = ("every width" if len(ok) == len(mine) and mine else ", ".join(ok) if ok else "no width")
        diverged = [r["label"] for r in mine if int(r["verdicts conv/div/stall/unfin"].split("/")[1]) > 0]
        return words + (f" (some seed diverged at {', '.join(diverged)})" if diverged else "")

    def outcome(self, work: Path, ctx: Context) -> str:
        runs = self.runs(ctx, work)
        rows = self.rows(runs, ctx)
        if not rows:
            return ""
        T = runs[0].get("budget_steps")
        at = {(pol, model): self.converged_at(rows, pol, model) for pol in POLICIES for model in ("relu", "grelu")}
        return (f"Within {T} GD steps every seed converged at {at[('fixed', 'relu')]} for ReLU and "
                f"{at[('fixed', 'grelu')]} for GReLU with one fixed lr, and at {at[('ntk', 'relu')]} for ReLU and "
                f"{at[('ntk', 'grelu')]} for GReLU with the ntk step, where the paper says all 5 converge at p = 1 and "
                "none at any narrower width.")

    def report(self, work: Path, out: Path, ctx: Context) -> str:
        runs = self.runs(ctx, work)
        p = PROFILES[ctx.profile]
        rows = self.rows(runs, ctx)
        tables.write_csv(rows, out / "fig2a.csv")
        plot(out / "fig2a.png", runs, rows, ctx.profile)
        verdict = []
        for policy in POLICIES:
            for model in ("relu", "grelu"):
                all_in = [f"{r['label']} (m={r['width']})" for r in rows if r["lr policy"] == policy
                          and r["model"] == model and r["converged (train/sse <= eps)"] == r["seeds"]]
                if any(r["lr policy"] == policy for r in rows):
                    verdict.append(f"- {policy} lr, {model}: every seed converged at {', '.join(all_in) or 'no width'}; "
                                   "the paper (fixed lr): only p=1.0.")
        T = runs[0].get("budget_steps") if runs else None
        lead = {pol: [ln for ln in verdict if ln.startswith(f"- {pol} ")] for pol in POLICIES}
        answer = (f"**Answer.** Within {T} GD steps, to train SSE <= {rows[0]['eps'] if rows else '-'} (absolute), "
                  f"n = {p['n']}, L = {p['depth']}: " + " ".join(ln[2:].replace("; the paper (fixed lr): only p=1.0.", ".") for pol in POLICIES
                                                      for ln in lead[pol])
                  + " The paper (its fixed lr): all 5 seeds converge at p = 1, none at any narrower width.")
        return (answer + "\n\n" + f"n = {p['n']}, L = {p['depth']}, n^2 L = {p['n'] ** 2 * p['depth']}. A run converged when its final "
                "train SSE (whole training set, final weights) is <= eps. `fixed`: the paper's protocol, one lr for "
                "every width; `ntk`: eta = 1 / lambda_max of each net's NTK Gram at init (`model.lr_policy=ntk`), "
                "same widths, seeds and step budget.\n\n" + "\n".join(verdict) + "\n\n" + tables.markdown(rows)
                + "\n![Fig. 2a](fig2a.png)\n")


def plot(path: Path, runs, rows: list[dict], profile: str) -> None:
    """A panel per (policy, model): per width the paper's pick (max over seeds at p = 1, min below),
    widths in one colour ramp, and the eps line."""
    plt = _pyplot()
    policies = [pol for pol in POLICIES if any(r["lr policy"] == pol for r in rows)]
    fig, axes = plt.subplots(len(policies), 2, figsize=(11, 3.8 * len(policies)), squeeze=False, sharey=True)
    all_widths = sorted({r["width"] for r in rows})
    cmap = plt.get_cmap("viridis")
    for i, policy in enumerate(policies):
        for j, model in enumerate(("relu", "grelu")):
            ax = axes[i][j]
            for r in (r for r in rows if r["lr policy"] == policy and r["model"] == model):
                members = [m for m in runs if (m.get("lr_policy") or "fixed") == policy and m.get("model") == model
                           and m.get("width") == r["width"]]
                pick = max if r["label"] == "p=1.0" else min  # the paper's choice per width
                chosen = pick(members, key=lambda m: m.get("train/sse") if m.get("train/sse") is not None
                              else float("inf"))
                k = chosen.get("model.inner_steps", 1) or 1
                xs, ys = chosen.curve("train/sse")
                pts = [(x * k, y) for x, y in zip(xs, ys) if y > 0]
                if pts:
                    shade = cmap(all_widths.index(r["width"]) / max(len(all_widths) - 1, 1))
                    ax.plot(*zip(*pts), color=shade, lw=1.3, label=f"m={r['width']} ({r['label']})")
            eps = rows[0]["eps"] if rows else None
            if eps:
                ax.axhline(eps, color="black", ls=":", lw=1, label=f"eps = {eps:g}")
            ax.set_yscale("log")
            ax.set_title(f"{model}, {policy} lr", fontsize=10,
                         color=color(next((m for m in runs if m.get("model") == model), model)))
            ax.set_xlabel("GD step")
            if j == 0:
                ax.set_ylabel("train SSE")
            if j == 1:
                ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(f"Fig. 2a ({profile}): train SSE per width; max over seeds at p=1, min below (the paper's choice)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
