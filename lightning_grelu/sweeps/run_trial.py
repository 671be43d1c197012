"""One trial in a fresh process: ``python -m lightning_grelu.sweeps.run_trial RUN_DIR OVERRIDE...``.

Composes grelu-train's config from the overrides (Hydra's compose API) and runs ``train(cfg)`` with
``ckpt_path=last``: a trial whose earlier attempt was stopped (a signal, its worker's death) continues
from its checkpoint, and one that had finished is not run again. The run record in RUN_DIR is what the
sweep reads. Its exit code tells the worker the outcome's kind (``trial_exit`` of errors.TABLE: 0 completed,
1 crash, 2 the trial's parameters, 3 diverged, 4 pruned, 5 this machine cannot run it (no GPU, disk, data:
not the trial's fault), 128+N stopped by signal N); its last line on stderr is the reason.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from lightning_grelu import signals
from lightning_grelu.config_check import CONF_DIR
from lightning_grelu.errors import EXIT_DIVERGED, EXIT_PRUNED, ConfigError, classify, message, trial_exit_code
from lightning_grelu.signals import Interrupted


def compose_trial(run_dir: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[*overrides, f"paths.run_dir={run_dir}"])


def continuation(run_dir: Path) -> list[str]:
    """The trial's folder is its own: an earlier attempt's checkpoint is resumed; an attempt that left records
    but no checkpoint (callbacks=none) is started over."""
    return ["ckpt_path=last"] if (run_dir / "checkpoints" / "last.ckpt").exists() else ["overwrite=true"]


def finished_before(run_dir: Path) -> dict | None:
    """An attempt that finished (its worker died before telling the study) is the trial's result."""
    from lightning_grelu.run_dir import inspect

    try:
        existing = inspect(run_dir)
    except ConfigError:
        return None
    return existing.summary if existing.finished else None


def die_with_parent(worker: int | None = None) -> None:
    """This process gets SIGTERM when its worker (pid ``worker``, if known) dies, even by SIGKILL, so it stops at an
    epoch's end with its checkpoint instead of finishing unseen while the study gives its trial to another worker."""
    signals.die_with_parent(signal.SIGTERM, parent=worker)


def main(argv: list[str] | None = None) -> int:
    run_dir, *overrides = argv if argv is not None else sys.argv[1:]
    import optuna

    from lightning_grelu.sweeps.pruning import from_environment
    from lightning_grelu.train import train

    summary = finished_before(Path(run_dir))
    if summary is not None:
        return EXIT_DIVERGED if summary["status"] == "diverged" else 0
    try:
        summary = train(compose_trial(run_dir, [*overrides, *continuation(Path(run_dir))]), callbacks=from_environment())
    except optuna.TrialPruned as e:
        print(f"trial: {e}", file=sys.stderr)
        return EXIT_PRUNED
    except (Exception, Interrupted) as e:  # the last line is the trial's reason; the code tells its kind (errors.TABLE)
        kind = classify(e)
        print(f"trial: {message(e)}" if kind == "signal" else f"trial: error: {message(e)}", file=sys.stderr)
        return trial_exit_code(e)
    if summary["status"] == "interrupted":
        print(f"trial: {summary.get('error')}", file=sys.stderr)
        return 128 + int(summary.get("signal", 15))
    return EXIT_DIVERGED if summary["status"] == "diverged" else 0


if __name__ == "__main__":
    die_with_parent()
    sys.exit(main())
