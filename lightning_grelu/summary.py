"""A job's shared context (:class:`Fit`), one ``trainer.fit`` of it (:class:`Attempt`), and the run's
``summary.json`` built from them (:func:`summarize`): what ``train._fit`` and ``_retry_diverged`` pass around."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from lightning_grelu.callbacks import RunRecord, TimeToTarget
from lightning_grelu.callbacks.stop_on_signal import StopOnSignal
from lightning_grelu.callbacks.time_to_target import target_key
from lightning_grelu.nets.spec import NetSpec
from lightning_grelu.scan.verdict import verdict


@dataclass
class Fit:
    """What every attempt of one job shares (the first, and each ``ntk`` retry): set up once by ``train._train``
    after every check passed."""

    cfg: DictConfig
    dm: Any  # the DataModule, set up
    device: torch.device
    run_dir: Path
    stopper: StopOnSignal
    spec: NetSpec  # the net's own description (memory estimate, the run record's net/* fields)
    memory: dict  # the memory estimate the run was admitted on (memory/* in the summary)
    callbacks: list = field(default_factory=list)  # added to the config's (sweeps add pruning)
    ckpt_path: str | None = None  # the checkpoint the first attempt resumes from


@dataclass
class Attempt:
    """One ``trainer.fit`` of a job and how it ended."""

    trainer: L.Trainer
    model: L.LightningModule
    record: RunRecord
    target: TimeToTarget
    status: str = "completed"
    error: str | None = None
    wall: float = 0.0


def json_number(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None  # JSON has no NaN; a diverged value is recorded as null beside status
    return v


def run_verdict(fit: Fit, attempt: Attempt, final_sse: float) -> dict:
    """The run's verdict under its own budget and eps (see :mod:`lightning_grelu.scan.verdict`), from the SSE of
    every epoch's first iterate and of the final one."""
    cfg, trainer, target, status = fit.cfg, attempt.trainer, attempt.target, attempt.status
    if status not in ("completed", "diverged") or cfg.eps is None or target.target is None:
        return {}
    per_epoch = max(1, trainer.num_training_batches) * int(cfg.model.get("inner_steps", 1) or 1)
    points = [(int(r["step"]) - per_epoch, float(r["train/sse"])) for r in attempt.record.rows
              if r.get("train/sse") is not None and r.get("step") is not None]
    if status == "completed" and math.isfinite(final_sse):
        points.append((trainer.global_step, final_sse))
    elif status == "diverged":
        points.append((trainer.global_step, math.inf))
    points = sorted(dict(points).items())
    budget = int(cfg.trainer.max_epochs) * per_epoch
    v = verdict([p[0] for p in points], [p[1] for p in points], target.target, budget)
    if target.step is not None:  # exact (every iterate was checked), where the record keeps every K-th
        v = {"verdict": "converged", "steps_to": target.step}
    out = {"verdict": v["verdict"], "budget_steps": budget}
    for k in ("late_rate", "extrapolated", "diverged_at"):
        if k in v:
            out[f"verdict/{k}"] = v[k]
    return out


def summarize(fit: Fit, attempt: Attempt) -> dict:
    """The run's headline numbers. ``train/sse`` and ``train/mse`` are evaluated once more on the
    whole training set with the final weights (the per-epoch values in metrics.csv are running sums).
    ``net/*``: the net's own description (results read it rather than the model's name)."""
    cfg, dm, status, error = fit.cfg, fit.dm, attempt.status, attempt.error
    trainer, model, record, target = attempt.trainer, attempt.model, attempt.record, attempt.target
    final = {"sse": float("nan"), "mse": float("nan")}
    evaluated = {}
    if status == "completed":
        final = model.evaluate(dm.train_inputs(), dm.split("train").y, stage="train")
        target.final(trainer, model, final["sse"])
        for split in ("val", "test"):  # final weights on the held-out splits that exist
            if split in dm.splits:
                for k, v in model.evaluate(dm.inputs(split), dm.split(split).y, stage=split).items():
                    evaluated[f"{split}/{k}"] = v
    summary = {
        "status": status,
        "error": error,
        "model": cfg.model.get("name"),
        "data": cfg.data.get("name"),
        "seed": cfg.seed,
        "width": cfg.model.width,
        "depth": cfg.model.depth,
        "lr": cfg.model.lr,
        "n_train": len(dm.split("train")),
        "train/sse": final["sse"],
        "train/mse": final["mse"],
        "initial/train_sse": record.initial_sse,
        "steps": trainer.global_step,
        "epochs": trainer.current_epoch,
        "wall_time_s": round(record.wall_before + attempt.wall, 3),  # the run's, over its attempts
        "attempts": record.attempts,
        "eps": cfg.eps,
        "eps_relative": bool(cfg.get("eps_relative", False)),
        "steps_to_eps": target.step,
        "epochs_to_eps": target.epoch,
        "seconds_to_eps": target.seconds,
        "loss_definition": "sse = 1/2 sum_i ||f(x_i)-y_i||^2 ; mse = 1/n sum_i ||f(x_i)-y_i||^2",
        "run_dir": str(Path(cfg.paths.run_dir).resolve()),
    }
    for t in target.targets:  # the first step reaching each target (null: not within the run)
        summary[target_key(t)] = target.reached.get(target_key(t))
    summary.update(fit.spec.record())
    summary.update(run_verdict(fit, attempt, final["sse"]))
    if status != "completed":  # no final evaluation: the last epoch's train SSE is what the run got to
        summary["train/sse_last_epoch"] = record.latest.get("train/sse")
    if "acc" in final:
        summary["train/acc"] = final["acc"]
    summary.update(evaluated)
    for k, v in record.latest.items():  # the probes' last values (kept across a resume)
        if k.startswith("probe/") and v is not None:
            summary[k] = v
    summary.update(getattr(model, "lr_info", {}) or {})  # the lr the step-size policy chose (and why)
    summary.update(getattr(model, "switch_report", {}) or {})
    return {k: json_number(v) for k, v in summary.items()}
