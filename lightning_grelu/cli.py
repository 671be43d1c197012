"""``grelu-train``: the Hydra entry point. ``grelu-train`` alone runs the embedded default (a small
Ackley problem on CPU); any ``key=value`` override or ``group=option`` choice may follow.

Exit codes: 0 completed, 1 failed, 2 bad config/data/arguments, 3 diverged.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from lightning_grelu.config_check import CONF_DIR, check_group_choice
from lightning_grelu.errors import EXIT_CONFIG, EXIT_DIVERGED, EXIT_FAILED, ConfigError

GROUPS = ("model", "data", "trainer", "logger", "experiment")


def _fail(message: str, code: int) -> None:
    print(f"grelu-train: error: {message}", file=sys.stderr)
    sys.exit(code)


def print_summary(s: dict) -> None:
    keys = ["status", "model", "data", "width", "depth", "lr", "n_train", "initial/train_sse", "train/sse",
            "train/mse", "steps", "steps_to_eps", "wall_time_s"]
    keys += [k for k in s if k.startswith(("val/", "test/")) or k in ("switch/rel_jump", "switch/max_rel_pred_diff",
                                                                     "switch/rel_residual")]
    width = max(len(k) for k in keys)
    for k in keys:
        v = s.get(k)
        v = f"{v:.6g}" if isinstance(v, float) else v
        print(f"  {k:<{width}}  {v}")


def _remove_if_unused(run_dir: Path) -> None:
    """After a config error, drop the directory Hydra made for the run if it holds nothing but
    Hydra's own notes (.hydra/, its job log): a bad command leaves no half-written run behind."""
    if run_dir.is_dir() and all(p.name == ".hydra" or p.suffix == ".log" for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _hydra_main(cfg: DictConfig) -> None:
    from lightning_grelu.train import train  # heavy imports after Hydra parsed the command line

    try:
        summary = train(cfg)
    except ConfigError as e:
        _remove_if_unused(Path(cfg.paths.run_dir))
        _fail(str(e), EXIT_CONFIG)
    except Exception as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        _fail(f"{type(e).__name__}: {e} (run dir {cfg.paths.run_dir}; HYDRA_FULL_ERROR=1 for the traceback)",
              EXIT_FAILED)
    if int(os.environ.get("LOCAL_RANK", "0")) != 0 or int(os.environ.get("NODE_RANK", "0")) != 0:
        return
    print_summary(summary)
    if summary["status"] == "diverged":
        print(f"grelu-train: error: run diverged: {summary['error']}", file=sys.stderr)
        print(Path(cfg.paths.run_dir).resolve())
        sys.exit(EXIT_DIVERGED)
    print(Path(cfg.paths.run_dir).resolve())


def main() -> None:
    # Check group choices before Hydra so that a typo gets one line, not Hydra's multi-line report.
    for arg in sys.argv[1:]:
        key, sep, value = arg.lstrip("+~").partition("=")
        if sep and key in GROUPS and value and value != "null" and "," not in value:
            try:
                check_group_choice(key, value)
            except ConfigError as e:
                _fail(str(e), EXIT_CONFIG)
    _hydra_main()


if __name__ == "__main__":
    main()
