"""Score a checkpoint on data splits: the same numbers a run's summary has (``train/sse``, ``test/acc``, ...),
computed by the same code (:meth:`RegressionModule.evaluate` on whole splits), written as one JSON record.

The net is rebuilt from the checkpoint (its saved hyperparameters); its class and the data come from the
run's ``config.yaml`` when the checkpoint sits in a run directory, with the caller's data/trainer/seed
overrides applied on top, so ``grelu-eval ckpt_path=<run>/checkpoints/last.ckpt`` re-scores a run on its
own data and ``... data.data_seed=7`` scores it on fresh samples of the same problem.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import torch
import yaml
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from lightning_grelu.atomic import write_atomic
from lightning_grelu.callbacks.checkpoint_io import digests, epochs_done, sha256
from lightning_grelu.config_check import validate
from lightning_grelu.errors import ConfigError
from lightning_grelu.memory import check_devices
from lightning_grelu.summary import json_number
from lightning_grelu.run_dir import resolve_ckpt
from lightning_grelu.train import build_data

EVAL_KEYS = ("ckpt_path", "splits", "out", "overwrite")


def run_dir_of(ckpt: Path) -> Path | None:
    """The run directory a checkpoint belongs to (``<run>/checkpoints/x.ckpt`` with ``<run>/config.yaml``)."""
    run = ckpt.resolve().parent.parent
    return run if ckpt.resolve().parent.name == "checkpoints" and (run / "config.yaml").is_file() else None


def eval_config(composed: DictConfig, overrides: list[str]) -> DictConfig:
    """The run's recorded config with the caller's overrides on top (values taken from ``composed``, the
    config Hydra composed from them, so groups such as ``data=fashion_mnist`` are whole)."""
    ckpt = Path(str(composed.ckpt_path))
    run = run_dir_of(ckpt) if ckpt.exists() else None
    if run is None:
        return composed  # a checkpoint outside a run directory: the command line names model and data
    cfg = OmegaConf.create(yaml.safe_load((run / "config.yaml").read_text()))
    for o in overrides:
        key = o.lstrip("+~").split("=", 1)[0]
        if key.split(".")[0] == "model" or key == "experiment":
            raise ConfigError(f"{key}: the model is the checkpoint's (from {run / 'config.yaml'}); drop {o!r}")
        if key.startswith("hydra.") or key in EVAL_KEYS:
            continue
        OmegaConf.update(cfg, key, OmegaConf.select(composed, key), force_add=True)
    for k in EVAL_KEYS:
        OmegaConf.update(cfg, k, composed.get(k), force_add=True)
    return cfg


def default_out(ckpt: Path, overrides: list[str]) -> Path:
    run = run_dir_of(ckpt)
    where = (run if run is not None else ckpt.resolve().parent) / "eval"
    told = [o for o in overrides if o.split("=", 1)[0] not in EVAL_KEYS and not o.startswith("hydra.")]
    tail = re.sub(r"[^A-Za-z0-9_.=,+-]+", "_", "-".join(told))[:120]
    return where / (ckpt.stem + (f"-{tail}" if tail else "") + ".json")


def evaluate(cfg: DictConfig, overrides: list[str]) -> tuple[dict, Path]:
    """Score ``cfg.ckpt_path`` on ``cfg.splits``; returns the record and where it was written."""
    ckpt = resolve_ckpt(str(cfg.ckpt_path), Path("."))
    if ckpt is None or ckpt == "last":
        raise ConfigError("ckpt_path: give a .ckpt file (e.g. runs/<experiment>/<run>/checkpoints/last.ckpt)")
    ckpt = Path(ckpt)
    out = Path(cfg.out) if cfg.get("out") else default_out(ckpt, overrides)
    recorded = digests(ckpt)
    digest = sha256(ckpt)
    if recorded is not None and digest not in recorded:
        raise ConfigError(f"checkpoint {ckpt} does not match its checksum ({ckpt.name}.sha256): it was truncated "
                          "or changed since it was written")
    validate(cfg)
    device = check_devices(cfg.trainer)
    dm = build_data(cfg)
    splits = list(cfg.splits) if cfg.get("splits") else list(dm.splits)
    missing = [s for s in splits if s not in dm.splits]
    if missing:
        raise ConfigError(f"splits: the data have no {', '.join(missing)} split (they have "
                          f"{', '.join(dm.splits)}); e.g. splits=[{','.join(dm.splits)}]")
    if out.exists() and not cfg.get("overwrite", False):  # after the arguments' own checks: they say what is wrong
        raise ConfigError(f"{out} exists (this checkpoint was scored on these data before); read it, or give "
                          "out=... or overwrite=true")
    try:
        model = get_class(cfg.model._target_).load_from_checkpoint(ckpt, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ConfigError(f"checkpoint {ckpt} does not load as {cfg.model._target_} "
                          f"({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if (model.hparams.d_in, model.hparams.d_out) != (dm.d_in, dm.d_out):
        raise ConfigError(f"the checkpoint's net maps {model.hparams.d_in} -> {model.hparams.d_out} features, these "
                          f"data have {dm.d_in} -> {dm.d_out}; score it on data of its own shape")
    model = model.to(device).eval()
    if str(cfg.trainer.get("precision")) in ("64", "64-true", "double"):
        model = model.double()
    record = {"ckpt_path": str(ckpt.resolve()), "ckpt_sha256": digest,
              "epochs": epochs_done(torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)),
              "model": cfg.model.get("name"), "data": cfg.data.get("name"), "seed": cfg.seed,
              "width": cfg.model.width, "depth": cfg.model.depth}
    t0 = time.perf_counter()
    for split in splits:
        x = dm.inputs(split).to(device)
        y = dm.split(split).y.to(device)
        record[f"n_{split}"] = int(x.shape[0])
        for k, v in model.evaluate(x, y, stage=split).items():
            record[f"{split}/{k}"] = json_number(v)
    record["wall_time_s"] = round(time.perf_counter() - t0, 3)
    record["overrides"] = [o for o in overrides if o.split("=", 1)[0] not in ("out", "overwrite")]
    record["config"] = OmegaConf.to_container(cfg, resolve=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, json.dumps(record, indent=2) + "\n")
    return record, out
