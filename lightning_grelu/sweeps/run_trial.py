"""One trial in a fresh process: ``python -m lightning_grelu.sweeps.run_trial RUN_DIR OVERRIDE...``.

Composes grelu-train's config from the overrides (Hydra's compose API) and runs ``train(cfg)``;
the run record in RUN_DIR is what the sweep reads. Exit codes as grelu-train's, and 4: pruned.
"""

from __future__ import annotations

import sys

from hydra import compose, initialize_config_dir

from lightning_grelu.config_check import CONF_DIR
from lightning_grelu.errors import EXIT_CONFIG, EXIT_DIVERGED, EXIT_FAILED, ConfigError

EXIT_PRUNED = 4


def compose_trial(run_dir: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[*overrides, f"paths.run_dir={run_dir}"])


def main(argv: list[str] | None = None) -> int:
    run_dir, *overrides = argv if argv is not None else sys.argv[1:]
    import optuna

    from lightning_grelu.sweeps.pruning import from_environment
    from lightning_grelu.train import train

    try:
        summary = train(compose_trial(run_dir, overrides), callbacks=from_environment())
    except optuna.TrialPruned as e:
        print(f"trial: {e}", file=sys.stderr)
        return EXIT_PRUNED
    except ConfigError as e:
        print(f"trial: error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as e:
        print(f"trial: error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_DIVERGED if summary["status"] == "diverged" else 0


if __name__ == "__main__":
    sys.exit(main())
