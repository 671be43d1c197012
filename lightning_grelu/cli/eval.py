"""``grelu-eval``: score a checkpoint on data splits and write the numbers a run's summary has.

    grelu-eval ckpt_path=runs/default/RUN/checkpoints/last.ckpt               # its run's own data
    grelu-eval ckpt_path=.../last.ckpt data.data_seed=7 splits=[train]          # fresh samples, same problem
    grelu-eval ckpt_path=.../last.ckpt data=fashion_mnist splits=[test]         # other data of its shape

Writes ``<run_dir>/eval/<ckpt>[-<overrides>].json`` (or ``out=...``); a result there is never overwritten
unless ``overwrite=true``. Exit codes (lightning_grelu/errors.py: TABLE): 0 done, 1 crashed, 2 bad
arguments or checkpoint, or a machine that cannot run it (missing data files, no GPU).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from lightning_grelu.config_check import CONF_DIR
from lightning_grelu.errors import ConfigError, fail


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def _hydra_main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from lightning_grelu.evaluate import eval_config, evaluate

    overrides = list(HydraConfig.get().overrides.task)
    try:
        record, out = evaluate(eval_config(cfg, overrides), overrides)
    except Exception as e:  # one line, the kind's exit code (errors.TABLE)
        fail("grelu-eval", e)
    keys = [k for k in record if "/" in k or k.startswith("n_")]
    width = max(len(k) for k in keys)
    for k in keys:
        v = record[k]
        print(f"  {k:<{width}}  {v:.6g}" if isinstance(v, float) else f"  {k:<{width}}  {v}")
    print(out)
    return next((v for k, v in record.items() if k.endswith("/sse")), None)  # the objective, for Hydra sweepers


def main() -> None:
    if not any(a.startswith("ckpt_path=") for a in sys.argv[1:]) and not any(a.startswith("-") for a in sys.argv[1:]):
        fail("grelu-eval", ConfigError("ckpt_path is missing: grelu-eval ckpt_path=RUN_DIR/checkpoints/last.ckpt "
                                       "(then any overrides)"))
    _hydra_main()


if __name__ == "__main__":
    main()
