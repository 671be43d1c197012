"""Run trials of a width scan many at a time, and write each one's ordinary run record.

A trial is a composed grelu-train config. When it is plain full-batch GD on a ReLU or GReLU net (SGD, no
momentum or weight decay, frozen C and B, no extra callbacks or loggers, one device), it is trained by
:func:`lightning_grelu.scan.batched.train_together` beside the other trials of its shape; anything else is
left to grelu-train (:func:`batchable` says why). A batched trial's record is the one grelu-train writes
(``config.yaml``, ``metrics.csv``, ``summary.json``; no checkpoints: a scan trial takes seconds and an
interrupted one is run again), with what only a batched run knows besides: the exact NTK spectrum at init
(``ntk/*``, from the Gram in closed form), the linearised prediction of the steps to each target, and the
verdict under every (budget, target) of the scan.

The data a trial trains on and the net it starts from come from the suite's own DataModules and nets, with
the seeds grelu-train uses: a batched trial's iterates equal grelu-train's for the same config (tested in
float64).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from lightning_grelu.atomic import write_atomic, write_csv_atomic
from lightning_grelu.callbacks.time_to_target import target_key
from lightning_grelu.modules import step_size
from lightning_grelu.nets import ntk
from lightning_grelu.nets.mlp import GReLUMLP, ReLUMLP
from lightning_grelu.nets.spec import spec_of
from lightning_grelu.scan import verdict as verdicts
from lightning_grelu.scan.batched import Net, Outcome, train_together

DOUBLE = ("64", "64-true", "double")
SINGLE = ("32", "32-true")
LOSS = "sse = 1/2 sum_i ||f(x_i)-y_i||^2 ; mse = 1/n sum_i ||f(x_i)-y_i||^2"


def batchable(cfg: DictConfig) -> str | None:
    """None when the trial is plain full-batch GD that :func:`train_together` computes exactly; else why not."""
    m, d, t = cfg.model, cfg.data, cfg.trainer
    spec = spec_of(m, 1, 1)  # the net's kind does not depend on the data's sizes
    checks = [
        (spec.layout == "mlp" and spec.converts_to is None, f"model={m.get('name')}"),
        (m.get("optimizer", "sgd") == "sgd" and not m.get("momentum") and not m.get("weight_decay"),
         "an optimizer other than plain SGD"),
        (not m.get("train_io", False), "model.train_io=true"),
        (m.get("gate_init", "independent") in ("independent", "copy"), f"model.gate_init={m.get('gate_init')}"),
        (d.get("batch_size") is None, "mini-batches"),
        (not d.get("augment", False), "augmentation"),
        (str(t.get("precision")) in DOUBLE + SINGLE, f"trainer.precision={t.get('precision')}"),
        (t.get("devices", 1) in (1, "auto") and "ddp" not in str(t.get("strategy", "")), "several devices"),
        (cfg.get("step_budget") in (None, "null"), "step_budget"),
        (not any(v for v in (cfg.get("callbacks") or {}).values()), "callbacks"),
        (not any(v for v in (cfg.get("logger") or {}).values()) if isinstance(cfg.get("logger"), DictConfig)
         else not cfg.get("logger"), "loggers"),
        (cfg.get("ckpt_path") in (None, "null"), "ckpt_path"),
    ]
    for ok, why in checks:
        if not ok:
            return why
    return None


def dtype_of(cfg: DictConfig) -> torch.dtype:
    return torch.float64 if str(cfg.trainer.get("precision")) in DOUBLE else torch.float32


def budget_of(cfg: DictConfig) -> int:
    """GD steps of a full-batch run: trainer.max_epochs x model.inner_steps."""
    return int(cfg.trainer.max_epochs) * int(cfg.model.get("inner_steps", 1) or 1)


def targets_of(cfg: DictConfig) -> list[float]:
    """Every target of the run, largest first (eps and ``targets``)."""
    out = {float(t) for t in (cfg.get("targets") or [])}
    if cfg.get("eps") is not None:
        out.add(float(cfg.eps))
    return sorted(out, reverse=True)


@dataclass
class Prepared:
    """A trial ready to train: its config, its net's problem, and what was measured before the first step."""

    cfg: DictConfig  # the config (its model.width may be another trial's: ``net`` has this trial's width)
    run_dir: Path
    net: Net
    info: dict = field(default_factory=dict)
    config: dict | None = None  # the resolved config this trial ran (config.yaml)


class DataCache:
    """Training data per data config (a scan's seeds and widths share it)."""

    def __init__(self):
        self._data: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def get(self, cfg: DictConfig) -> tuple[torch.Tensor, torch.Tensor]:
        key = json.dumps([OmegaConf.to_container(cfg.data, resolve=True), str(dtype_of(cfg))], sort_keys=True,
                         default=str)
        if key not in self._data:
            from lightning_grelu.train import build_data

            dm = build_data(cfg)
            train = dm.splits["train"]
            self._data[key] = (dm.train_inputs().cpu(), train.y.cpu())
        return self._data[key]


def prepare(cfg: DictConfig, run_dir: Path, data: DataCache, width: int | None = None,
            config: dict | None = None) -> Prepared:
    """Data, initial net (as grelu-train builds it), gates, the step from the lr policy (the NTK Gram at init
    in closed form: exact), and the linearised prediction of the steps to each target."""
    x, y = data.get(cfg)
    dtype = dtype_of(cfg)
    m = cfg.model
    d_in, d_out = x.shape[1], y.shape[1]
    width = int(width if width is not None else m.width)
    gated = spec_of(m, d_in, d_out).gated
    if gated:
        net = GReLUMLP(d_in, d_out, width, int(m.depth), seed=m.init_seed, gate_init=m.get("gate_init", "independent"))
    else:
        net = ReLUMLP(d_in, d_out, width, int(m.depth), seed=m.init_seed)
    net = net.to(dtype)
    x, y = x.to(dtype), y.to(dtype)
    with torch.no_grad():
        gates = net.gates(x) if gated else None
        r0 = ((net(x, gates) if gates is not None else net(x)) - y).double()
    W = [w.detach() for w in net.W]
    H = ntk.mlp_gram(x, net.C.detach(), W, net.B.detach(), gates)
    lam, Q = torch.linalg.eigh(H)
    coef = Q.T @ r0.reshape(-1)
    sse0 = 0.5 * float((r0 * r0).sum())
    info = {"ntk/lambda_max_init": float(lam[-1]), "ntk/lambda_min_init": float(lam[0]),
            "ntk/cond_init": float(lam[-1] / lam[0]) if lam[0] > 0 else math.inf,
            "ntk/eig_method": "closed-form Gram, eigh (exact)", "ntk/lambda_max_rel_residual": 0.0,
            "initial/train_sse": sse0}
    if m.lr_policy == "ntk" and not float(lam[-1]) > 0:
        # every unit is dead on every sample (narrow ReLU nets): the net is a constant and GD cannot move it;
        # grelu-train refuses such a run, a scan records it as the answer at this width (it stalls)
        lr_info = {"lr_policy": "ntk", "lr_scale": float(m.lr_scale), "lr": 0.0, "ntk/dead": True}
    else:
        lr_info = step_size.resolve(m.lr_policy, m.lr_scale, m.lr, d_x=d_in, n=x.shape[0], depth=int(m.depth),
                                    d_y=d_out, lambda_max=lambda: float(lam[-1]))
    lr_info.update({k: info[k] for k in ("ntk/lambda_max_init",) if m.lr_policy == "ntk"})
    info["lr_info"] = lr_info
    relative = bool(cfg.get("eps_relative", False))
    levels = {t: t * sse0 if relative else t for t in targets_of(cfg)}
    info["levels"] = levels
    info["predicted"] = {t: ntk.linear_steps_to(lr_info["lr"], lam, coef, lv) for t, lv in levels.items()}
    stop = min(levels.values()) if cfg.get("stop_at_eps", False) and levels else None
    problem = Net(x, y, net.C.detach(), W, net.B.detach(), float(lr_info["lr"]), gates, stop_below=stop,
                  diverge_above=verdicts.DIVERGE_FACTOR * sse0 if sse0 > 0 else math.inf)
    return Prepared(cfg, Path(run_dir), problem, info, config)


def run(prepared: list[Prepared], device="cpu", should_stop=lambda: False, max_nets: int = 64) -> list[Outcome]:
    """Train the trials (grouped by shape, ``max_nets`` at a time); a trial under the ``ntk`` policy that
    diverged is trained again from its initialization at half the step, ``ntk_retries`` times."""
    outcomes: dict[int, Outcome] = {}
    for i, p in enumerate(prepared):
        if p.net.lr == 0:  # a dead net (every unit off on every sample) cannot move: its SSE stays where it is
            sse0 = p.info["initial/train_sse"]
            outcomes[i] = Outcome(sse=[sse0] * (budget_of(p.cfg) + 1), steps=budget_of(p.cfg), stopped="budget",
                                  extra={"batch_size": 1})
    todo = [i for i in range(len(prepared)) if i not in outcomes]
    attempt = 0
    while todo:
        cap = (16 if torch.device(device).type == "cuda" else 2) * 2**30
        for group in batches([prepared[i] for i in todo], max_nets, cap):
            ids = [todo[j] for j in group]
            dtype = dtype_of(prepared[ids[0]].cfg)
            for i, out in zip(ids, train_together([prepared[i].net for i in ids], budget_of(prepared[ids[0]].cfg),
                                                  device=device, dtype=dtype, should_stop=should_stop)):
                out.extra["batch_size"] = len(ids)
                outcomes[i] = out
        attempt += 1
        retry = []
        for i in todo:
            p = prepared[i]
            if (outcomes[i].stopped == "diverged" and p.cfg.model.lr_policy == "ntk"
                    and attempt <= int(p.cfg.get("ntk_retries", 0) or 0)):
                p.info.setdefault("lr_diverged", []).append(p.net.lr)
                p.net.lr /= 2
                p.info["lr_info"]["lr"] = p.net.lr
                p.info["lr_info"]["lr_scale"] = p.info["lr_info"]["lr_scale"] / 2
                retry.append(i)
        todo = retry
    return [outcomes[i] for i in range(len(prepared))]


def batches(prepared: list[Prepared], max_nets: int, max_bytes: float = 2 * 2**30) -> list[list[int]]:
    """Indices grouped by (depth, d_in, d_out, dtype, budget), sorted by size, cut so that no batch holds more
    than ``max_nets`` nets, pads a net to more than 4x its own flops, or needs more than ``max_bytes`` (a net
    larger than that trains alone)."""
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(prepared):
        key = (len(p.net.W), p.net.x.shape[1], p.net.y.shape[1], str(dtype_of(p.cfg)), budget_of(p.cfg))
        groups.setdefault(key, []).append(i)
    out = []
    for members in groups.values():
        members.sort(key=lambda i: (prepared[i].net.width, prepared[i].net.n))
        while members:
            take = first_batch([(len(prepared[i].net.W), prepared[i].net.n, prepared[i].net.width) for i in members],
                               max_nets, max_bytes)
            out.append(members[:take])
            members = members[take:]
    return out


def first_batch(sizes: list[tuple[int, int, int]], max_nets: int, max_bytes: float = 2 * 2**30) -> int:
    """How many of the leading nets (depth, n, width; sorted by width) train as one batch: at most ``max_nets``,
    none padded to more than 4x its own flops, within ``max_bytes`` (at least one)."""
    depth0, n0, w0 = sizes[0]
    for k, (depth, n, width) in enumerate(sizes[1:], 1):
        # the batch's weights, their update and one layer's activations, padded to this (the widest) net
        size = (k + 1) * (3 * depth * width ** 2 + 4 * n * width) * 8
        if k >= max_nets or n * width ** 2 > 4 * n0 * w0 ** 2 or size > max_bytes:
            return k
    return len(sizes)


def record_points(steps: int) -> list[int]:
    """The steps a record keeps: 0-9, then 20 per decade (log-spaced), and the last."""
    pts = set(range(min(steps, 9) + 1))
    k = 20
    while True:
        t = round(10 ** (k / 20))
        if t >= steps:
            break
        pts.add(t)
        k += 1
    pts.add(steps)
    return sorted(pts)


def summary_of(p: Prepared, out: Outcome, budgets: list[int]) -> dict:
    """The run's summary.json: grelu-train's keys, and the scan's (verdicts per budget and target)."""
    cfg, info = p.cfg, p.info
    budget = budget_of(cfg)
    steps_list = list(range(len(out.sse)))
    final = out.sse[-1]
    status = "diverged" if out.stopped == "diverged" else "completed"
    reached = {t: verdicts.first_reaching(steps_list, out.sse, lv) for t, lv in info["levels"].items()}
    eps = float(cfg.eps) if cfg.get("eps") is not None else None
    head = verdicts.verdict(steps_list, out.sse, info["levels"][eps], budget) if eps is not None else {}
    table = {}
    for T in sorted({*budgets, budget}):
        if T <= budget:
            table[str(T)] = {f"{t:.0e}": verdicts.verdict(steps_list, out.sse, lv, T)["verdict"]
                             for t, lv in info["levels"].items()}
    n = p.net.n
    summary = {
        "status": status,
        "error": (f"train/sse became {final:g} at step {out.steps} (above {verdicts.DIVERGE_FACTOR:g} x the initial "
                  "SSE, or not finite)") if status == "diverged" else None,
        "model": cfg.model.name, "data": cfg.data.get("name"), "seed": cfg.seed, "width": p.net.width,
        "depth": int(cfg.model.depth), "lr": p.net.lr, "n_train": n,
        "d_in": p.net.x.shape[1], "d_out": p.net.y.shape[1],
        "train/sse": final if status == "completed" and math.isfinite(final) else None,
        "train/mse": 2 * final / n if status == "completed" and math.isfinite(final) else None,
        "initial/train_sse": info["initial/train_sse"], "steps": out.steps, "epochs": out.steps,
        "wall_time_s": round(out.seconds / max(out.extra.get("batch_size", 1), 1), 4),
        "eps": cfg.get("eps"), "eps_relative": bool(cfg.get("eps_relative", False)),
        "steps_to_eps": reached.get(eps), "epochs_to_eps": reached.get(eps), "seconds_to_eps": None,
        "loss_definition": LOSS, "run_dir": str(p.run_dir.resolve()),
        **{target_key(t): s for t, s in reached.items()},
        "verdict": head.get("verdict"), "budget_steps": budget,
        **{f"verdict/{k}": head[k] for k in ("late_rate", "extrapolated", "diverged_at") if k in head},
        "verdicts": table,
        **{f"ntk/predicted_{target_key(t)}": v for t, v in info["predicted"].items()},
        **{k: v for k, v in info.items() if k.startswith("ntk/")},
        **info["lr_info"],
        "lr_retries": len(info.get("lr_diverged", [])), "lr_diverged": info.get("lr_diverged", []),
        "engine": "batched", "batch/size": out.extra.get("batch_size"), "batch/seconds": round(out.seconds, 4),
        "model_flops": out.flops,
    }
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}


def write_record(p: Prepared, out: Outcome, budgets: list[int]) -> dict:
    """``config.yaml``, ``metrics.csv`` (a row per kept iterate t: epoch = step = t, the SSE after t GD steps) and
    ``summary.json``, each written atomically; returns the summary."""
    p.run_dir.mkdir(parents=True, exist_ok=True)
    import yaml

    config = p.config if p.config is not None else OmegaConf.to_container(p.cfg, resolve=True)
    write_atomic(p.run_dir / "config.yaml", yaml.dump(config, Dumper=yaml.CSafeDumper, sort_keys=False))
    rows = [{"epoch": t, "step": t, "wall_time_s": None,  # a row per kept iterate: the SSE after t GD steps
             "train/sse": out.sse[t] if math.isfinite(out.sse[t]) else None,
             "train/mse": 2 * out.sse[t] / p.net.n if math.isfinite(out.sse[t]) else None}
            for t in record_points(out.steps)]
    write_csv_atomic(p.run_dir / "metrics.csv", rows, list(rows[0]))
    summary = summary_of(p, out, budgets)
    write_atomic(p.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def curve(out_sse: list[float]) -> list[list[float]]:
    return [[t, out_sse[t]] for t in record_points(len(out_sse) - 1)]

