"""Atlas throughput: small nets trained many at a time against one at a time, beside this machine's matmul ceiling.

Three measurements, one JSON record each (``--out DIR`` appends them to ``DIR/atlas_throughput.jsonl``):

1. ``protocol``: the 982 runs of the atlas smoke profile as checked in before the width-search engine
   (``benchmarks/atlas_smoke_runs.json``: each run's data, model, n, L, d_y, width and seed; 1000 GD steps,
   eps = 1e-4 x the initial SSE, the ntk step), trained by the engine's runner batched (``--max-nets``) and one
   at a time (batches of 1, the same code), each writing its run record; and a sample of them through
   grelu-train (the path the atlas used before), whose per-run time is scaled to all 982.
2. ``sizes``: model GFLOP/s (the net's own FLOPs per GD step, ``ReLUMLP.describe``) of K nets of one size trained together, K in 1, 8, 32.
3. ``ceiling``: a 2048^3 float32 matmul on the same threads.

    python benchmarks/atlas_throughput.py --out results/speed/cpu
    python benchmarks/atlas_throughput.py --quick         # seconds: a few runs of each kind
    python benchmarks/atlas_throughput.py --device cuda --out results/speed/paper        # on a GPU
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from _common import device_of, record
from lightning_grelu.bench import _sync
from lightning_grelu.scan import runner
from lightning_grelu.scan.batched import Net, step_flops, train_together

HERE = Path(__file__).resolve().parent


def ceiling_gflops(device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """A float32 size^3 matmul on ``device``: the ceiling the nets' GFLOP/s are read against."""
    size = size if device.type == "cpu" else 8192
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return repeats * 2 * size ** 3 / (time.perf_counter() - t) / 1e9


def overrides(run: dict, protocol: dict) -> list[str]:
    dims = [f"data.d={protocol['d']}"] if run["data"] == "ackley" else [f"data.d_in={protocol['d']}",
                                                                        f"data.d_out={run['d_y']}"]
    return ["callbacks=none", f"data={run['data']}", f"data.n={run['n']}", *dims, f"model={run['model']}",
            f"model.depth={run['L']}", f"model.width={run['width']}", f"seed={run['seed']}",
            f"model.lr_policy={protocol['lr_policy']}", f"eps={protocol['eps']}", "eps_relative=true",
            f"stop_at_eps={'true' if protocol['stop_at_eps'] else 'false'}"]


def prepare_all(runs, protocol, work: Path):
    from lightning_grelu.sweeps.run_trial import compose_trial

    data, out = runner.DataCache(), []
    for i, r in enumerate(runs):
        cfg = compose_trial(str(work / f"{i:04d}"), [*overrides(r, protocol), "model.inner_steps=1",
                                                   f"trainer.max_epochs={protocol['steps']}"])
        out.append(runner.prepare(cfg, work / f"{i:04d}", data))
    return out


def engine(runs, protocol, max_nets: int, device: torch.device) -> dict:
    work = Path(tempfile.mkdtemp(prefix="atlas-bench-"))
    try:
        t0 = time.perf_counter()
        prepared = prepare_all(runs, protocol, work)
        t1 = time.perf_counter()
        outcomes = runner.run(prepared, str(device), max_nets=max_nets)
        t2 = time.perf_counter()
        for p, o in zip(prepared, outcomes):
            runner.write_record(p, o, [protocol["steps"]])
        t3 = time.perf_counter()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    flops = sum(o.flops for o in outcomes)
    return {"runs": len(runs), "max_nets": max_nets, "prepare_s": round(t1 - t0, 2), "train_s": round(t2 - t1, 2),
            "records_s": round(t3 - t2, 2), "total_s": round(t3 - t0, 2), "runs_per_s": round(len(runs) / (t3 - t0), 2),
            "train_gflops": round(flops / (t2 - t1) / 1e9, 2), "steps": sum(o.steps for o in outcomes),
            "converged": sum(o.stopped == "target" for o in outcomes)}


def through_grelu_train(runs, protocol, sample: int) -> dict:
    from lightning_grelu.sweeps.run_trial import compose_trial
    from lightning_grelu.train import train

    picked = runs[:: max(1, len(runs) // sample)][:sample]
    work = Path(tempfile.mkdtemp(prefix="atlas-bench-lt-"))
    try:
        t0 = time.perf_counter()
        for i, r in enumerate(picked):
            train(compose_trial(str(work / f"{i:04d}"), [*overrides(r, protocol), "model.inner_steps=100",
                                                        f"trainer.max_epochs={protocol['steps'] // 100}"]))
        seconds = time.perf_counter() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    per_run = seconds / len(picked)
    return {"sample": len(picked), "seconds": round(seconds, 2), "per_run_s": round(per_run, 3),
            "all_runs_s_scaled": round(per_run * len(runs), 1)}


def sizes(repeat_steps: int, device: torch.device) -> list[dict]:
    out = []
    for n, m, depth in ((64, 16, 2), (64, 64, 2), (128, 128, 2), (256, 256, 2)):
        for K in (1, 8, 32):
            nets = []
            for k in range(K):
                g = torch.Generator().manual_seed(k)
                x = torch.randn(n, 16, generator=g)
                x /= x.norm(dim=1, keepdim=True)
                W = [torch.randn(m, m, generator=g) * (2 / m) ** 0.5 for _ in range(depth)]
                nets.append(Net(x, torch.randn(n, 1, generator=g), torch.randn(m, 16, generator=g) * 0.35, W,
                                torch.randn(1, m, generator=g), 1e-6))
            train_together(nets, 5, device=device)  # warm-up
            _sync(device)
            t = time.perf_counter()
            train_together(nets, repeat_steps, device=device)
            _sync(device)
            s = time.perf_counter() - t
            out.append({"n": n, "m": m, "L": depth, "nets": K, "ms_per_step": round(1e3 * s / repeat_steps, 3),
                        "gflops": round(K * repeat_steps * step_flops(n, depth, m, 16, 1) / s / 1e9, 2)})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one worker per core)")
    p.add_argument("--max-nets", type=int, default=64)
    p.add_argument("--sample", type=int, default=30, help="runs timed through grelu-train")
    p.add_argument("--quick", action="store_true", help="a few runs of each kind (checks the script works)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (the nets and the ceiling on it)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    spec = json.loads((HERE / "atlas_smoke_runs.json").read_text())
    runs, protocol = spec["runs"], spec["protocol"]
    if args.quick:
        runs, args.sample = runs[:40], 2
    device = device_of(args.device)
    ceiling = ceiling_gflops(device)
    record("atlas_throughput", {"case": "ceiling", "threads": args.threads, "matmul_gflops": round(ceiling, 1),
                                "matmul_size": 2048 if device.type == "cpu" else 8192},
           device, args.out)
    batched = engine(runs, protocol, args.max_nets, device)
    alone = engine(runs, protocol, 1, device)
    lt = through_grelu_train(runs, protocol, args.sample)
    record("atlas_throughput", {"case": "protocol", "threads": args.threads, "batched": batched, "one_at_a_time": alone,
                                "grelu_train": lt, "checked_in_wall_time_s_sum": round(sum(r["wall_time_s"] for r in runs), 1),
                                "speedup_batched_vs_grelu_train": round(lt["all_runs_s_scaled"] / batched["total_s"], 1),
                                "speedup_batched_vs_one_at_a_time": round(alone["total_s"] / batched["total_s"], 2),
                                "ceiling_gflops": round(ceiling, 1)}, device, args.out)
    for row in sizes(20 if args.quick else 200, device):
        record("atlas_throughput", {"case": "sizes", "threads": args.threads, **row,
                                    "fraction_of_ceiling": round(row["gflops"] / ceiling, 3)}, device, args.out)


if __name__ == "__main__":
    main()
