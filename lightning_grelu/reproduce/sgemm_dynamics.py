"""Figures 2b and 2c on SGEMM: the temporal difference of gradients ||g_t - g_{t-1}|| (ReLU vs GReLU)
and the fraction of ReLU activation patterns that flip every epoch."""

from __future__ import annotations

from pathlib import Path

from lightning_grelu.reproduce.common import color, first_last, runs_in
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
        series = [(str(r.get("model")), *r.curve(self.column), {"color": color(r.get("model")), "lw": 1.2}) for r in runs]
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
