"""Figures 2b and 2c on SGEMM: the temporal difference of gradients ||g_t - g_{t-1}|| (ReLU vs GReLU)
and the fraction of ReLU activation patterns that flip every epoch."""

from __future__ import annotations

from pathlib import Path

from lightning_grelu.reproduce.common import budget_of, color, first_last, num, runs_in, step_of
from lightning_grelu.reproduce.target import Context, Job, Target
from lightning_grelu.results import plots, tables

SMOKE = ["trainer=cpu", "model.width=256", "model.depth=4", "data.limit_train=4000", "data.batch_size=500",
         "trainer.max_epochs=10", "callbacks.activation_patterns.size=512"]
SMOKE_NOTE = ("the paper's sizes: 4,000 training rows, width 256, depth 4, 10 epochs (batch 500) on CPU.")


class Fig2b(Target):
    name = "fig2b"
    title = "temporal difference of gradients on SGEMM, ReLU vs GReLU"
    data = "sgemm"
    preset = "fig2b_sgemm"
    column = "probe/grad_diff"
    paper = """Section 6.3, Figure 2b (lr 1e-4): "The gradient differences of the GReLU network are smaller than
the ones of the ReLU network, and gradually decrease along the convergence to the global optima. [...] The
gradient differences of the ReLU network increase monotonically along the training." (Curves only.)"""
    cannot_show = {"smoke": SMOKE_NOTE}

    def jobs(self, ctx: Context) -> list[Job]:
        extra = SMOKE if ctx.profile == "smoke" else []
        return [Job(model, [f"experiment={self.preset}", f"model={model}", "seed=0", *extra])
                for model in ("grelu", "relu")]

    def protocol(self, work: Path, ctx: Context) -> str:
        runs = runs_in(work)
        r = runs[0] if runs else None
        size = f", width {r.get('width')} depth {r.get('depth')}" if r else ""
        return f"{self.title}{size}, {budget_of(runs)}, {step_of(runs)}"

    def curves(self, work: Path) -> dict[str, list[float]]:
        return {str(r.get("model")): r.curve(self.column)[1] for r in runs_in(work)}

    def outcome(self, work: Path, ctx: Context) -> str:
        ys = self.curves(work)
        g, r = ys.get("grelu"), ys.get("relu")
        if not g or not r:
            return ""
        mean = lambda v: sum(v) / len(v)  # noqa: E731
        claims = [("GReLU's gradient differences are smaller than ReLU's", mean(g) < mean(r)),
                  ("GReLU's decrease", g[-1] < g[0]), ("ReLU's increase", r[-1] > r[0])]
        held = [c for c, ok in claims if ok]
        failed = [c for c, ok in claims if not ok]
        said = (f"of the paper's three claims, {len(held)} hold here" + (f" ({'; '.join(held)})" if held else "")
                + (f" and {len(failed)} do not ({'; '.join(failed)})" if failed else ""))
        return (f"{said[0].upper() + said[1:]}: mean {num(mean(g))} (GReLU) vs {num(mean(r))} (ReLU); first -> last "
                f"epoch {num(g[0])} -> {num(g[-1])} (GReLU), {num(r[0])} -> {num(r[-1])} (ReLU).")

    def report(self, work: Path, out: Path, ctx: Context) -> str:
        runs = sorted(runs_in(work), key=lambda r: str(r.get("model")))
        rows = []
        for r in runs:
            first, last = first_last(r, self.column)
            _, ys = r.curve(self.column)
            rows.append({"model": r.get("model"), "epochs": len(ys), f"{self.column} first epoch": first,
                         f"{self.column} last epoch": last, "last / first": (last / first) if first else None,
                         "mean": sum(ys) / len(ys) if ys else None, "final train/sse": r.get("train/sse")})
        tables.write_csv(rows, out / f"{self.name}.csv")
        series = [(str(r.get("model")), *r.curve(self.column), {"color": color(r), "lw": 1.2}) for r in runs]
        plots.curves(out / f"{self.name}.png", series, f"{self.name} ({ctx.profile})", self.column + " (epoch mean)")
        return (f"`{self.column}`: the epoch's mean (see the README's probe table).\n\n" + tables.markdown(rows)
                + f"\n![{self.name}]({self.name}.png)\n")


class Fig2c(Fig2b):
    name = "fig2c"
    title = "fraction of ReLU activation patterns flipping every epoch on SGEMM"
    preset = "fig2c_sgemm"
    column = "probe/hamming"
    paper = """Section 6.3, Figure 2c: the mean Hamming distance between the ReLU network's activation patterns
at consecutive epochs, over a validation set: "a large portion of the activations, **20% - 25%**, changes
every epoch and keep increasing along the run." GReLU's patterns are fixed (0 by construction)."""

    def jobs(self, ctx: Context) -> list[Job]:
        extra = SMOKE if ctx.profile == "smoke" else []
        return [Job(model, [f"experiment={self.preset}", f"model={model}", "seed=0", *extra])
                for model in ("relu", "grelu")]

    def outcome(self, work: Path, ctx: Context) -> str:
        r = self.curves(work).get("relu")
        if not r:
            return ""
        mean = sum(r) / len(r)
        verdict = "As the paper says" if 0.2 <= mean <= 0.25 else "Unlike the paper's 20-25%"
        trend = "rising" if r[-1] > r[0] else "not rising"
        return (f"{verdict}, {num(100 * mean)}% of the ReLU net's activations flip per epoch on average here "
                f"({num(100 * r[0])}% -> {num(100 * r[-1])}% from the first to the last epoch: {trend}); GReLU's "
                "never flip.")
