"""Section 4.4's training claim, measured: what a cached-gate GReLU step spends against ReLU's (profiler),
what the closed gates would let it skip (FLOPs of the open entries), and whether skipping them buys time.

    python benchmarks/active_entries.py --out results/speed/cpu            # widths 512..4096, L = 4
    python benchmarks/active_entries.py --small --out /tmp/ae              # seconds

Records (``active_entries.jsonl`` in --out, appended; ``active_entries.md`` is this run's tables):
``flops`` per width and layer (open-gate fraction, dense and open-entry FLOPs, GReLU and ReLU, at init on
unit-sphere inputs); ``profile`` (self CPU time per op of one training step, ReLU and GReLU with cached
gates); ``step`` (one SGD step: dense ReLU, dense GReLU, the gathered GReLU step, per width and batch);
``matvec`` (batch-1 forward: dense vs only the W rows a non-zero input needs, ReLU and GReLU values).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import record, timed  # noqa: E402

from lightning_grelu.nets import GateCache, GReLUMLP, ReLUMLP  # noqa: E402
from lightning_grelu.nets.open_entries import (gathered_step, grelu_open_values, open_flops,  # noqa: E402
                                               relu_open_forward, transposed)

DEVICE = torch.device("cpu")  # the gathered kernels are CPU ones here; a GPU run is a different question


def inputs(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def flops_records(m, depth, n, d_in):
    x = inputs(n, d_in)
    grelu, relu = GReLUMLP(d_in, 1, m, depth, seed=0), ReLUMLP(d_in, 1, m, depth, seed=0)
    first = torch.relu(x @ grelu.C.detach().T) > 0
    out = []
    for name, net, patterns in (("grelu", grelu, grelu.gates(x)), ("relu", relu, [p for _, p in relu.trace(x)])):
        for row in open_flops(first, patterns, grelu=name == "grelu"):
            out.append({"kind": "flops", "model": name, "width": m, "depth": depth, "n": n, **row})
    return out


def dense_step(net, x, y, masks, opt):
    pred = net(x, masks) if masks is not None else net(x)
    loss = 0.5 * ((pred - y) ** 2).sum()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def step_records(m, depth, batch, d_in, repeats, inner):
    x, y = inputs(batch, d_in, seed=1), torch.randn(batch, 1, generator=torch.Generator().manual_seed(2))
    relu, grelu = ReLUMLP(d_in, 1, m, depth, seed=0), GReLUMLP(d_in, 1, m, depth, seed=0)
    cache = GateCache.build(grelu, x)
    index = torch.arange(batch)
    masks_f, masks_b = cache.lookup(index, torch.float32), cache.lookup(index)
    opts = {k: torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1e-9)
            for k, net in (("relu", relu), ("grelu", grelu))}

    def loop(fn):
        return lambda: [fn() for _ in range(inner)]

    t = {"relu_dense_ms": timed(loop(lambda: dense_step(relu, x, y, None, opts["relu"])), DEVICE, repeats),
         "grelu_dense_ms": timed(loop(lambda: dense_step(grelu, x, y, masks_f, opts["grelu"])), DEVICE, repeats),
         "grelu_gathered_ms": timed(loop(lambda: gathered_step(grelu, x, y, masks_b, 1e-9)), DEVICE, repeats)}
    t = {k: v / inner * 1e3 for k, v in t.items()}
    union = [float(D.any(0).float().mean()) for D in masks_b]
    return {"kind": "step", "width": m, "depth": depth, "batch": batch, **t,
            "gathered_over_dense_grelu": t["grelu_gathered_ms"] / t["grelu_dense_ms"],
            "gathered_over_dense_relu": t["grelu_gathered_ms"] / t["relu_dense_ms"],
            "grelu_over_relu_dense": t["grelu_dense_ms"] / t["relu_dense_ms"], "union_open_fraction": union}


def matvec_record(m, depth, d_in, repeats, inner):
    x = inputs(1, d_in, seed=3)
    relu, grelu = ReLUMLP(d_in, 1, m, depth, seed=0), GReLUMLP(d_in, 1, m, depth, seed=0)
    masks = [D[0].float() for D in grelu.gates(x)]
    wt_relu, wt_grelu = transposed(relu), transposed(grelu)

    def loop(fn):
        return lambda: [fn() for _ in range(inner)]

    with torch.no_grad():
        t = {"relu_dense_ms": timed(loop(lambda: relu(x)), DEVICE, repeats),
             "relu_open_rows_ms": timed(loop(lambda: relu_open_forward(relu, wt_relu, x[0])), DEVICE, repeats),
             "grelu_values_dense_ms": timed(loop(lambda: grelu(x, [D[None] for D in masks])), DEVICE, repeats),
             "grelu_values_open_rows_ms": timed(loop(lambda: grelu_open_values(grelu, wt_grelu, x[0], masks)),
                                                DEVICE, repeats)}
    t = {k: v / inner * 1e3 for k, v in t.items()}
    return {"kind": "matvec", "width": m, "depth": depth, "batch": 1, **t,
            "relu_open_over_dense": t["relu_open_rows_ms"] / t["relu_dense_ms"],
            "grelu_open_over_dense": t["grelu_values_open_rows_ms"] / t["grelu_values_dense_ms"]}


def profile_records(m, depth, n, d_in, steps=5):
    """Self CPU time per op and step of a plain training step, ReLU and GReLU with cached gates."""
    from torch.profiler import ProfilerActivity, profile

    x, y = inputs(n, d_in, seed=1), torch.randn(n, 1, generator=torch.Generator().manual_seed(2))
    out = []
    for name in ("relu", "grelu"):
        net = (ReLUMLP if name == "relu" else GReLUMLP)(d_in, 1, m, depth, seed=0)
        masks = GateCache.build(net, x).lookup(torch.arange(n), torch.float32) if name == "grelu" else None
        opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1e-9)
        for _ in range(3):
            dense_step(net, x, y, masks, opt)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                dense_step(net, x, y, masks, opt)
        events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in events)
        ops = [{"op": e.key, "calls_per_step": e.count / steps, "self_ms_per_step": e.self_cpu_time_total / steps / 1e3}
               for e in events[:12]]
        out.append({"kind": "profile", "model": name, "width": m, "depth": depth, "n": n,
                    "step_self_ms": total / steps / 1e3, "ops": ops})
    return out


def markdown(records: list[dict]) -> str:
    lines = ["# Active entries (section 4.4, training)", "", f"`{records[0].get('command')}` at commit "
             f"`{records[0].get('commit')}` on {records[0].get('hardware')}, {records[0].get('date')}.", "",
             "## FLOPs per step at init, summed over the hidden layers (open = only the open entries)", "",
             "| width | batch | open-gate fraction (GReLU, per layer) | GReLU open / dense | ReLU open / dense | "
             "GReLU open / ReLU open |", "|---|---|---|---|---|---|"]
    flops = [r for r in records if r["kind"] == "flops"]
    for m in sorted({r["width"] for r in flops}):
        tot = {}
        for model in ("grelu", "relu"):
            rows = [r for r in flops if r["width"] == m and r["model"] == model]
            dense = sum(r["dense_fwd"] + r["dense_grad_w"] + r["dense_grad_h"] for r in rows)
            tot[model] = sum(r["open_fwd"] + r["open_grad_w"] + r["open_grad_h"] for r in rows) / dense
            if model == "grelu":
                fracs, n = ", ".join(f"{r['open_fraction']:.3f}" for r in rows), rows[0]["n"]
        lines.append(f"| {m} | {n} | {fracs} | {tot['grelu']:.3f} | {tot['relu']:.3f} | {tot['grelu'] / tot['relu']:.3f} |")
    lines += ["", "## One SGD step, ms (dense = the suite's kernels; gathered = the open units' sub-network)", "",
              "| width | batch | ReLU dense | GReLU dense | GReLU gathered | gathered / GReLU dense | gathered / ReLU "
              "dense | union of open units (layer 1) |", "|---|---|---|---|---|---|---|---|"]
    for r in (r for r in records if r["kind"] == "step"):
        lines.append(f"| {r['width']} | {r['batch']} | {r['relu_dense_ms']:.3g} | {r['grelu_dense_ms']:.3g} | "
                     f"{r['grelu_gathered_ms']:.3g} | {r['gathered_over_dense_grelu']:.2f} | "
                     f"{r['gathered_over_dense_relu']:.2f} | {r['union_open_fraction'][0]:.2f} |")
    lines += ["", "## Batch-1 forward, ms (open rows = only the rows of W^T a non-zero input needs)", "",
              "| width | ReLU dense | ReLU open rows | ratio | GReLU values dense | GReLU values open rows | ratio |",
              "|---|---|---|---|---|---|---|"]
    for r in (r for r in records if r["kind"] == "matvec"):
        lines.append(f"| {r['width']} | {r['relu_dense_ms']:.3g} | {r['relu_open_rows_ms']:.3g} | "
                     f"{r['relu_open_over_dense']:.2f} | {r['grelu_values_dense_ms']:.3g} | "
                     f"{r['grelu_values_open_rows_ms']:.3g} | {r['grelu_open_over_dense']:.2f} |")
    for r in (r for r in records if r["kind"] == "profile"):
        lines += ["", f"## Profile: one {r['model']} step, width {r['width']}, depth {r['depth']}, batch {r['n']} "
                  f"({r['step_self_ms']:.3g} ms self CPU a step)", "", "| op | calls a step | self ms a step |",
                  "|---|---|---|"]
        lines += [f"| `{o['op']}` | {o['calls_per_step']:g} | {o['self_ms_per_step']:.3g} |" for o in r["ops"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--widths", type=int, nargs="+", default=None, help="default 512 1024 2048 4096")
    p.add_argument("--batches", type=int, nargs="+", default=None, help="default 1 2 4 16 100")
    p.add_argument("--depth", type=int, default=None, help="default 4")
    p.add_argument("--d-in", type=int, default=200)
    p.add_argument("--repeats", type=int, default=None, help="default 5")
    p.add_argument("--small", action="store_true", help="defaults widths 128 256, batches 1 4, depth 2, 2 repeats")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    small = dict(widths=[128, 256], batches=[1, 4], depth=2, repeats=2)
    full = dict(widths=[512, 1024, 2048, 4096], batches=[1, 2, 4, 16, 100], depth=4, repeats=5)
    for key, value in (small if a.small else full).items():  # what the command line gives wins
        if getattr(a, key) is None:
            setattr(a, key, value)
    if min(a.widths + a.batches + [a.depth, a.d_in, a.repeats]) < 1:
        p.error("--widths, --batches, --depth, --d-in and --repeats must be >= 1")
    stamped = []

    def keep(r):  # appended as measured: a run stopped part-way keeps what it measured
        stamped.append(record("active_entries", r, DEVICE, a.out, quiet=True))

    for m in a.widths:
        scale = max(1, (512 * 512) // (m * m))  # calls per timed pass: about the same work at every width
        for r in flops_records(m, a.depth, max(a.batches), a.d_in):
            keep(r)
        for b in a.batches:
            keep(step_records(m, a.depth, b, a.d_in, a.repeats, inner=max(1, scale * 16 // b)))
        keep(matvec_record(m, a.depth, a.d_in, a.repeats, inner=max(2, scale * 8)))
        print(f"width {m}: done", file=sys.stderr, flush=True)
    for r in profile_records(1000 if not a.small else 256, a.depth, 100, a.d_in):
        keep(r)
    text = markdown(stamped)
    print(text)
    if a.out:
        (Path(a.out) / "active_entries.md").write_text(text)


if __name__ == "__main__":
    main()
