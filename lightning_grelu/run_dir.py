"""Who may write a run directory, and what a new command may do with the run already in it.

- One process at a time: an ``flock`` on ``<run_dir>/.lock`` (released by the kernel however the holder
  dies), whose text names the holder, so a second command says who has it.
- A finished run (``summary.json`` says completed or diverged) is never overwritten: a new command into
  it is refused unless it says ``overwrite=true``; ``ckpt_path=last`` with the run's own config has
  nothing to do and writes nothing (a requeued cluster job that had finished).
- An unfinished run (records, no final summary) is resumed (``ckpt_path=last``) or replaced
  (``overwrite=true``), never silently mixed with a new start.
- A resume must be the same run: its config may differ from the recorded ``config.yaml`` only in
  keys that do not change the science (:data:`RESUMABLE`), and the checkpoint is checked (checksum,
  weight shapes, epoch) before anything is written.

Every check here only reads; :func:`take` is the first write.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from lightning_grelu.errors import ConfigError

# Keys a resume may change: where things go, what is logged or probed, how often checkpoints are taken,
# how long to train (checked against the checkpoint) and on which hardware.
RESUMABLE = ("ckpt_path", "overwrite", "optimized_metric", "sweep_trial", "paths.", "logger", "callbacks", "experiment_name", "trainer.max_epochs",
             "trainer.devices", "trainer.num_nodes", "trainer.accelerator", "trainer.strategy",
             "trainer.enable_progress_bar", "trainer.log_every_n_steps")
FINISHED = ("completed", "diverged")
RECORDS = ("config.yaml", "metrics.csv", "summary.json", "checkpoints", "wandb", "csv", "tensorboard")


@dataclass
class Existing:
    """What a run directory holds before this command touches it."""
    path: Path
    summary: dict | None
    config: dict | None
    has_records: bool

    @property
    def finished(self) -> bool:
        return bool(self.summary) and self.summary.get("status") in FINISHED


def inspect(run_dir: Path) -> Existing:
    def read(name, load):
        try:
            return load((run_dir / name).read_text())
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError, yaml.YAMLError) as e:
            raise ConfigError(f"{run_dir / name} is unreadable ({e}); move the run directory aside or choose "
                              "another paths.run_dir") from None

    summary, config = read("summary.json", json.loads), read("config.yaml", yaml.safe_load)
    has = run_dir.is_dir() and any((run_dir / name).exists() for name in RECORDS)
    return Existing(run_dir, summary if isinstance(summary, dict) else None,
                    config if isinstance(config, dict) else None, has)


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def changed_keys(recorded: dict, now: dict, free: tuple[str, ...] = RESUMABLE) -> list[tuple[str, object, object]]:
    """Keys whose values differ between the recorded config and this command's, outside ``free``."""
    old, new = flatten(recorded), flatten(now)
    out = []
    for k in sorted(set(old) | set(new)):
        if k.startswith(free) or k == "hydra":
            continue
        if old.get(k, "<unset>") != new.get(k, "<unset>"):
            out.append((k, old.get(k, "<unset>"), new.get(k, "<unset>")))
    return out


def decide(existing: Existing, config: dict, ckpt_path, overwrite: bool) -> str:
    """``fresh`` (start here), ``resume`` (continue the checkpoint) or ``done`` (the finished run already is
    this command's result: write nothing). Raises ConfigError for anything that would mix or lose records."""
    where = existing.path
    if ckpt_path is not None and existing.config is not None:
        diff = changed_keys(existing.config, config)
        if diff:
            shown = "; ".join(f"{k}: {o!r} -> {n!r}" for k, o, n in diff[:3]) + (" ..." if len(diff) > 3 else "")
            raise ConfigError(f"cannot resume {where}: its config.yaml differs ({shown}); resume with the run's own "
                              "settings, or start a new paths.run_dir")
    if existing.finished and not overwrite:
        s = existing.summary
        same_length = (existing.config or {}).get("trainer", {}).get("max_epochs") == config["trainer"]["max_epochs"]
        if ckpt_path is not None and existing.config is not None and same_length:
            return "done"
        raise ConfigError(f"{where} holds a finished run (status {s.get('status')}, train/sse {s.get('train/sse')}) "
                          "and is never overwritten: choose a new paths.run_dir, or add overwrite=true to replace it "
                          "(with ckpt_path=last: to extend it)")
    if ckpt_path is None and existing.has_records and not overwrite:
        status = (existing.summary or {}).get("status", "no summary")
        raise ConfigError(f"{where} holds an unfinished run ({status}): resume it with ckpt_path=last, or add "
                          "overwrite=true to start it over")
    return "resume" if ckpt_path is not None else "fresh"


def resolve_ckpt(ckpt_path, run_dir: Path):
    """The checkpoint a command resumes from (``last``: the run directory's), or None for a fresh start; a path
    that does not exist or is not a ``torch.save`` archive is refused."""
    if ckpt_path in (None, "null"):
        return None
    if ckpt_path == "last":
        last = run_dir / "checkpoints" / "last.ckpt"
        if last.exists():
            return str(last)
        finished = inspect(run_dir).finished if run_dir.is_dir() else False
        if (run_dir / "metrics.csv").exists() and not finished:  # (a finished run is refused by run_dir.decide)
            raise ConfigError(f"ckpt_path=last: {run_dir} has records but no checkpoints/last.ckpt (the run stopped "
                              "before its first checkpoint; see callbacks.model_checkpoint.every_n_epochs); start "
                              "it over with overwrite=true, or in a new paths.run_dir")
        return None  # nothing there yet: a fresh start
    if not Path(ckpt_path).exists():
        raise ConfigError(f"ckpt_path {ckpt_path!r} does not exist (give a .ckpt file, or ckpt_path=last)")
    if not zipfile.is_zipfile(ckpt_path):  # torch.save writes a zip archive; anything else is not ours
        raise ConfigError(f"ckpt_path {ckpt_path!r} is not a checkpoint (not a torch.save archive: truncated or "
                          "another file); give a .ckpt from checkpoints/, or ckpt_path=last")
    return ckpt_path


def refuse_early(cfg, explicit_run_dir: bool) -> None:
    """What :func:`decide` and :func:`resolve_ckpt` refuse, asked by grelu-train before torch and Lightning are
    imported (a refusal in a fraction of a second, not seconds). Only refusals are taken from here: ``train()``
    checks everything again, and alone decides a start, a resume or "nothing to do". Skipped where the answer
    could differ from ``train()``'s: ``step_budget`` sets trainer.max_epochs from the data, and a DDP rank > 0
    finds the records rank 0 has begun to write."""
    from omegaconf import OmegaConf

    if any(int(os.environ.get(k, "0") or 0) != 0 for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")):
        return
    ckpt = cfg.get("ckpt_path")
    if not explicit_run_dir:  # Hydra makes a new run directory: only a named checkpoint file can be wrong now
        if ckpt not in (None, "null", "last"):
            resolve_ckpt(ckpt, Path("."))
        return
    if cfg.get("step_budget") is not None:
        return
    run_dir = Path(cfg.paths.run_dir).resolve()
    existing = inspect(run_dir)
    decide(existing, OmegaConf.to_container(cfg, resolve=True), resolve_ckpt(ckpt, run_dir),
           bool(cfg.get("overwrite", False)))


def clear_records(run_dir: Path, keep: tuple[str, ...] = ()) -> None:
    """``overwrite=true`` on a fresh start: the old run's records go first, so nothing of it mixes in."""
    for name in (r for r in RECORDS if r not in keep):
        p = run_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


class Lock:
    """An exclusive flock on ``<run_dir>/.lock`` for this process's lifetime (or until :meth:`release`)."""

    def __init__(self, directory: Path, what: str = "run directory"):
        self.path = Path(directory) / ".lock"
        self.what = what
        self.fd: int | None = None

    def take(self) -> "Lock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        holder = ""
        for _ in range(20):  # the holder writes its name just after taking the lock: give it a moment
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode(errors="replace").strip()
                if holder:
                    break
                time.sleep(0.05)
        else:
            holder = "another process"
        if holder:
            os.close(fd)
            raise ConfigError(f"{self.path.parent} is in use by {holder}; wait for it to finish (or stop it), or "
                              f"choose another {self.what}")
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]
        note = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')} ({command})\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, note.encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing drops the flock
            self.fd = None

    def __enter__(self):
        return self.take()

    def __exit__(self, *exc):
        self.release()
