"""The trainability atlas: how wide must a net be to train, as a function of the step budget T and the target eps.

For every cell (data: Ackley with d_y = 1, or random Gaussian labels on the sphere with d_y in 1, 2, 4; model;
n; L) the width-search engine (:mod:`lightning_grelu.scan`) runs every width of a geometric grid from below the
parameter-counting width sqrt(n d_y / L) up to where every seed converges, 5 seeds each, full-batch GD with
the ``ntk`` step (eta = 1 / lambda_max of the NTK at init, exact; retried once at half the step if it
diverges). Each run records the first step reaching each relative target (1e-2 ... 1e-8 x the initial SSE),
so m*(T, eps) for every budget T up to the run's and every target comes from the same runs. The report
(:mod:`lightning_grelu.results.atlas_report`) gives m*_50 and m*_all per cell and protocol, their exponents in
n, L, d_y with bootstrap intervals beside the theory's and parameter counting's, verdict counts, the NTK
condition number against the steps, and GReLU against ReLU at matched width.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lightning_grelu.reproduce.target import Context, Target, seeds
from lightning_grelu.scan import grid

if TYPE_CHECKING:
    from lightning_grelu.scan.spec import Scan

MODELS = ("relu", "grelu")
TARGETS = (1e-2, 1e-4, 1e-6, 1e-8)  # relative to the initial train SSE; float32 resolves 1e-8 here (tested)
PROFILES = {
    # CPU, ~20 minutes on 2 cores (tests and CI use a part of it)
    "smoke": dict(ns=[8, 16, 32, 64], depths=[2, 4], d_ys=[1, 2, 4], d=16, budgets=[300, 1000, 3000],
                  high=1024, seeds=[0, 1, 2, 3, 4], base=[]),
    # CPU, about 2 hours on 2 cores: n up to 256, L up to 8, T up to 10^4
    "cpu": dict(ns=[16, 32, 64, 128, 256], depths=[2, 4, 8], d_ys=[1, 2, 4], d=16, budgets=[1000, 3000, 10000],
                high=4096, seeds=[0, 1, 2, 3, 4], base=[]),
    # one GPU: n up to 1024, T up to 10^5
    "paper": dict(ns=[16, 32, 64, 128, 256, 512, 1024], depths=[2, 4, 8], d_ys=[1, 2, 4], d=64,
                  budgets=[1000, 10000, 100000], high=1 << 15, seeds=[0, 1, 2, 3, 4], base=["trainer=gpu",
                                                                                           "trainer.precision=32-true"]),
}
HEADLINE_EPS = 1e-4
# The scan goes up until every target is resolved within the largest budget, but not past 3x the headline's
# m*_all: a deep ReLU net chasing 1e-8 would otherwise walk the grid to `high` (hours per width on a CPU); a
# target unresolved by then is reported as beyond the scanned range.
MAX_FACTOR = 3.0


def cells(p: dict) -> list[tuple[str, int, int, int]]:
    """(data, n, L, d_y): Ackley over n x L; random labels over n x L x d_y."""
    out = [("ackley", n, L, 1) for n in p["ns"] for L in p["depths"]]
    out += [("synthetic", n, L, d_y) for n in p["ns"] for L in p["depths"] for d_y in p["d_ys"]]
    return out


def series(p: dict) -> list[dict]:
    out = []
    for data, n, depth, d_y in cells(p):
        dims = {"data.d": p["d"]} if data == "ackley" else {"data.d_in": p["d"], "data.d_out": d_y}
        for model in MODELS:
            out.append({"data": data, "data.n": n, **dims, "model": model, "model.depth": depth})
    return out


def scan(ctx: Context, work: Path) -> Scan:
    # a scan is built to run or read one, not to list targets or refuse a command
    from lightning_grelu.scan.spec import Scan

    p = PROFILES[ctx.profile]
    T = max(p["budgets"])
    base = ["callbacks=none", "model.lr_policy=ntk", "model.inner_steps=1", f"trainer.max_epochs={T}",
            f"eps={HEADLINE_EPS}", "eps_relative=true", f"targets=[{','.join(f'{t:g}' for t in TARGETS)}]",
            "stop_at_eps=true", *p["base"], *ctx.overrides]
    device = "cuda" if any(o.startswith("trainer=gpu") for o in base) else "cpu"
    return Scan(name=f"atlas-{ctx.profile}", base=base, series=ctx.in_part(series(p)), space=series(p), seeds=seeds(ctx, p["seeds"]),
                rule=grid.Rule(ratio=1.25, high=p["high"], max_factor=MAX_FACTOR), budgets=list(p["budgets"]),
                stop_on=[(T, t) for t in TARGETS], out_dir=str(work), storage=ctx.storage, device=device)


class Atlas(Target):
    name = "atlas"
    title = "trainability atlas: minimal width m*(T, eps) vs n, L and d_y with an exact NTK step"
    profiles = ("smoke", "cpu", "paper")
    engine = True
    paper = """Theorem 1: width m = Omega(n^2 L d_y) (with eta = d_x / (n^4 L^3 d_y)) suffices for GD to reach zero
training loss in T = O(log(n^3 L / (d_x eps))) steps. Section 6.1 / Figure 2a claims it is tight: "none of the runs
with lower width converged" (m = (n^2 L)^p, p < 1, and m = nL), at one fixed learning rate for every width. In
exponents: m* ~ n^2 L^1 d_y^1. Section 4 / Table 2: GReLU converges faster than ReLU."""
    cannot_show = {"smoke": "widths of the paper's Fig. 2a (n = 100, L = 4); here n <= 64, L <= 4, d = 16, T <= 3000 "
                            "GD steps, float32 on CPU: exponents over 3 octaves of n carry wide intervals.",
                   "cpu": "n above 256 and budgets above 10^4 steps (the `paper` profile, one GPU); d = 16, float32."}

    def scan(self, ctx: Context, work: Path) -> Scan:
        return scan(ctx, work)

    def protocol(self, work: Path, ctx: Context) -> str:
        """What was run, read from the run records (the profile's values where there are none yet)."""
        p, runs = PROFILES[ctx.profile], self.runs(ctx, work)

        def values(key: str, default: list) -> list:
            return sorted({r.get(key) for r in runs if r.get(key) is not None}) or default

        ns, depths, d_ys = values("n_train", p["ns"]), values("depth", p["depths"]), values("d_out", p["d_ys"])
        T = max(values("budget_steps", [max(p["budgets"])]))
        n_seeds = len(values("seed", seeds(ctx, p["seeds"])))
        return (f"minimal width m*(T, eps) vs n in {ns[0]}..{ns[-1]}, L in {depths}, d_y in {d_ys}; ntk step (exact), "
                f"T up to {T} GD steps, eps 1e-2..1e-8 x the initial SSE, {n_seeds} seeds")

    def outcome(self, work: Path, ctx: Context) -> str:
        """The answer's first sentence, from the fits the report makes (made here when no report was)."""
        if getattr(self, "_outcome_of", None) != (work, ctx.profile):
            import tempfile

            with tempfile.TemporaryDirectory() as scratch:
                self.report(work, Path(scratch), ctx)
        return self._outcome

    def report(self, work: Path, out: Path, ctx: Context) -> str:
        from lightning_grelu.results import atlas_report

        p = PROFILES[ctx.profile]
        self._outcome_of = (work, ctx.profile)
        body, self._outcome = atlas_report.report(self.runs(ctx, work), out, budgets=p["budgets"], targets=TARGETS,
                                   headline=(max(p["budgets"]), HEADLINE_EPS), seeds=len(seeds(ctx, p["seeds"])),
                                   max_factor=MAX_FACTOR)
        return body
