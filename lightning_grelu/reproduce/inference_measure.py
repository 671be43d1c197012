"""Section 4.4's inference claim and Remark 4, measured on trained nets (the ``inference`` target's work).

For a trained GReLU, and for Remark 4's GReLU made from a trained ReLU net (Psi'_k = W_k), and for each
method and rank r: how many gates the rank-r path leaves unchanged, how far predictions move (max and
mean over samples of ||f_r(x) - f(x)||), and the test accuracy and SSE. Then inference times on this
machine: ReLU, the full GReLU and the low-rank GReLU at batch 1 and at a large batch, dense and with
only the rows of W^T (and Psi^T) that a non-zero input needs (``nets/open_entries.py``). Writes records
(dicts); the target turns them into tables.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

import torch
import yaml
from hydra.utils import get_class
from omegaconf import OmegaConf

from lightning_grelu.nets import GReLUMLP
from lightning_grelu.nets.lowrank import LowRankGReLU, factorize, relative_error
from lightning_grelu.nets.open_entries import grelu_open_values, open_gates, relu_open_forward, transposed


def ranks_for(m: int) -> list[int]:
    """The issue's ranks: sqrt(m)/4, sqrt(m)/2 (the paper's), sqrt(m), m/8."""
    s = math.sqrt(m)
    return sorted({max(1, round(s / 4)), max(1, round(s / 2)), max(1, round(s)), max(1, m // 8)})


def load_run(run_dir: Path):
    """(net, datamodule) of a finished run: its last checkpoint and its own data, as grelu-eval rebuilds them."""
    from lightning_grelu.train import build_data

    cfg = OmegaConf.create(yaml.safe_load((run_dir / "config.yaml").read_text()))
    module = get_class(cfg.model._target_).load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt",
                                                                map_location="cpu", weights_only=False)
    return module.net.eval(), build_data(cfg)


@torch.no_grad()
def _batched(fn, x: torch.Tensor, bs: int = 4096):
    outs = [fn(x[s:s + bs]) for s in range(0, x.shape[0], bs)]
    if isinstance(outs[0], list):
        return [torch.cat(parts) for parts in zip(*outs)]
    return torch.cat(outs)


def _scores(pred: torch.Tensor, y: torch.Tensor) -> dict:
    err = pred.double() - y.double()
    return {"sse": 0.5 * float((err * err).sum()), "acc": float((pred.argmax(1) == y.argmax(1)).double().mean())}


def _change(pred: torch.Tensor, ref: torch.Tensor) -> dict:
    d = torch.linalg.norm(pred.double() - ref.double(), dim=1)
    rms = float(ref.double().pow(2).sum(1).mean().sqrt())
    return {"pred_change_max": float(d.max()), "pred_change_mean": float(d.mean()),
            "pred_change_rel_mean": float(d.mean()) / max(rms, 1e-300)}


def quality(source: str, net: GReLUMLP, splits: dict, methods, ranks, progress) -> tuple[list[dict], dict]:
    """Records per (method, r), and the factored nets (for timing)."""
    full = {name: (_batched(net, x), _batched(net.gates, x)) for name, (x, _) in splits.items()}
    base = {"kind": "net", "source": source, "width": net.width, "depth": net.depth}
    for name, (x, y) in splits.items():
        base.update({f"{name}/{k}": v for k, v in _scores(full[name][0], y).items()})
    records, nets = [base], {}
    for method in methods:
        for r in ranks:
            t0 = time.perf_counter()
            factors = [factorize(psi, r, method, seed=k) for k, psi in enumerate(net.psi)]
            seconds = time.perf_counter() - t0
            lr = LowRankGReLU(net, factors)
            nets[(method, r)] = lr
            rec = {"kind": "lowrank", "source": source, "method": method, "r": r, "width": net.width,
                   "factor_seconds": seconds,
                   "psi_rel_error": [relative_error(psi, U, V) for psi, (U, V) in zip(net.psi, factors)]}
            for name, (x, y) in splits.items():
                pred, gates = _batched(lr, x), _batched(lr.gates, x)
                same = [float((a == b).double().mean()) for a, b in zip(gates, full[name][1])]
                rec.update({f"{name}/gates_unchanged": sum(same) / len(same), f"{name}/gates_unchanged_layers": same,
                            **{f"{name}/{k}": v for k, v in _change(pred, full[name][0]).items()},
                            **{f"{name}/{k}": v for k, v in _scores(pred, y).items()}})
                rec[f"{name}/acc_change"] = rec[f"{name}/acc"] - base[f"{name}/acc"]
            records.append(rec)
            progress(f"{source} {method} r={r}: test gates unchanged {rec['test/gates_unchanged']:.3f}, "
                     f"test acc {rec['test/acc']:.4f} (full {base['test/acc']:.4f})")
    return records, nets


def remark4_check(relu, grelu: GReLUMLP, x: torch.Tensor) -> dict:
    """Remark 4's GReLU (Psi' = W) against the ReLU net it came from: outputs and gates vs patterns."""
    with torch.no_grad():
        diff = float((_batched(relu, x) - _batched(grelu, x)).abs().max())
        gates = _batched(grelu.gates, x)
        patterns = _batched(lambda b: [p for _, p in relu.trace(b)], x)
    same = sum(int((g == p).sum()) for g, p in zip(gates, patterns)) / sum(g.numel() for g in gates)
    return {"kind": "remark4", "max_abs_pred_diff_vs_relu": diff, "gates_equal_relu_patterns": same}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _ms_per_call(fn, args: list, device, repeats: int = 3) -> float:
    """Median over ``repeats`` passes of the mean ms per call of ``fn(a)`` over ``args`` (one warm pass)."""
    with torch.no_grad():
        for a in args:
            fn(a)
        passes = []
        for _ in range(repeats):
            _sync(device)
            t = time.perf_counter()
            for a in args:
                fn(a)
            _sync(device)
            passes.append((time.perf_counter() - t) / len(args))
    return statistics.median(passes) * 1e3


def timings(relu, grelu: GReLUMLP, lowrank: dict, x: torch.Tensor, large: int, singles: int, device,
            full: bool = True) -> list[dict]:
    """ms per call at batch 1 (``singles`` samples one at a time) and at batch ``large``; ``full=False``:
    the low-rank nets only."""
    ones = [x[i:i + 1] for i in range(singles)]
    big = [x[:large]]
    wt_relu, wt_grelu = transposed(relu), transposed(grelu)
    psi_t = [p.detach().T.contiguous() for p in grelu.psi]
    gates_of = {id(a): [D[0] for D in grelu.gates(a)] for a in ones}  # known gates: the value path alone
    rows = [("relu", "dense", 1, lambda a: relu(a)),
            ("relu", "open_rows", 1, lambda a: relu_open_forward(relu, wt_relu, a[0])),
            ("grelu_full", "dense", 1, lambda a: grelu(a)),
            ("grelu_full", "open_rows", 1,
             lambda a: grelu_open_values(grelu, wt_grelu, a[0], open_gates(grelu.gate_C, psi_t, a[0]))),
            ("grelu_values_known_gates", "dense", 1, lambda a: grelu(a, [D[None] for D in gates_of[id(a)]])),
            ("grelu_values_known_gates", "open_rows", 1,
             lambda a: grelu_open_values(grelu, wt_grelu, a[0], gates_of[id(a)])),
            ("relu", "dense", large, lambda a: relu(a)), ("grelu_full", "dense", large, lambda a: grelu(a))]
    rows = rows if full else []
    for (method, r), lr in lowrank.items():
        rows += [(f"lowrank_{method}_r{r}", "dense", 1, lambda a, lr=lr: lr(a)),
                 (f"lowrank_{method}_r{r}", "open_rows", 1,
                  lambda a, lr=lr: grelu_open_values(grelu, wt_grelu, a[0], [D[0] for D in lr.gates(a)])),
                 (f"lowrank_{method}_r{r}", "dense", large, lambda a, lr=lr: lr(a))]
    out = []
    for model, kind, batch, fn in rows:
        ms = _ms_per_call(fn, ones if batch == 1 else big, device)
        out.append({"kind": "time", "model": model, "path": kind, "batch": batch, "ms": ms,
                    "ms_per_sample": ms / batch, "width": grelu.width, "depth": grelu.depth,
                    "threads": torch.get_num_threads(), "device": str(device)})
    return out
