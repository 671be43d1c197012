"""How often the GReLU->ReLU conversion is exact, by n/m, width and depth, for trained GReLU nets.

    python benchmarks/conversion_exactness.py [--seeds 20] [--dtype float64] [--out DIR]

For every cell (m, L, n = ratio * m) and seed: a GReLU net (d_x = 16, d_y = 1) is trained by
full-batch gradient descent on the suite's Ackley data (200 steps of eta = 1 / lambda_max of its NTK
Gram at init), then converted with each intermediate-target construction (``carry``, the default;
``lift``; ``relu``, the paper's eq. 48). A conversion is exact when the converted net's training
predictions match the GReLU's to the dtype's tolerance (1e-6 relative in float64). For each converted
net it also measures lambda_max of its NTK Gram over lambda_max of the GReLU's at the switch: the
factor by which the stable GD step shrinks when training goes on as ReLU. Prints a Markdown table
per depth (the fraction of exact conversions) and the overall figures, and, with ``--out``, writes
them to
``DIR/conversion_exactness.md`` and appends the run record to ``DIR/conversion_exactness.jsonl`` and one line per net to
``DIR/conversion_exactness_nets.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import record  # noqa: E402

from lightning_grelu.data.ackley import ackley_targets, sphere  # noqa: E402
from lightning_grelu.nets import GReLUMLP, grelu_to_relu  # noqa: E402
from lightning_grelu.nets.grelu_to_relu import TARGETS  # noqa: E402
from lightning_grelu.nets.ntk import lambda_max  # noqa: E402

RATIOS = (0.25, 0.5, 0.75, 0.9, 1.0)


def trained_grelu(n: int, m: int, depth: int, seed: int, dtype: torch.dtype, steps: int, d_x: int = 16):
    x = sphere(n, d_x, torch.Generator().manual_seed(10_000 + seed)).to(dtype)
    y = ackley_targets(x).to(dtype)
    net = GReLUMLP(d_x, 1, m, depth, seed=seed).to(dtype)
    gates = net.gates(x)
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1.0 / lambda_max(net, x, gates))
    for _ in range(steps):
        loss = 0.5 * ((net(x, gates) - y) ** 2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net, x


def table(rows: list[dict], depth: int, widths: list[int]) -> str:
    head = "| m \\ n/m | " + " | ".join(f"{r:g}" for r in RATIOS) + " |"
    lines = [head, "|---|" + "---|" * len(RATIOS)]
    for m in widths:
        cells = []
        for ratio in RATIOS:
            sel = [r for r in rows if r["m"] == m and r["depth"] == depth and r["ratio"] == ratio]
            frac = {t: sum(r[f"exact_{t}"] for r in sel) / max(len(sel), 1) for t in TARGETS}
            cells.append(" / ".join(f"{frac[t]:.2f}" for t in TARGETS))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--widths", default="16,64,256")
    p.add_argument("--depths", default="2,4")
    p.add_argument("--steps", type=int, default=200, help="GD steps before the conversion")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--out", default=None)
    a = p.parse_args()
    dtype = getattr(torch, a.dtype)
    widths, depths = [int(w) for w in a.widths.split(",")], [int(d) for d in a.depths.split(",")]
    rows = []
    for depth in depths:
        for m in widths:
            for ratio in RATIOS:
                n = max(1, round(ratio * m))
                for seed in range(a.seeds):
                    net, x = trained_grelu(n, m, depth, seed, dtype, a.steps)
                    lam = lambda_max(net, x, net.gates(x))
                    row = {"m": m, "depth": depth, "ratio": ratio, "n": n, "seed": seed}
                    for target in TARGETS:
                        relu, rep = grelu_to_relu(net, x, target=target)
                        row[f"exact_{target}"] = rep.exact
                        row[f"ntk_ratio_{target}"] = lambda_max(relu, x) / lam
                        row[f"diff_{target}"] = rep.max_rel_pred_diff
                        row[f"min_rank_{target}"] = min(rep.input_rank)
                    rows.append(row)
    md = [f"Fraction of exact conversions ({' / '.join(TARGETS)}), {a.seeds} seeds per cell, {a.dtype}, "
          f"tolerance {'1e-6' if dtype == torch.float64 else '1e-4'} relative, after {a.steps} GD steps:"]
    for depth in depths:
        md += ["", f"L = {depth}:", "", table(rows, depth, widths)]
    summary = {f"exact_{t}": sum(r[f"exact_{t}"] for r in rows) / len(rows) for t in TARGETS}
    for t in TARGETS:
        ratios = torch.tensor([r[f"ntk_ratio_{t}"] for r in rows])
        summary[f"ntk_ratio_median_{t}"] = float(ratios.median())
        summary[f"ntk_ratio_max_{t}"] = float(ratios.max())
    md += ["", f"Over all {len(rows)} nets: the fraction exact, and lambda_max(NTK) of the converted ReLU net over "
           "the GReLU's at the switch (how much smaller a stable step must be when training goes on):", "",
           "| target | exact | NTK lambda_max ratio, median | max |", "|---|---|---|---|"]
    md += [f"| {t} | {summary[f'exact_{t}']:.3f} | {summary[f'ntk_ratio_median_{t}']:.3g} | "
           f"{summary[f'ntk_ratio_max_{t}']:.3g} |" for t in TARGETS]
    text = "\n".join(md)
    print(text)
    record("conversion_exactness", {"seeds": a.seeds, "dtype": a.dtype, "steps": a.steps, "nets": len(rows),
                                    **summary}, torch.device("cpu"), a.out)
    if a.out:
        (Path(a.out) / "conversion_exactness.md").write_text(text + "\n")
        with open(Path(a.out) / "conversion_exactness_nets.jsonl", "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
