"""``train(cfg)``: one training run from a composed config; returns its summary (sweeps call this).

Writes the run record under ``cfg.paths.run_dir``: ``config.yaml`` (resolved), ``metrics.csv``
(per epoch), ``summary.json`` (see :func:`summarize`) and ``checkpoints/``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from lightning_grelu.atomic import write_atomic
from lightning_grelu.callbacks import Diverged, DivergenceGuard, RunRecord, TimeToTarget
from lightning_grelu.callbacks.checkpoint_io import AtomicCheckpointIO, verify
from lightning_grelu.config_check import check_constructors, validate
from lightning_grelu.errors import ConfigError, MachineError, SuiteError
from lightning_grelu.loggers import build_loggers, finish_wandb, publish_summary
from lightning_grelu.memory import check_devices, check_memory, describe
from lightning_grelu.nets.mlp import init_on
from lightning_grelu.summary import Attempt, Fit, summarize
from lightning_grelu import run_dir as rundir
from lightning_grelu.callbacks.stop_on_signal import StopOnSignal
from lightning_grelu.signals import Interrupted


# Known, harmless warnings from Lightning and torch (no val split; pytree API churn).
warnings.filterwarnings("ignore", message=".*Total length of .* across ranks is zero.*")
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
# torch's own forward-mode AD (the ntk step, the NTK probe) loads its decompositions through torch.jit.script
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script. is deprecated.*", category=FutureWarning)
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")  # a resume writes beside its checkpoints
warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint need to be provided.*")  # ditto
# a full-batch epoch is one step: the per-epoch run record is the log; per-rank throughput probes need no sync
warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
warnings.filterwarnings("ignore", message=r".*recommended to use `self.log\('probe/.*sync_dist=True.*")
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
logging.getLogger("lightning.fabric").setLevel(logging.WARNING)


def _without_name(node: DictConfig) -> dict:
    """A group's config minus its ``name`` (a label for records, not a constructor argument)."""
    return {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k != "name"}


def _instantiate(node, **kwargs):
    """Instantiate a config group. A constructor that rejects a value (ValueError: the nets raise it for their
    own arguments) is the job's parameter; the suite's own errors (a data file, :class:`ConfigError`) keep
    their kind; anything else is a crash, as raised."""
    try:
        return instantiate(node, **kwargs)
    except SuiteError:
        raise
    except ValueError as e:
        raise ConfigError(str(e)) from None
    except Exception as e:  # hydra wraps constructor errors in InstantiationException
        cause = e.__cause__ or e.__context__
        if isinstance(cause, SuiteError):
            raise cause from None
        if isinstance(cause, ValueError):
            raise ConfigError(str(cause)) from None
        raise


DOUBLE_PRECISIONS = ("64", "64-true", "double")


def build_data(cfg: DictConfig):
    """The DataModule, set up: its files are read (and checked) here. Under ``trainer.precision=64-true``
    its inputs and targets are float64, so that the whole training path is."""
    dm = _instantiate(_without_name(cfg.data))
    if str(cfg.get("trainer", {}).get("precision")) in DOUBLE_PRECISIONS:
        dm.dtype = torch.float64
    dm.setup("fit")  # a missing or damaged file is a DataError (the machine's); a bad data setting a ConfigError
    return dm


def build_model(cfg: DictConfig, dm, device: torch.device):
    """The LightningModule; on a GPU each layer goes to the device as soon as it is drawn."""
    with init_on(device if device.type == "cuda" else None):
        return _instantiate(_without_name(cfg.model), d_in=dm.d_in, d_out=dm.d_out)


def apply_step_budget(cfg: DictConfig, dm) -> None:
    """``step_budget=theorem``: Theorem 1's T = c log(n^3 L / (d_x eps)) GD steps (c = ``step_budget_scale``)
    replace ``trainer.max_epochs`` (in epochs of this data's steps), before the config is recorded."""
    budget = cfg.get("step_budget")
    if budget in (None, "null"):
        return
    if budget != "theorem":
        raise ConfigError(f"step_budget must be null (trainer.max_epochs) or theorem, got {budget!r}")
    eps, scale = cfg.get("eps"), cfg.get("step_budget_scale", 1.0)
    if not (isinstance(eps, (int, float)) and eps > 0):
        raise ConfigError("step_budget=theorem needs eps > 0 (T = c log(n^3 L / (d_x eps)))")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ConfigError(f"step_budget_scale must be a finite number > 0, got {scale!r}")
    n, depth = len(dm.split("train")), cfg.model.depth
    steps = math.ceil(scale * math.log(n ** 3 * depth / (dm.d_in * eps)))
    per_epoch = cfg.model.get("inner_steps", 1) if dm.batch_size is None else math.ceil(n / dm.batch_size)
    cfg.trainer.max_epochs = max(1, math.ceil(max(steps, 1) / per_epoch))


def check_writable(run_dir: Path, model) -> None:
    """Before training: the run directory can be made and written, and its disk has room for two
    checkpoints (weights, optimizer state and gates; a new one is written beside the last)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write_test."):  # a name of its own: no race
            pass
    except OSError as e:
        raise MachineError(f"cannot write the run directory {run_dir}: {e.strerror or e}; choose another "
                          "paths.root=... or paths.run_dir=..., or fix its permissions") from None
    state = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    need = 2 * 3 * state + (64 << 20)  # x3: weights + momentum/Adam state; x2: old and new checkpoint
    free = shutil.disk_usage(run_dir).free
    if free < need:
        raise MachineError(f"not enough disk space for {run_dir}: about {need / 2**30:.2f} GiB needed for checkpoints, "
                          f"{free / 2**30:.2f} GiB free; free some space or choose another paths.root=...")


def train(cfg: DictConfig, callbacks: list | None = None, notes: dict[str, str] | None = None) -> dict:
    """Run one job; ``callbacks`` are added to those the config asks for (sweeps add pruning); ``notes``
    (relative path -> text, e.g. Hydra's ``.hydra/*.yaml``) are written with the first write, after every
    check, and kept from the first attempt on a resume.

    Everything that can refuse the job (config, devices, data, memory, disk, the run directory's owner and
    its finished or unfinished run, the checkpoint) is checked before the first write. A signal stops the
    run at an epoch's end with ``last.ckpt`` saved; the summary then says ``interrupted``."""
    stopper = StopOnSignal().install()
    try:
        summary = _train(cfg, callbacks, stopper, notes or {})
    finally:
        stopper.uninstall()
    if stopper.late is not None and summary.get("status") != "interrupted":
        # the signal came after training, while the records were written: they are whole, and the caller stops
        # now (a reproduction or a multirun does not start its next job; a sweep trial goes back to its worker)
        raise Interrupted(stopper.late, saved=True, finished=True)
    return summary


def _train(cfg: DictConfig, callbacks: list | None, stopper: StopOnSignal, notes: dict[str, str]) -> dict:
    validate(cfg)
    device = check_devices(cfg.trainer)  # a GPU preset without a GPU: one line, before any work
    check_constructors(cfg)  # every group can be built from its keys (a key its class does not take: one line)
    run_dir = Path(cfg.paths.run_dir).resolve()
    main_rank = rank_zero_only.rank == 0  # DDP ranks > 0 are launched by rank 0 after its checks passed
    overwrite = bool(cfg.get("overwrite", False))
    existing = rundir.inspect(run_dir) if main_rank else None
    ckpt_path = rundir.resolve_ckpt(cfg.get("ckpt_path"), run_dir)
    if cfg.seed is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_data(cfg)  # bad values fail here, before anything is written
    apply_step_budget(cfg, dm)
    config = OmegaConf.to_container(cfg, resolve=True)
    if main_rank and rundir.decide(existing, config, ckpt_path, overwrite) == "done":
        return {**existing.summary, "note": "finished before; nothing to do"}  # a requeued job that had finished
    spec = describe(cfg, dm)  # the net's own description, from its class: nothing is built yet
    memory = check_memory(cfg, dm, device, spec)  # refuses a run that cannot fit, before the net is built
    if rank_zero_only.rank == 0 and memory["memory/estimate_gib"] >= 1:
        have = memory.get("memory/available_gib")
        print(f"grelu-train: memory: about {memory['memory/estimate_gib']:.1f} GiB on {device}"
              + (f" ({have:.1f} GiB available)" if have is not None else ""), flush=True)
    model = build_model(cfg, dm, device)
    if ckpt_path is not None:
        verify(ckpt_path, model, cfg.trainer.max_epochs)
    check_writable(run_dir, model)
    lock = None
    if main_rank:  # the first write: own the directory, then look again (another command may have finished)
        lock = rundir.Lock(run_dir, "paths.run_dir").take()
        try:
            existing = rundir.inspect(run_dir)
            if rundir.decide(existing, config, ckpt_path, overwrite) == "done":
                return {**existing.summary, "note": "finished before; nothing to do"}
        except BaseException:
            lock.release()
            raise
        if overwrite and ckpt_path is None:
            rundir.clear_records(run_dir)
        write_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        for name, text in notes.items():  # a resume keeps the first attempt's notes; overwrite=true replaces them
            if (overwrite and ckpt_path is None) or not (run_dir / name).exists():
                (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
                write_atomic(run_dir / name, text)
    fit = Fit(cfg, dm, device, run_dir, stopper, spec, memory, list(callbacks or []), ckpt_path)
    try:
        return _retry_diverged(fit, _fit(fit, model, fit.ckpt_path))
    finally:
        if lock is not None:
            lock.release()


def _retry_diverged(fit: Fit, summary: dict) -> dict:
    """Under ``model.lr_policy=ntk`` a diverged run is run again from its initialization at half the step,
    up to ``ntk_retries`` times (default 1): the step was chosen at init, and a kernel that moves as the net
    trains can make it too large. The record is the last attempt's; ``lr_retries`` says how many it took and
    ``lr_diverged`` the steps that diverged. A resumed run keeps the step its checkpoint holds."""
    cfg = fit.cfg
    retries = int(cfg.get("ntk_retries", 0) or 0) if cfg.model.get("lr_policy") == "ntk" else 0
    diverged: list[float] = []
    while (summary["status"] == "diverged" and len(diverged) < retries and fit.ckpt_path is None
           and fit.stopper.late is None):  # a signal after the diverged attempt: no retry, train() stops
        diverged.append(summary.get("lr"))
        cfg.model.lr_scale = float(cfg.model.lr_scale) / 2
        if rank_zero_only.rank == 0:
            rundir.clear_records(fit.run_dir, keep=("config.yaml", ".hydra", ".lock"))
            write_atomic(fit.run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        model = build_model(cfg, fit.dm, fit.device)  # the same initial weights (seeded generators)
        summary = _fit(fit, model, None, {"lr_retries": len(diverged), "lr_diverged": diverged})
    return summary


def _fit(fit: Fit, model, ckpt_path: str | None, notes: dict | None = None) -> dict:
    """One attempt: ``trainer.fit`` from ``ckpt_path`` (or the net's initialization), then its summary,
    written to ``summary.json`` whatever ended it."""
    cfg, run_dir = fit.cfg, fit.run_dir
    config = OmegaConf.to_container(cfg, resolve=True)
    loggers = build_loggers(cfg, run_dir, resuming=ckpt_path is not None)
    record = RunRecord(run_dir)
    target = TimeToTarget(cfg.eps, relative=cfg.get("eps_relative", False), stop=cfg.get("stop_at_eps", False),
                          targets=cfg.get("targets"))
    try:
        extra = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    except Exception as e:
        raise ConfigError(f"callbacks: {e.__cause__ or e}") from None
    extra += fit.callbacks
    # `callbacks=none` means no checkpoints: without this Lightning adds its own per-epoch one
    checkpointing = any(isinstance(c, L.pytorch.callbacks.ModelCheckpoint) for c in extra)
    trainer = instantiate(cfg.trainer, logger=loggers or False,
                          callbacks=[record, target, DivergenceGuard(), *extra, fit.stopper],
                          enable_checkpointing=checkpointing, default_root_dir=str(run_dir),
                          plugins=[AtomicCheckpointIO()])
    trainer._signal_connector.register_signal_handlers = lambda: None  # signals are StopOnSignal's (see signals.py)
    for lg in loggers:
        lg.log_hyperparams(config)

    attempt = Attempt(trainer, model, record, target)
    t0 = time.perf_counter()
    try:
        trainer.fit(model, datamodule=fit.dm, ckpt_path=ckpt_path)
        if fit.stopper.interruption() is not None:
            attempt.status, attempt.error = "interrupted", str(fit.stopper.interruption())
    except Diverged as e:
        attempt.status, attempt.error = "diverged", str(e)
    except Interrupted as e:
        attempt.status, attempt.error = "interrupted", str(e)
        raise
    except BaseException as e:
        attempt.status, attempt.error = "failed", f"{type(e).__name__}: {e}"
        raise
    finally:
        fit.stopper.phase = "after"
        attempt.wall = time.perf_counter() - t0
        record.flush(trainer)
        if fit.device.type == "cuda":  # what the run really took, beside the estimate it was admitted on
            fit.memory["memory/peak_gib"] = torch.cuda.max_memory_allocated(fit.device) / 2**30
        if notes is None:
            notes = {"lr_retries": 0} if cfg.model.get("lr_policy") == "ntk" else {}
        summary = {**summarize(fit, attempt), **fit.memory, **notes}
        if attempt.status == "interrupted":
            summary["signal"] = int(fit.stopper.signum)
        if rank_zero_only.rank == 0:
            write_atomic(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n", fault="summary")
            publish_summary(loggers, summary)
        finish_wandb(loggers, exit_code=0 if attempt.status == "completed" else 1)
    return summary
