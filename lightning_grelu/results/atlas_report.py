"""The atlas's report, from run records: what the minimal width is under each protocol (T, eps), how it scales,
how runs ended, what the NTK at init predicts, and GReLU against ReLU at matched width."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from lightning_grelu.results import scaling, tables
from lightning_grelu.scan import grid, verdict

N_BOOT = 300


def _fmt(v, digits=3):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def _exp(fit: dict, axis: str) -> str:
    e = fit.get(axis)
    return f"{e['estimate']:.2f} [{e['ci95'][0]:.2f}, {e['ci95'][1]:.2f}]" if e else "-"


def _key(eps: float) -> str:
    return f"{eps:.0e}"


def verdict_counts(rs, T: int, eps: float) -> str:
    """converged/diverged/stalled/unfinished among the runs ``rs`` under (T, eps), from their records."""
    counts = {v: 0 for v in verdict.VERDICTS}
    for r in rs:
        v = ((r.summary.get("verdicts") or {}).get(str(T)) or {}).get(_key(eps))
        if v in counts:
            counts[v] += 1
    return "/".join(str(counts[v]) for v in verdict.VERDICTS)


KINDS = "conv/div/stall/unfin"


def report(runs, out: Path, *, budgets: list[int], targets, headline: tuple[int, float], seeds: int,
           max_factor: float | None = None) -> tuple[str, str]:
    """(the README's body, its one-sentence outcome)."""
    from lightning_grelu.results import atlas_plots

    found = scaling.cells(runs)
    groups = sorted({c.group for c in found})
    protocols = [(T, eps) for T in budgets for eps in targets]
    fits = {(g, p, which): scaling.fit_exponents([c for c in found if c.group == g], p, which, n_boot=N_BOOT)
            for g in groups for p in protocols for which in ("m50", "m_all")}
    of_group = {g: [r for c in found if c.group == g for per in c.runs.values() for r in per.values()] for g in groups}
    exp_rows = [{"data": g[0], "model": g[1], "T": p[0], "eps": _key(p[1]), "m*": {"m50": "m*_50", "m_all": "m*_all"}[which],
                 "cells fitted": f["points"], "outside the range": f["excluded"],
                 f"runs {KINDS}": verdict_counts(of_group[g], *p),
                 "n exponent [95% CI]": _exp(f, "n"), "L exponent [95% CI]": _exp(f, "L"),
                 "d_y exponent [95% CI]": _exp(f, "d_y"), "theory": "2, 1, 1", "counting": "0.5, -0.5, 0.5"}
                for (g, p, which), f in fits.items()]
    tables.write_csv(exp_rows, out / "atlas_exponents.csv")

    cell_rows = []
    for c in found:
        m = scaling.minimal(c, headline)
        n, L, d_y = c.cell["n"], c.cell["L"], c.cell["d_y"]
        counting = grid.counting_width(n, d_y, L)
        runs_here = [r for per in c.runs.values() for r in per.values()]
        cell_rows.append({
            "data": c.group[0], "model": c.group[1], "n": n, "L": L, "d_y": d_y, "seeds": len(c.seeds),
            "counting width": round(counting, 2), "m*_50": _fmt(m["m50"]) + ("" if m["m50_status"] == "ok" else
                                                                              f" ({m['m50_status']})"),
            "m*_all": m["m_all"] if m["m_all"] is not None else "> scanned",
            "L m*_50^2 / (n d_y)": _fmt(L * m["m50"] ** 2 / (n * d_y)) if m["m50"] else "-",
            "m*_50 / counting": _fmt(m["m50"] / counting) if m["m50"] else "-",
            "n^2 L d_y": n * n * L * d_y, "nL": n * L,
            "fraction converged per width": " ".join(f"{w}:{f:.1f}" for w, f in m["fractions"].items()),
            "non-monotone widths": " ".join(map(str, m["non_monotone"])) or "none",
            "half-step retries": sum(int(r.get("lr_retries") or 0) > 0 for r in runs_here),
            f"runs {KINDS}": verdict_counts(runs_here, *headline)})
    tables.write_csv(cell_rows, out / "atlas.csv")

    verdict_rows = []
    for g in groups:
        rs = of_group[g]
        for T in budgets:
            row = {"data": g[0], "model": g[1], "T": T, "runs": len(rs)}
            for eps in targets:
                row[f"eps {_key(eps)}: {KINDS}"] = verdict_counts(rs, T, eps)
            verdict_rows.append(row)
    tables.write_csv(verdict_rows, out / "atlas_verdicts.csv")

    ntk_rows, scatter = ntk_summary(runs, headline)
    pair_rows, overall = grelu_vs_relu(runs, headline)
    tables.write_csv(pair_rows, out / "atlas_grelu_vs_relu.csv")
    atlas_plots.phase_diagrams(out, found, headline)
    atlas_plots.exponent_vs_budget(out / "atlas_exponent_vs_T.png", fits, groups, budgets, targets)
    atlas_plots.kappa_scatter(out / "atlas_kappa_steps.png", scatter, headline)

    head_T, head_eps = headline
    text = answer(fits, groups, headline, cell_rows, overall, seeds)
    lines = [text.replace(" || ", " "), ""]
    lines += [f"Protocol of every number below: full-batch GD, eta = 1 / lambda_max(NTK at init) (exact, from the "
              f"Gram in closed form; a run that diverges is run again once at half the step), {seeds} seeds per "
              f"width, widths on a grid of ratio 1.25 from below the counting width sqrt(n d_y / L). A run "
              f"converged under (T, eps) when its train SSE reached eps x its initial SSE within T GD steps (every "
              f"step checked). Budgets T in {budgets}; targets eps in {[_key(t) for t in targets]}; the headline is "
              f"(T, eps) = ({head_T}, {_key(head_eps)}). m*_50: the width where half the seeds converge (fraction "
              "made non-decreasing in width, interpolated on log-width); m*_all: the width from which every seed "
              "converges at every larger scanned width (at least 3 in a row at the top of the scan)."
              + (f" A cell's scan goes up until every (T, eps) is resolved, but not past {max_factor:g}x its m*_all "
                 "at the headline: a protocol unresolved by then counts as beyond the scanned range (\"outside the "
                 "range\" below)." if max_factor else ""), ""]
    lines += ["### Exponents of m*_50 ~ K n^a L^b d_y^c per (T, eps)", "",
              "Log-log least squares over the cells whose m* lies inside the scanned range; 95% bootstrap intervals "
              "resample each cell's seeds. Theory (Theorem 1): (2, 1, 1); parameter counting (L m^2 = n d_y): "
              "(0.5, -0.5, 0.5).", "",
              tables.markdown([r for r in exp_rows if r["m*"] == "m*_50"]),
              f"### Exponents of m*_all at T = {head_T}", "",
              tables.markdown([r for r in exp_rows if r["m*"] == "m*_all" and r["T"] == head_T]),
              "![n exponent vs T](atlas_exponent_vs_T.png)", "",
              "### How runs ended (all widths), per budget and target", "",
              f"converged / diverged (non-finite or above {verdict.DIVERGE_FACTOR:g} x the initial SSE) / stalled "
              f"(fell by less than {verdict.STALL_RTOL:g} of its value over the last {verdict.WINDOW_FRAC:.0%} of the "
              "budget) / unfinished (still decreasing).", "", tables.markdown(verdict_rows),
              "### The NTK at init against the measured steps", "", tables.markdown(ntk_rows),
              "![kappa vs steps](atlas_kappa_steps.png)", "",
              f"### GReLU against ReLU at matched width (same seed, same C, W, B; both converged at the headline)", "",
              overall["sentence"], "", tables.markdown(pair_rows),
              f"### Minimal widths per cell at (T, eps) = ({head_T}, {_key(head_eps)})", "",
              tables.markdown(cell_rows)]
    lines += [f"![phase diagram {g[0]} {g[1]}](atlas_phase_{g[0]}_{g[1]}.png)" for g in groups]
    return "\n".join(lines) + "\n", outcome_of(text)


def outcome_of(body: str) -> str:
    """The README's one-sentence outcome (the answer paragraph's first sentence, see :func:`answer`)."""
    return body.removeprefix("**Answer.** ").split(" || ")[0]


def answer(fits, groups, headline, cell_rows, overall, seeds) -> str:
    """The README's first lines: what the minimal width is, under which protocol."""
    T, eps = headline
    parts = []
    for g in groups:
        f = fits[(g, headline, "m50")]
        if "n" in f:
            parts.append(f"{g[1]} on {g[0]}: m*_50 ~ n^{f['n']['estimate']:.2f} [{f['n']['ci95'][0]:.2f}, "
                         f"{f['n']['ci95'][1]:.2f}]")
    ratios = [float(r["m*_50 / counting"]) for r in cell_rows if r["m*_50 / counting"] != "-"]
    params = [float(r["L m*_50^2 / (n d_y)"]) for r in cell_rows if r["L m*_50^2 / (n d_y)"] != "-"]
    spread = (f"m*_50 sits {np.percentile(ratios, 10):.2g}-{np.percentile(ratios, 90):.2g}x the counting width "
              f"sqrt(n d_y / L) (10th-90th percentile over cells; {np.median(params):.2g} trained parameters per "
              f"target value at the median), far below the theory's n^2 L d_y") if ratios else ""
    sentence = (f"Under T = {T} GD steps and eps = {_key(eps)} x the initial SSE (eta = 1 / lambda_max of the NTK at "
                f"init, {seeds} seeds), " + "; ".join(parts) + (f"; {spread}" if spread else "")
                + ", where the paper's Theorem 1 says m = n^2 L d_y and its Figure 2a that this is tight.")
    return (f"**Answer.** {sentence} || The exponents are functions of the budget and target (tables below: they move "
            "with T and eps), not constants of the networks. " + overall["sentence"])


def ntk_summary(runs, headline) -> tuple[list[dict], list[tuple]]:
    """Rank correlation of kappa(NTK at init) with the measured steps to eps, and the linearised prediction
    beside the measurement, over runs that converged under the headline."""
    from scipy.stats import spearmanr

    T, eps = headline
    key = f"steps_to/{eps:.0e}"
    points = []
    for r in runs:
        s = r.summary
        steps, kappa, pred = s.get(key), s.get("ntk/cond_init"), s.get(f"ntk/predicted_{key}")
        if steps is not None and steps <= T and steps > 0 and kappa and math.isfinite(kappa):
            points.append((r.get("model"), float(kappa), float(steps), pred))
    rows = []
    for model in sorted({p[0] for p in points}) + ["all"]:
        ps = [p for p in points if model == "all" or p[0] == model]
        if len(ps) < 3:
            continue
        rho = spearmanr([p[1] for p in ps], [p[2] for p in ps]).statistic
        with_pred = [p for p in ps if p[3]]
        ratio = np.median([p[2] / p[3] for p in with_pred]) if with_pred else None
        rho_pred = spearmanr([p[3] for p in with_pred], [p[2] for p in with_pred]).statistic if len(with_pred) > 2 else None
        rows.append({"model": model, "converged runs": len(ps), "Spearman(kappa, steps)": _fmt(float(rho)),
                     "Spearman(linearised prediction, steps)": _fmt(float(rho_pred)) if rho_pred is not None else "-",
                     "measured / predicted steps, median": _fmt(float(ratio)) if ratio is not None else "-"})
    return rows, points


def grelu_vs_relu(runs, headline) -> tuple[list[dict], dict]:
    """Per width, the paired ratio ReLU steps / GReLU steps to eps (same cell, width and seed), and the ratio of
    their NTK condition numbers."""
    T, eps = headline
    key = f"steps_to/{eps:.0e}"
    by = {}
    for r in runs:
        cell = (r.get("data"), r.get("n_train"), r.get("depth"), scaling.d_y_of(r), r.get("width"), r.get("seed"))
        by.setdefault(cell, {})[r.get("model")] = r.summary
    pairs = []
    for cell, models in by.items():
        a, b = models.get("relu"), models.get("grelu")
        if a and b and a.get(key) is not None and b.get(key) is not None and a[key] <= T and b[key] <= T:
            pairs.append((cell[4], a[key], b[key], a.get("ntk/cond_init"), b.get("ntk/cond_init")))
    rows = []
    for w in sorted({p[0] for p in pairs}):
        ps = [p for p in pairs if p[0] == w]
        r = grid.paired_ratio([p[1] for p in ps], [p[2] for p in ps])
        k = [p[3] / p[4] for p in ps if p[3] and p[4]]
        if r:
            rows.append({"width": w, "pairs": r["pairs"], "ReLU / GReLU steps, median [95% CI]":
                         f"{r['median']:.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]",
                         "GReLU faster": f"{sum(p[2] < p[1] for p in ps)} of {len(ps)}",
                         "ReLU / GReLU kappa, median": _fmt(float(np.median(k))) if k else "-"})
    overall = grid.paired_ratio([p[1] for p in pairs], [p[2] for p in pairs])
    kappa = [p[3] / p[4] for p in pairs if p[3] and p[4]]
    if overall:
        sentence = (f"The paper says GReLU converges faster than ReLU; here, at matched width and seed, GReLU reached "
                    f"{_key(eps)} within {T} steps in fewer steps than ReLU in {sum(p[2] < p[1] for p in pairs)} of "
                    f"{len(pairs)} pairs (ReLU / GReLU steps: median {overall['median']:.2f} "
                    f"[{overall['ci95'][0]:.2f}, {overall['ci95'][1]:.2f}]), with an NTK at init "
                    f"{float(np.median(kappa)):.2f}x better conditioned (median ReLU / GReLU kappa).")
    else:
        sentence = "No width had both a ReLU and a GReLU run converge at the headline: no paired comparison."
    return rows, {"sentence": sentence, **(overall or {})}
