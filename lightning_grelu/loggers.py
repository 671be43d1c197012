"""Logger construction. W&B's mode comes from the environment: WANDB_MODE if set; otherwise online
when an API key is configured, else offline (sync later with ``wandb sync <run_dir>/wandb/offline-run-*``)."""

from __future__ import annotations

import logging
import netrc
import os
import secrets
import string
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from lightning_grelu.atomic import write_atomic

log = logging.getLogger(__name__)


def _has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_mode() -> str:
    return os.environ.get("WANDB_MODE") or ("online" if _has_wandb_key() else "offline")


def wandb_run_id(run_dir: Path, resuming: bool) -> str:
    """The W&B run id of this run directory, kept in ``wandb/run_id``: a resumed run (``ckpt_path``) continues
    the same W&B run, a fresh one gets a new id."""
    path = run_dir / "wandb" / "run_id"
    if resuming and path.exists():
        return path.read_text().strip()
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))  # W&B's id format
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, run_id + "\n")
    return run_id


def build_loggers(cfg: DictConfig, run_dir: Path, resuming: bool = False) -> list:
    loggers = []
    for name, lcfg in (cfg.get("logger") or {}).items():
        if lcfg is None:
            continue
        if "Wandb" in str(lcfg.get("_target_", "")):
            os.environ.setdefault("WANDB_MODE", wandb_mode())
            lg = instantiate(lcfg, id=wandb_run_id(run_dir, resuming), resume="allow")
            # Lightning always passes anonymous=None to wandb.init, and W&B warns that the setting has no effect
            if getattr(lg, "_wandb_init", {}).get("anonymous", "unset") is None:
                del lg._wandb_init["anonymous"]
            loggers.append(lg)
            continue
        loggers.append(instantiate(lcfg))
    return loggers


# summary keys that repeat a config value (model.width, ...): W&B would show both as separate columns. (``lr``
# stays: it is the step the lr policy chose, which differs from model.lr unless the policy is fixed.)
CONFIG_ECHOES = ("width", "depth", "seed", "eps", "eps_relative")


def publish_summary(loggers: list, summary: dict) -> None:
    """The run's headline numbers: W&B's run summary (what its tables compare), a last row elsewhere."""
    numbers = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
               and k not in CONFIG_ECHOES}
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger":
            lg.experiment.summary.update({**numbers, "status": summary["status"]})
        else:  # after fit the logger has flushed and closed: log the row at the run's last step, then save it
            lg.log_metrics({f"summary/{k}": v for k, v in numbers.items()}, step=int(summary.get("steps") or 0))
            lg.save()
            if hasattr(lg, "finalize"):
                lg.finalize("success" if summary["status"] == "completed" else "failed")


def finish_wandb(loggers: list, exit_code: int = 0) -> None:
    """Always close the W&B run, also on error, and return only once its run file is on disk, so an offline run
    directory is complete and syncable the moment training returns."""
    if not any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        return
    import wandb

    from lightning_grelu.wandb_records import wait_until_closed

    run = wandb.run
    if run is None:
        return
    run_file, writes_file = run.settings.sync_file, run.settings.mode != "disabled"
    wandb.finish(exit_code=exit_code)
    if writes_file and not wait_until_closed(run_file):
        log.warning("W&B has not yet closed %s; it will be complete once this process's W&B service exits.",
                    run_file)
