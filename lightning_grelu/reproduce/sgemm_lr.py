"""Figures 4 and 5 on SGEMM: loss per epoch across learning rates (GReLU and ReLU, w4096 d10), GReLU
across widths x depths at a fixed lr, and the high-lr comparison (monotone vs oscillating)."""

from __future__ import annotations

from pathlib import Path

from lightning_grelu.reproduce.common import budget_of, color, largest_rise, monotone_fraction, num, runs_in
from lightning_grelu.reproduce.target import Context, Job, Target
from lightning_grelu.results import plots, tables

# The paper does not list its learning rates; these span two decades around its usual 1e-4.
LRS = [1.0e-5, 3.0e-5, 1.0e-4, 3.0e-4, 1.0e-3]
HIGH_LRS = [3.0e-4, 1.0e-3]
SIZES = {"smoke": dict(width=128, depth=4, widths=[64, 128], depths=[2, 4],
                       run=["trainer=cpu", "data.limit_train=4000", "data.batch_size=500", "trainer.max_epochs=10"]),
         "paper": dict(width=4096, depth=10, widths=[1024, 2048, 4096], depths=[4, 7, 10],
                       run=["trainer=gpu", "data.batch_size=4096", "trainer.max_epochs=20"])}
BASE = ["data=sgemm", "callbacks=[default,probes]", "seed=0"]
NOTE = "the paper's sizes: 4,000 training rows, width 128, depth 4, 10 epochs (batch 500) on CPU."


def _row(r) -> dict:
    _, ys = r.curve("train/sse")
    return {"model": r.get("model"), "width": r.get("width"), "depth": r.get("depth"), "lr": r.get("lr"),
            "status": r.get("status"), "final train/sse": r.get("train/sse"), "final test/sse": r.get("test/sse"),
            "monotone fraction": monotone_fraction(ys), "largest rise": largest_rise(ys)}


def high_lr_outcome(runs, lrs: list[float]) -> str:
    """The paper's claim at high lrs (GReLU more monotone, lower loss than ReLU), checked per lr in one sentence."""
    by = {(r.get("model"), r.get("lr")): r for r in runs}
    parts, held = [], 0
    for lr in lrs:
        g, r = by.get(("grelu", lr)), by.get(("relu", lr))
        if g is None or r is None:
            continue
        gm, rm = monotone_fraction(g.curve("train/sse")[1]), monotone_fraction(r.curve("train/sse")[1])
        gs, rs = g.get("train/sse"), r.get("train/sse")
        ok = gm is not None and rm is not None and gm >= rm and gs is not None and (rs is None or gs < rs)
        held += ok
        parts.append(f"lr {lr:g}: monotone fraction {num(gm)} / {num(rm)}, final train SSE {num(gs)} / {num(rs)}")
    if not parts:
        return ""
    verdict = ("As the paper says" if held == len(parts) else "Unlike the paper" if held == 0 else
               f"Partly as the paper says ({held} of {len(parts)} lrs)")
    return (f"{verdict}, GReLU's loss decreases at least as monotonically as ReLU's and ends lower at high lrs "
            f"(GReLU / ReLU, {'; '.join(parts)}).")


class Fig4(Target):
    name = "fig4"
    title = "SGEMM loss across learning rates (4a GReLU, 4b ReLU) and across widths x depths (4c)"
    data = "sgemm"
    paper = """Section 9, Figure 4 (w4096 d10): "While for smaller rates results are quite similar, for larger ones
the losses of the GReLU network decrease more monotonically and reach lower values." 4c (GReLU, fixed lr):
"both increased depth and width improve the results, deeper and narrower networks perform better for the
same number of parameters." (Curves only; the learning rates are not listed, ours are 1e-5..1e-3.)"""
    cannot_show = {"smoke": NOTE}

    def jobs(self, ctx: Context) -> list[Job]:
        s = SIZES[ctx.profile]
        out = [Job(f"{m}_lr{lr:g}", [*BASE, f"model={m}", f"model.width={s['width']}", f"model.depth={s['depth']}",
                                     f"model.lr={lr}", *s["run"]]) for m in ("grelu", "relu") for lr in LRS]
        out += [Job(f"grelu_w{w}_d{d}", [*BASE, "model=grelu", f"model.width={w}", f"model.depth={d}",
                                         "model.lr=1.0e-4", *s["run"]])
                for w in s["widths"] for d in s["depths"] if (w, d) != (s["width"], s["depth"])]
        return out

    def protocol(self, work: Path, ctx: Context) -> str:
        s = SIZES[ctx.profile]
        return (f"SGEMM train loss of GReLU and ReLU at w{s['width']} d{s['depth']} across fixed lr "
                f"{', '.join(f'{lr:g}' for lr in LRS)}, and GReLU at fixed lr 1e-4 across widths {s['widths']} x depths "
                f"{s['depths']}, {budget_of(runs_in(work))}")

    def outcome(self, work: Path, ctx: Context) -> str:
        s = SIZES[ctx.profile]
        main = [r for r in runs_in(work) if r.get("width") == s["width"] and r.get("depth") == s["depth"]]
        return high_lr_outcome(main, HIGH_LRS)

    def report(self, work: Path, out: Path, ctx: Context) -> str:
        s = SIZES[ctx.profile]
        runs = runs_in(work)
        main = [r for r in runs if r.get("width") == s["width"] and r.get("depth") == s["depth"]]
        grid = [r for r in runs if r.get("model") == "grelu" and r.get("lr") == 1.0e-4]
        rows = sorted((_row(r) for r in main), key=lambda x: (x["model"], x["lr"]))
        rows_c = sorted(({**_row(r), "params": r.get("width") ** 2 * (r.get("depth") - 1)} for r in grid),
                        key=lambda x: (x["depth"], x["width"]))
        tables.write_csv(rows + rows_c, out / "fig4.csv")
        for model, tag in (("grelu", "4a"), ("relu", "4b")):
            series = [(f"lr {r.get('lr'):g}", *r.curve("train/sse"), {"lw": 1.2})
                      for r in sorted(main, key=lambda r: r.get("lr")) if r.get("model") == model]
            plots.curves(out / f"fig{tag}.png", series, f"Fig. {tag} ({ctx.profile}): {model}", "train SSE")
        series = [(f"w{r.get('width')} d{r.get('depth')}", *r.curve("train/sse"), {"lw": 1.2}) for r in grid]
        plots.curves(out / "fig4c.png", series, f"Fig. 4c ({ctx.profile}): GReLU, lr 1e-4", "train SSE")
        return ("Train SSE per epoch is summed over the epoch's batches; `monotone fraction`: share of epochs whose "
                "loss fell; `largest rise`: largest epoch-to-epoch relative increase.\n\n### 4a/4b: learning rates\n\n"
                + tables.markdown(rows) + "\n### 4c: GReLU widths x depths (params = width^2 (depth-1), hidden)\n\n"
                + tables.markdown(rows_c) + "\n![4a](fig4a.png) ![4b](fig4b.png) ![4c](fig4c.png)\n")


class Fig5(Target):
    name = "fig5"
    title = "SGEMM at high learning rates: ReLU oscillates, GReLU decreases"
    data = "sgemm"
    paper = """Section 9, Figure 5: "A comparison of high learning rates in Figure 5 shows that ReLU network
oscillates with larger amplitudes towards higher loss values. The losses of the GReLU network decrease more
monotonically, and reach smaller values with larger learning rates." (Curves only.)"""
    cannot_show = {"smoke": NOTE}

    def jobs(self, ctx: Context) -> list[Job]:
        s = SIZES[ctx.profile]
        return [Job(f"{m}_lr{lr:g}", [*BASE, f"model={m}", f"model.width={s['width']}", f"model.depth={s['depth']}",
                                      f"model.lr={lr}", *s["run"]]) for m in ("grelu", "relu") for lr in HIGH_LRS]

    def protocol(self, work: Path, ctx: Context) -> str:
        s = SIZES[ctx.profile]
        return (f"SGEMM train loss of GReLU and ReLU at w{s['width']} d{s['depth']}, high fixed lr "
                f"{', '.join(f'{lr:g}' for lr in HIGH_LRS)}, {budget_of(runs_in(work))}")

    def outcome(self, work: Path, ctx: Context) -> str:
        return high_lr_outcome(runs_in(work), HIGH_LRS)

    def report(self, work: Path, out: Path, ctx: Context) -> str:
        runs = sorted(runs_in(work), key=lambda r: (str(r.get("model")), r.get("lr")))
        rows = [_row(r) for r in runs]
        tables.write_csv(rows, out / "fig5.csv")
        series = [(f"{r.get('model')} lr {r.get('lr'):g}", *r.curve("train/sse"),
                   {"color": color(r), "ls": "-" if r.get("lr") == HIGH_LRS[-1] else "--", "lw": 1.2})
                  for r in runs]
        plots.curves(out / "fig5.png", series, f"Fig. 5 ({ctx.profile})", "train SSE")
        return ("`monotone fraction`: share of epochs whose loss fell; `largest rise`: largest epoch-to-epoch "
                "relative increase (oscillation amplitude).\n\n" + tables.markdown(rows) + "\n![Fig. 5](fig5.png)\n")
