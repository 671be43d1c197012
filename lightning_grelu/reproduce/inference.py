"""Section 4.4's accelerated inference (NMA of each Psi_k) and Remark 4 (any ReLU net as a GReLU with
Psi' = W, then approximated), on a GReLU and a ReLU net trained on Fashion-MNIST by ``grelu-train``."""

from __future__ import annotations

import json
from pathlib import Path

from lightning_grelu.atomic import write_atomic
from lightning_grelu.reproduce.target import Context, Job, Target, run_jobs
from lightning_grelu.results import plots, tables

METHODS = ("nma_shift", "nma_split", "svd")
COMMON = ["data=fashion_mnist", "data.augment=false", "data.val_size=0", "model.lr_policy=ntk",
          "callbacks=[default]", "seed=0", "experiment_name=inference"]
SIZES = {"smoke": ["trainer=cpu", "model.width=1024", "model.depth=3", "data.limit_train=10000",
                   "data.batch_size=250", "trainer.max_epochs=10"],
         "paper": ["trainer=gpu", "model.width=4096", "model.depth=4", "data.batch_size=1024",
                   "trainer.max_epochs=20"]}


class Inference(Target):
    name = "inference"
    title = "low-rank (NMA) gate paths for inference, and Remark 4 on a trained ReLU net"
    data = "fashion_mnist"
    paper = """Section 4.4: "A non-negative matrix approximation (NMA) [Tandon and Sra, 2010] is used to replace
each matrix Psi_k with smaller ones with respective sizes (m x r) and (r x m), Psi_k ~ W_k H_k for r << m. The
total FLOPS count is therefore proportional to O(**0.5 m^2** + 2rm) ~ O(0.5 m^2). While this approximation is not
covered by our theory, experiments with **r = sqrt(m)/2** yielded the desired acceleration **without any accuracy
degradation**." Remark 4: "Our technique for **2x accelerated inference** can be used to accelerate any neural
network with ReLU activation. Given network layers W_[L], simply transition to the GReLU architecture [...] with
Psi'_k <- W_k, then use NMA approximation." The 0.5 m^2 counts only the value-path entries of open gates."""
    cannot_show = {"smoke": "the paper's sizes (it does not give them for this experiment): a 1024-wide, depth-3 net "
                            "trained 10 epochs on 10,000 Fashion-MNIST images (gate and accuracy counts are exact), timed on "
                            "a 2-core CPU that other jobs may share: the times are indicative only unless this was run "
                            "on a quiet machine; at m = 1024 a layer (4 MB) sits in cache, so batch-1 products are "
                            "not yet memory-bound."}

    def jobs(self, ctx: Context) -> list[Job]:
        return [Job(model, [f"model={model}", *COMMON, *SIZES[ctx.profile]]) for model in ("grelu", "relu")]

    def execute(self, ctx: Context, work: Path, fresh: bool, progress) -> int:
        import torch

        from lightning_grelu.nets import GReLUMLP
        from lightning_grelu.reproduce import inference_measure as im

        ran = run_jobs(self.jobs(ctx), ctx, work, fresh, progress)
        out = work / "inference.jsonl"
        if out.exists() and not fresh and not ran:  # measurements of the runs as they are now
            progress("inference measurements: done before, reused")
            return 0
        grelu, dm = im.load_run(work / "grelu")
        relu, _ = im.load_run(work / "relu")
        splits = {name: (dm.inputs(name), dm.split(name).y) for name in ("train", "test")}
        ranks = im.ranks_for(grelu.width)
        remark4 = GReLUMLP.from_relu(relu)
        records, lowrank = im.quality("grelu", grelu, splits, METHODS, ranks, progress)
        more, lowrank4 = im.quality("remark4", remark4, splits, ("nma_shift", "svd"), ranks, progress)
        records += more + [{**im.remark4_check(relu, remark4, splits["test"][0]), "source": "remark4"}]
        device = torch.device("cpu")
        x = splits["test"][0]
        records += [{**r, "source": "grelu"} for r in im.timings(relu, grelu, lowrank, x, 4096, 64, device)]
        shift4 = {k: v for k, v in lowrank4.items() if k[0] == "nma_shift"}
        records += [{**r, "source": "remark4"} for r in im.timings(relu, remark4, shift4, x, 4096, 64, device, full=False)]
        write_atomic(out, "".join(json.dumps(r) + "\n" for r in records))
        return ran + 1

    def protocol(self, work: Path, ctx: Context) -> str:
        from lightning_grelu.reproduce.common import budget_of, runs_in, step_of

        runs = runs_in(work)
        w = runs[0].get("width") if runs else None
        d = runs[0].get("depth") if runs else None
        return (f"rank-r (NMA, SVD) gate paths for inference and Remark 4, GReLU and ReLU nets of width {w}, depth {d} "
                f"trained on Fashion-MNIST ({budget_of(runs)}, {step_of(runs)})")

    def outcome(self, work: Path, ctx: Context) -> str:
        """At the paper's r = sqrt(m)/2, NMA (shift): the test gates kept and the test accuracy lost, beside the
        paper's "without any accuracy degradation"."""
        from lightning_grelu.nets.lowrank import default_rank
        from lightning_grelu.reproduce.common import num

        recs = self._records(work)
        net = next((r for r in recs if r["kind"] == "net" and r["source"] == "grelu"), None)
        if net is None:
            return ""
        r = default_rank(net["width"])
        row = next((q for q in recs if q["kind"] == "lowrank" and q["source"] == "grelu" and q["method"] == "nma_shift"
                    and q["r"] == r), None)
        if row is None:
            return ""
        change = row["test/acc_change"]
        verdict = ("as the paper says" if change >= -0.005 else
                   "where the paper reports no accuracy degradation at this rank")
        return (f"At the paper's rank r = sqrt(m)/2 = {r}, the NMA gate path leaves {num(100 * row['test/gates_unchanged'])}% "
                f"of the trained GReLU's test gates unchanged and moves its test accuracy from "
                f"{num(net['test/acc'])} by {num(change)}, {verdict}.")

    @staticmethod
    def _records(work: Path) -> list[dict]:
        path = work / "inference.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def report(self, work: Path, out: Path, ctx: Context) -> str:
        recs = [json.loads(line) for line in (work / "inference.jsonl").read_text().splitlines() if line.strip()]
        nets = {r["source"]: r for r in recs if r["kind"] == "net"}
        check = next(r for r in recs if r["kind"] == "remark4")
        quality = []
        for r in (r for r in recs if r["kind"] == "lowrank"):
            base = nets[r["source"]]
            quality.append({"net": r["source"], "method": r["method"], "r": r["r"],
                            "Psi rel. error (mean)": sum(r["psi_rel_error"]) / len(r["psi_rel_error"]),
                            "gates unchanged train": r["train/gates_unchanged"],
                            "gates unchanged test": r["test/gates_unchanged"],
                            "pred change max train": r["train/pred_change_max"],
                            "pred change mean train": r["train/pred_change_mean"],
                            "pred change max test": r["test/pred_change_max"],
                            "pred change mean test": r["test/pred_change_mean"],
                            "test acc": r["test/acc"], "test acc full": base["test/acc"],
                            "test acc change": r["test/acc_change"], "test sse": r["test/sse"],
                            "test sse full": base["test/sse"]})
        times = [r for r in recs if r["kind"] == "time"]
        relu_ms = {r["batch"]: r["ms"] for r in times if r["model"] == "relu" and r["path"] == "dense"}
        timing = [{"net": r["source"], "model": r["model"], "path": r["path"], "batch": r["batch"], "ms": r["ms"],
                   "x ReLU dense": r["ms"] / relu_ms[r["batch"]]} for r in times]
        tables.write_csv(quality, out / "inference_quality.csv")
        tables.write_csv(timing, out / "inference_time.csv")
        series = []
        for (source, method), style in ((("grelu", "nma_shift"), {"color": "C0"}), (("grelu", "nma_split"), {"color": "C1"}),
                                        (("grelu", "svd"), {"color": "C2"}), (("remark4", "nma_shift"), {"color": "C3"}),
                                        (("remark4", "svd"), {"color": "C4"})):
            rows = sorted((q for q in quality if q["net"] == source and q["method"] == method), key=lambda q: q["r"])
            if rows:
                series.append((f"{source} {method}", [q["r"] for q in rows], [q["gates unchanged test"] for q in rows],
                               {**style, "marker": "o", "ls": "-" if source == "grelu" else "--"}))
        plots.curves(out / "inference.png", series, "fraction of test gates a rank-r path leaves unchanged",
                     "gates unchanged (test)", xlabel="rank r", logy=False)
        m = nets["grelu"]["width"]
        return (f"Width m = {m}, depth {nets['grelu']['depth']}; ranks r = sqrt(m)/4, sqrt(m)/2 (the paper's), sqrt(m), "
                f"m/8. Test accuracy of the trained nets: GReLU {nets['grelu']['test/acc']:.4f}, ReLU "
                f"{nets['remark4']['test/acc']:.4f}.\n\n**Remark 4, checked:** the GReLU with Psi' = W of the trained "
                f"ReLU net predicts what the ReLU net predicts (max |difference| on the test set "
                f"{check['max_abs_pred_diff_vs_relu']:.3g}) and its gates equal the ReLU net's activation patterns on "
                f"a fraction {check['gates_equal_relu_patterns']:.6f} of (sample, unit) pairs.\n\n"
                "### What a rank-r gate path changes\n\nPrediction change: ||f_r(x) - f(x)|| per sample (one-hot "
                "targets: a wrong class moves it by about 1).\n\n" + tables.markdown(quality)
                + "\n### Inference time\n\nms per call on the test images: batch 1 (mean over 64 single images) and "
                "batch 4096. `dense`: the suite's dense products (a GReLU computes its gate path and its value path); "
                "`open_rows`: each layer reads only the rows of W^T (and Psi^T) its non-zero inputs need "
                "(`embedding_bag`); `grelu_values_known_gates`: the value path alone, gates given (a cached sample). "
                "Low-rank timings of Remark 4's net repeat the GReLU's shapes.\n\n" + tables.markdown(timing)
                + "\n![gates unchanged vs r](inference.png)\n")
