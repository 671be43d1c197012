"""Section 4.4: the claim that a GReLU iteration is ~2x shorter than its ReLU twin's. Times ReLU, GReLU
with cached gates and GReLU recomputing its gates with ``grelu-bench``'s timer, in one run."""

from __future__ import annotations

import json
from pathlib import Path

from lightning_grelu.reproduce.common import num
from lightning_grelu.reproduce.target import Context, Target
from lightning_grelu.results import tables

CASES = {"smoke": [("small_fullbatch", "32-true"), ("tiny", "32-true")],
         "paper": [("cifar_d6_w10k", "bf16-mixed"), ("cifar_d6_w10k_b4096", "bf16-mixed"),
                   ("sgemm_d10_w4096", "bf16-mixed")]}


class Speed(Target):
    name = "speed"
    title = "step time of ReLU vs GReLU (cached and recomputed gates)"
    paper = """Section 4.4: "a straightforward implementation of a GReLU network leads to an additional
approximated **2x shorter iteration time** compared to its equivalent ReLU network, for both train and
inference"; section 6.2: "the GReLU training is almost twice as fast". A GReLU/ReLU step-time ratio of 0.5
would confirm it."""
    cannot_show = {"smoke": "GPU kernels: CPU timings at small sizes, where per-step overhead weighs more."}

    def jobs(self, ctx: Context):
        return []

    def execute(self, ctx: Context, work: Path, fresh: bool, progress) -> int:
        import torch

        from lightning_grelu.bench import MODES, run_case, write_results

        device = torch.device("cuda" if ctx.profile == "paper" else "cpu")
        if device.type == "cuda" and not torch.cuda.is_available():
            from lightning_grelu.errors import ConfigError

            raise ConfigError("speed --profile paper times GPU kernels and no GPU is visible; use --profile smoke")
        ran = 0
        for case, precision in ctx.in_part(CASES[ctx.profile]):
            path = work / f"{case}_{precision}_inner1.jsonl"
            if path.exists() and not fresh:
                progress(f"{case}: done before, reused")
                continue
            results = run_case(case, MODES, precision, device, warmup=5, steps=20, repeats=5)
            write_results(work, results, f"grelu-reproduce speed --profile {ctx.profile}", device, [])
            progress(f"{case}: " + ", ".join(f"{r.mode} {r.suite_ms:.3g} ms" for r in results))
            ran += 1
        return ran

    def protocol(self, work: Path, ctx: Context) -> str:
        cases = ", ".join(f"{c} ({p})" for c, p in CASES[ctx.profile])
        where = "one GPU" if ctx.profile == "paper" else "CPU"
        return f"median training-step time of ReLU vs GReLU (cached and recomputed gates), {cases}, on {where}"

    def outcome(self, work: Path, ctx: Context) -> str:
        rows = self.rows(work)
        cached = [r["GReLU / ReLU (suite)"] for r in rows if r["mode"] == "grelu"]
        again = [r["GReLU / ReLU (suite)"] for r in rows if r["mode"] == "grelu_recompute"]
        if not cached:
            return ""
        span = lambda xs: num(min(xs)) if len(xs) == 1 or num(min(xs)) == num(max(xs)) else (  # noqa: E731
            f"{num(min(xs))}-{num(max(xs))}")
        verdict = ("As the paper says" if max(cached) <= 0.6 else "Unlike the paper's ~2x shorter GReLU iteration "
                   "(a ratio of 0.5)")
        rest = f"; with gates recomputed every step, {span(again)}x" if again else ""
        return f"{verdict}, a GReLU step takes {span(cached)}x a ReLU step here with cached gates{rest}."

    def rows(self, work: Path) -> list[dict]:
        rows = []
        for path in sorted(work.glob("*.jsonl")):
            recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            bench = {r["mode"]: r for r in recs if r.get("kind") == "bench"}
            meta = next((r for r in recs if r.get("kind") == "meta"), {})
            if "relu" not in bench:
                continue
            relu = bench["relu"]
            for mode in ("grelu", "grelu_recompute"):
                if mode in bench:
                    b = bench[mode]
                    rows.append({"case": b["case"], "precision": b["precision"], "hardware": meta.get("hardware"),
                                 "mode": mode, "relu ms (suite)": relu["suite_ms"], "mode ms (suite)": b["suite_ms"],
                                 "GReLU / ReLU (suite)": b["suite_ms"] / relu["suite_ms"],
                                 "GReLU / ReLU (plain loop)": b["plain_ms"] / relu["plain_ms"], "paper": 0.5})
        return rows

    def report(self, work: Path, out: Path, ctx: Context) -> str:
        rows = self.rows(work)
        tables.write_csv(rows, out / "speed.csv")
        return ("Median step times (training: forward, backward, update). `suite`: the Lightning path; `plain`: a "
                "hand-written loop of the same net, same run. `grelu`: gates cached per sample; `grelu_recompute`: "
                "gates recomputed every step (augmented data).\n\n" + tables.markdown(rows))
