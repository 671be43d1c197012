"""Checks a composed config before anything is built, so that a bad value fails in one line."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from lightning_grelu.errors import ConfigError

CONF_DIR = Path(__file__).parent / "conf"


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def check_group_choice(group: str, choice: str) -> None:
    options = group_options(group)
    if choice not in options:
        raise ConfigError(f"unknown {group} {choice!r}: choose one of {', '.join(options)} ({group}=NAME)")


def _int_at_least(cfg, key: str, low: int, allow_none: bool = False) -> None:
    v = cfg.get(key.split(".")[-1])
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ConfigError(f"{key} must be an integer >= {low}, got {v!r} (set {key}=<int>)")


def validate(cfg: DictConfig) -> None:
    m, d, t = cfg.model, cfg.data, cfg.trainer
    for key in ("width", "depth"):
        _int_at_least(m, f"model.{key}", 1)
    lr = m.get("lr")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
        raise ConfigError(f"model.lr must be a number > 0, got {lr!r} (e.g. model.lr=1e-3)")
    max_epochs = t.get("max_epochs")
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
        raise ConfigError(f"trainer.max_epochs must be an integer >= 1, got {max_epochs!r}")
    if "switch_epoch" in m:
        s = m.switch_epoch
        if s is not None and (isinstance(s, bool) or not isinstance(s, int) or not 1 <= s < max_epochs):
            raise ConfigError(f"model.switch_epoch must lie inside the run, 1 <= switch_epoch < trainer.max_epochs "
                              f"= {max_epochs}, got {s!r} (or null for max_epochs // 2)")
        if s is None and max_epochs < 2:
            raise ConfigError("model=grelu_to_relu needs trainer.max_epochs >= 2 so the switch falls inside the run")
    if "n" in d:
        _int_at_least(d, "data.n", 1)
    if "d" in d:
        _int_at_least(d, "data.d", 1)
    _int_at_least(d, "data.batch_size", 1, allow_none=True)
    inner = m.get("inner_steps", 1)
    if isinstance(inner, bool) or not isinstance(inner, int) or inner < 1:
        raise ConfigError(f"model.inner_steps must be an integer >= 1, got {inner!r}")
    if inner > 1 and d.get("batch_size") is not None:
        raise ConfigError(f"model.inner_steps={inner} needs full-batch data (data.batch_size=null); "
                          "with mini-batches it would repeat each batch")
    eps = cfg.get("eps")
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps < 0):
        raise ConfigError(f"eps must be a number >= 0 or null, got {eps!r}")
    seed = cfg.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"seed must be an integer or null, got {seed!r}")
