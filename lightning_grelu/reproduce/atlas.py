"""The trainability atlas: how wide must a net be to train, measured with a step suited to each width.

For every cell (data, model, n, L, d_y) and seed, a search over widths finds the minimal width m*
at which full-batch GD with the ``ntk`` step-size policy (eta = c / lambda_max of the NTK at init)
reaches eps (relative) within the step budget: start at m = n, halve while it converges or double
while it does not, then bisect on log-width to ``resolution``; then check 2 m* and 4 m* (the search
assumes convergence is monotone in width: any failure above m* is reported, not assumed away).
Every run is an ordinary ``grelu-train`` job, so a re-run reuses finished ones and resumes the rest.
The report fits m* ~ K n^a L^b d_y^c per (data, model) with bootstrap intervals over seeds, beside
Theorem 1's m = n^2 L d_y.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from lightning_grelu.reproduce.common import runs_in
from lightning_grelu.reproduce.jobs import run_jobs
from lightning_grelu.reproduce.target import Context, Job, Target, seeds
from lightning_grelu.results import scaling, tables

MODELS = ("relu", "grelu")
PROFILES = {
    # CPU, ~15 minutes on 2 cores: Ackley (d_y = 1) and random labels on the sphere (d_y in 1, 2, 4)
    "smoke": dict(ns=[8, 16, 32, 64], depths=[2, 4], d_ys=[1, 2, 4], d=16, steps=1000, inner=100, eps=1e-4,
                  width=(1, 4096), resolution=1.5, seeds=[0, 1, 2], base=["callbacks=none"]),
    # one GPU: n up to 256, L up to 8
    "paper": dict(ns=[16, 32, 64, 128, 256], depths=[2, 4, 8], d_ys=[1, 2, 4], d=64, steps=2000, inner=100,
                  eps=1e-4, width=(1, 1 << 17), resolution=1.5, seeds=[0, 1, 2],
                  base=["callbacks=none", "trainer=gpu", "trainer.precision=32-true"]),
}


def cells(p: dict) -> list[tuple[str, int, int, int]]:
    """(data, n, L, d_y): Ackley over n x L; random labels over n x L x d_y."""
    out = [("ackley", n, L, 1) for n in p["ns"] for L in p["depths"]]
    out += [("synthetic", n, L, d_y) for n in p["ns"] for L in p["depths"] for d_y in p["d_ys"]]
    return out


def job(p: dict, data: str, model: str, n: int, depth: int, d_y: int, width: int, seed: int) -> Job:
    dims = [f"data.d={p['d']}"] if data == "ackley" else [f"data.d_in={p['d']}", f"data.d_out={d_y}"]
    label = f"{data}_{model}_n{n}_L{depth}_dy{d_y}_m{width}_s{seed}"
    return Job(label, [*p["base"], f"data={data}", f"data.n={n}", *dims, f"model={model}", f"model.depth={depth}",
                       f"model.width={width}", f"seed={seed}", "model.lr_policy=ntk",
                       f"model.inner_steps={p['inner']}", f"trainer.max_epochs={p['steps'] // p['inner']}",
                       f"eps={p['eps']}", "eps_relative=true", "stop_at_eps=true"],
               {"data": data, "model": model, "n": n, "L": depth, "d_y": d_y, "width": width, "seed": seed})


def search(converges, start: int, low: int, high: int, resolution: float) -> int | None:
    """The minimal converging width by galloping from ``start`` then bisecting on log-width; then
    2x and 4x of it are run too, so that a non-monotone answer shows in the records."""
    w = min(max(start, low), high)
    if converges(w):
        hi, lo = w, None
        while hi > low:
            w = max(low, hi // 2)
            if converges(w):
                hi = w
            else:
                lo = w
                break
        if lo is None:
            return hi
    else:
        lo, hi = w, None
        while lo < high:
            w = min(high, lo * 2)
            if converges(w):
                hi = w
                break
            lo = w
        if hi is None:
            return None
    while hi / lo > resolution:
        mid = round(math.sqrt(lo * hi))
        if mid in (lo, hi):
            break
        if converges(mid):
            hi = mid
        else:
            lo = mid
    for k in (2, 4):
        if hi * k <= high:
            converges(hi * k)
    return hi


class Atlas(Target):
    name = "atlas"
    title = "trainability atlas: minimal width vs n, L and d_y with an NTK-scaled step"
    paper = """Theorem 1: width m = Omega(n^2 L d_y) (with eta = d_x / (n^4 L^3 d_y)) suffices for GD to reach zero
training loss. Section 6.1 / Figure 2a claims it is tight: "none of the runs with lower width converged"
(m = (n^2 L)^p, p < 1, and m = nL), at one fixed learning rate for every width. In exponents: m* ~ n^2 L^1 d_y^1."""
    cannot_show = {"smoke": "widths of the paper's Fig. 2a (n = 100, L = 4); here n <= 64, L <= 4, d = 16, "
                            "1000 GD steps, eps = 1e-4 x the initial SSE, float32 on CPU."}

    def execute(self, ctx: Context, work: Path, fresh: bool, progress) -> None:
        p = PROFILES[ctx.profile]
        low, high = p["width"]
        todo = ctx.in_part([(c, model, s) for c in cells(p) for model in MODELS for s in seeds(ctx, p["seeds"])])
        answers: dict[str, bool] = {}  # this invocation's answers: --fresh redoes a job once, not per visit
        for i, ((data, n, depth, d_y), model, seed) in enumerate(todo, 1):
            def converges(width: int) -> bool:
                j = job(p, data, model, n, depth, d_y, width, seed)
                if j.label not in answers:
                    run_jobs([j], ctx, work, fresh, lambda _: None)  # reuses a finished job unless fresh
                    s = json.loads((work / j.label / "summary.json").read_text())
                    answers[j.label] = s["status"] == "completed" and s["steps_to_eps"] is not None
                return answers[j.label]

            m_star = search(converges, n, low, high, p["resolution"])
            progress(f"[{i}/{len(todo)}] {data} {model} n={n} L={depth} d_y={d_y} seed {seed}: m* = {m_star}")

    def report(self, work: Path, out: Path, ctx: Context) -> str:
        p = PROFILES[ctx.profile]
        found = scaling.searches(runs_in(work))
        groups = sorted({s.group for s in found})
        rows, fits = [], {}
        for g in groups:
            members = [s for s in found if s.group == g]
            fits[g] = scaling.fit_exponents(members)
            for cell in sorted({tuple(s.cell.values()) for s in members}):
                per_seed = [s for s in members if tuple(s.cell.values()) == cell]
                ms = [s.m_star for s in per_seed]
                n, depth, d_y = cell
                rows.append({"data": g[0], "model": g[1], "n": n, "L": depth, "d_y": d_y,
                             "m* per seed": " ".join(str(m) for m in ms),
                             "m* median": scaling.median_width(ms),
                             "fit": _round1(scaling.predict(fits[g], dict(zip(scaling.AXES, cell)))),
                             "theory n^2 L d_y": n * n * depth * d_y, "nL": n * depth,
                             "non-monotone widths": " ".join(str(v) for s in per_seed for v in s.violations) or "none"})
        tables.write_csv(rows, out / "atlas.csv")
        exp_rows = []
        for g, fit in fits.items():
            row = {"data": g[0], "model": g[1], "points": fit["points"]}
            for a in scaling.AXES:
                e = fit.get(a)
                row[f"{a} exponent [95% CI]"] = (f"{e['estimate']:.2f} [{e['ci95'][0]:.2f}, {e['ci95'][1]:.2f}]"
                                                 if e else "-")
            row["theory"] = "2, 1, 1"
            exp_rows.append(row)
        tables.write_csv(exp_rows, out / "atlas_exponents.csv")
        from lightning_grelu.results.atlas_plots import plot_axes

        plot_axes(out, found, fits)
        violations = sum(len(s.violations) for s in found)
        beyond = sum(s.m_star is None for s in found)
        censored = sum(s.censored for s in found)
        return (f"Minimal width m* per (cell, seed): the smallest width at which GD with the `ntk` step "
                f"(eta = 1 / lambda_max(NTK at init)) reached {p['eps']:g} x the initial train SSE within "
                f"{p['steps']} steps; widths searched in [{p['width'][0]}, {p['width'][1]}] to a ratio of "
                f"{p['resolution']}. {len(found)} searches; {beyond} found no converging width in range, {censored} "
                f"converged at the lowest width tried (excluded from the fit); monotonicity violations "
                f"(a width failing above m*, among m*, 2 m*, 4 m* and the search's widths): {violations}.\n\n"
                "### Exponents of m* ~ K n^a L^b d_y^c (log-log least squares; 95% bootstrap over seeds)\n\n"
                + tables.markdown(exp_rows)
                + "\n### Minimal widths\n\n" + tables.markdown(rows)
                + "\n![m* vs n](atlas_n.png) ![m* vs L](atlas_L.png) ![m* vs d_y](atlas_d_y.png)\n")


def _round1(v: float | None) -> float | None:
    return None if v is None else round(v, 1)
