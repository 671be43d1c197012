"""Checks a composed config before anything is built, so that a bad value fails in one line."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from lightning_grelu import config_schema  # registers the model and data schemas in Hydra's ConfigStore
from lightning_grelu.conf_path import CONF_DIR, conf_dirs
from lightning_grelu.errors import ConfigError


def run_name_tag(overrides: str) -> str:
    """``_<overrides>`` for a run directory's name (``model.lr=3e-5,model.width=200``), safe as one path
    component and short enough for any filesystem; empty when nothing was overridden."""
    tag = re.sub(r"[^A-Za-z0-9_.,=+-]+", "-", overrides)
    return f"_{tag[:120]}" if tag else ""


OmegaConf.register_new_resolver("grelu_tag", run_name_tag, replace=True)
# numbers in names: 4 significant digits (lr1.23e-05, not lr1.2296071107325715e-05)
OmegaConf.register_new_resolver("grelu_num", lambda v: f"{float(v):.3g}", replace=True)
# paths.data_dir: one root for every data set's files (absolute in the run's config.yaml)
OmegaConf.register_new_resolver("grelu_abspath", lambda p: str(Path(p).expanduser().absolute()), replace=True)

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist package


def fashion_mnist_dir(root: str) -> str:
    """``<root>/fashion_mnist`` where it exists; else Debian's copy when installed; else ``<root>/fashion_mnist``
    (whose absence the loader then reports, saying where to put the files)."""
    own = Path(root) / "fashion_mnist"
    return str(own) if own.is_dir() or not Path(DEBIAN_FASHION_MNIST).is_dir() else DEBIAN_FASHION_MNIST


OmegaConf.register_new_resolver("grelu_fashion_mnist_dir", fashion_mnist_dir, replace=True)


def group_options(group: str) -> list[str]:
    """The options of a group: the package's and those of the GRELU_CONF_PATH folders (see conf_path)."""
    return sorted({p.stem for folder in conf_dirs() for p in (folder / group).glob("*.yaml")})


def check_conf_path() -> None:
    """A GRELU_CONF_PATH folder that is missing, or whose option shadows one of the package's: one line."""
    for folder in conf_dirs()[1:]:
        if not folder.is_dir():
            raise ConfigError(f"GRELU_CONF_PATH names {folder}, which is not a directory; fix GRELU_CONF_PATH")
        for p in folder.glob("*/*.yaml"):
            if (CONF_DIR / p.parent.name / p.name).exists():
                raise ConfigError(f"{p} has the name of the package's {p.parent.name}={p.stem}, which would hide it; "
                                  "rename the file")


def check_group_choice(group: str, choice: str) -> None:
    options = group_options(group)
    if choice not in options:
        raise ConfigError(f"unknown {group} {choice!r}: choose one of {', '.join(options)} ({group}=NAME)")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# Lightning's accepted precisions (trainer.precision)
PRECISIONS = ("64", "64-true", "double", "32", "32-true", "16", "16-mixed", "16-true", "bf16", "bf16-mixed",
              "bf16-true", "transformer-engine", "transformer-engine-float16")
ACCELERATORS = ("cpu", "gpu", "cuda", "auto", "mps")

# What types cannot say: key -> (accepted?, what is accepted). The model and data keys' types are Hydra's
# (config_schema's dataclasses: Hydra refuses model.width=abc while it composes, see composition_error); these
# are their ranges and choices, and the root and trainer keys, which have no schema. A key absent from the
# config (another data set, another model) is not checked; None is accepted only where the description says so.
SCHEMA: dict[str, tuple] = {
    "model.width": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "model.depth": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "model.lr": (lambda v: _is_num(v) and v > 0, "a finite number > 0 (e.g. model.lr=1e-3)"),
    "model.momentum": (lambda v: _is_num(v) and 0 <= v < 1, "a number in [0, 1)"),
    "model.weight_decay": (lambda v: _is_num(v) and v >= 0, "a finite number >= 0"),
    "model.lr_scale": (lambda v: _is_num(v) and v > 0, "a finite number > 0"),
    "model.inner_steps": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "model.optimizer": (lambda v: v in config_schema.OPTIMIZERS, f"one of {config_schema.OPTIMIZERS}"),
    "model.lr_policy": (lambda v: v in config_schema.LR_POLICIES, f"one of {config_schema.LR_POLICIES}"),
    "model.gate_init": (lambda v: v in config_schema.GATE_INITS, f"one of {config_schema.GATE_INITS}"),
    "model.conversion_target": (lambda v: v in config_schema.CONVERSION_TARGETS,
                                f"one of {config_schema.CONVERSION_TARGETS}"),
    "model.ridge": (lambda v: _is_num(v) and v >= 0, "a finite number >= 0"),
    "model.exact_rtol": (lambda v: v is None or (_is_num(v) and v > 0), "a number > 0, or null"),
    "data.n": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "data.d": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "data.d_in": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "data.d_out": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "data.n_val": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "data.n_test": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "data.batch_size": (lambda v: v is None or (_is_int(v) and v >= 1), "an integer >= 1, or null (full batch)"),
    "data.limit_train": (lambda v: v is None or (_is_int(v) and v >= 1), "an integer >= 1, or null"),
    "data.val_size": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "trainer.max_epochs": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "trainer.precision": (lambda v: str(v) in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
    "trainer.accelerator": (lambda v: str(v) in ACCELERATORS, f"one of {', '.join(ACCELERATORS)}"),
    "trainer.devices": (lambda v: (_is_int(v) and (v >= 1 or v == -1)) or v == "auto"
                        or (isinstance(v, (list, tuple)) and v and all(_is_int(i) and i >= 0 for i in v)),
                        "an integer >= 1, -1, auto, or a list of device indices"),
    "trainer.num_nodes": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "trainer.log_every_n_steps": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "seed": (lambda v: v is None or (_is_int(v) and 0 <= v < 2**32), "an integer in [0, 2^32), or null"),
    "eps": (lambda v: v is None or (_is_num(v) and v >= 0), "a finite number >= 0, or null"),
    "eps_relative": (lambda v: isinstance(v, bool), "true or false"),
    "ntk_retries": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "targets": (lambda v: isinstance(v, (list, tuple)) and all(_is_num(t) and t > 0 for t in v),
                "a list of numbers > 0 (e.g. targets=[1e-2,1e-4])"),
    "stop_at_eps": (lambda v: isinstance(v, bool), "true or false"),
    "overwrite": (lambda v: isinstance(v, bool), "true or false"),
    "step_budget": (lambda v: v in (None, "theorem"), "null (trainer.max_epochs) or theorem"),
    "step_budget_scale": (lambda v: _is_num(v) and v > 0, "a finite number > 0"),
}


# OmegaConf's words for a value its node type refuses -> ours
_TYPE_WORDS = {"converted to Integer": "an integer", "converted to Float": "a number",
               "not a valid bool": "true or false", "converted to String": "a string"}


def composition_error(e: Exception, overrides=()) -> str:
    """One line for a config that does not compose. A value Hydra's schema refuses (``model.width=abc``) is
    told as the hand-written checks tell theirs: the key, what it must be, what it got. Keys a group's schema
    lacks, set by a config file (``data.n`` of ``experiment=ackley_small`` under ``data=fashion_mnist``), are told
    as :func:`check_constructors` tells them: every such key of that file, and the group's option."""
    from omegaconf.errors import ValidationError

    unknown = _unknown_keys(str(e), overrides)
    if unknown:
        return unknown
    cause = e if isinstance(e, ValidationError) else e.__cause__
    key = getattr(cause, "full_key", None)
    if isinstance(cause, ValidationError) and key:
        text = str(cause).splitlines()[0]
        what = SCHEMA[key][1] if key in SCHEMA else next(
            (w for t, w in _TYPE_WORDS.items() if t in text), None)
        got = re.search(r"Value '(.*?)' (of type|is not)", text)
        if what:
            return f"{key} must be {what}, got {got.group(1) if got else '?'!r} (set {key}=...)"
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()][:2]
    return ": ".join(lines).rstrip(".")


def _unknown_keys(text: str, overrides) -> str | None:
    """Hydra's "In 'experiment/X': ... Key 'k' not in 'SomeConf' ... full_key: group.k" -> the keys of group
    that file sets and the schema lacks, and the option chosen for group (the last ``group=NAME`` override)."""
    import yaml

    found = re.search(r"In '([\w/.-]+)'.*?Key '\w+' not in '(\w+)'.*?full_key: (\w+)\.", text, re.S)
    schema = getattr(config_schema, found.group(2), None) if found else None
    if schema is None:
        return None
    where, group = found.group(1), found.group(3)
    path = next((d / f"{where}.yaml" for d in conf_dirs() if (d / f"{where}.yaml").is_file()), None)
    node = (yaml.safe_load(path.read_text()) or {}).get(group) if path else None
    keys = sorted(k for k in node if k not in schema.__dataclass_fields__) if isinstance(node, dict) else []
    if not keys:
        return None
    option = next((o.split("=", 1)[1] for o in reversed(list(overrides)) if o.lstrip("+~").startswith(f"{group}=")),
                  None)
    label = f"{group}={option}" if option else f"{group} ({schema.__name__})"
    listed = " and ".join(f"{group}.{k}" for k in keys)
    verb, them = ("is not a parameter", "it") if len(keys) == 1 else ("are not parameters", "them")
    return (f"{listed} {verb} of {label} ({where.replace('/', '=', 1)} sets {them}); choose another {group} or "
            f"another {where.split('/')[0]}")


def _get(cfg, key: str):
    node = cfg
    for part in key.split("."):
        if node is None or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def check_schema(cfg: DictConfig) -> None:
    for key, (ok, accepted) in SCHEMA.items():
        v = _get(cfg, key)
        if v is _MISSING:
            continue
        if isinstance(v, (DictConfig, ListConfig)):
            v = OmegaConf.to_container(v)
        if not ok(v):
            raise ConfigError(f"{key} must be {accepted}, got {v!r} (set {key}=...)")


def validate(cfg: DictConfig) -> None:
    """Every check a composed config gets, wherever it was composed (grelu-train, sweeps, reproductions, the
    engine, grelu-eval, ``train(cfg)``); the types were Hydra's, while it composed."""
    check_conf_path()
    check_schema(cfg)
    check_callback_entries(cfg)
    m, d, t = cfg.model, cfg.data, cfg.trainer
    max_epochs = t.get("max_epochs")
    if "switch_epoch" in m:
        s = m.switch_epoch
        if s is not None and (isinstance(s, bool) or not isinstance(s, int) or not 1 <= s < max_epochs):
            raise ConfigError(f"model.switch_epoch must lie inside the run, 1 <= switch_epoch < trainer.max_epochs "
                              f"= {max_epochs}, got {s!r} (or null for max_epochs // 2)")
        if s is None and max_epochs < 2:
            raise ConfigError("model=grelu_to_relu needs trainer.max_epochs >= 2 so the switch falls inside the run")
    inner = m.get("inner_steps", 1)
    if inner > 1 and d.get("batch_size") is not None:
        raise ConfigError(f"model.inner_steps={inner} needs full-batch data (data.batch_size=null); "
                          "with mini-batches it would repeat each batch")


# -- what the constructors take (needs the classes: imported here, after the light checks above) ----------------

def _takes(target) -> tuple[set[str], set[str], bool]:
    """(names a constructor takes, those it requires, whether it takes any keyword). A class's ``**kwargs`` is
    followed up its bases' ``__init__`` (this suite passes them on to ``super().__init__``), until one takes no
    ``**kwargs``: the keys the class really accepts."""
    import inspect

    names, required = set(), set()
    for i, fn in enumerate([k.__dict__["__init__"] for k in target.__mro__ if "__init__" in k.__dict__]
                           if inspect.isclass(target) else [target]):
        if fn is object.__init__:
            return names, required, False
        params = list(inspect.signature(fn).parameters.values())[1 if inspect.isclass(target) else 0:]
        for p in params:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                names.add(p.name)
                if i == 0 and p.default is p.empty:
                    required.add(p.name)
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names, required, False
    return names, required, True


def _declared(group: str, option) -> set[str] | None:
    """The keys a group option's own yaml (and the options its defaults list names) declares, or None where that
    is not known from the files alone."""
    path = CONF_DIR / group / f"{option}.yaml"
    if not isinstance(option, str) or not path.is_file():
        return None
    node = OmegaConf.load(path)
    keys = {str(k) for k in node if k != "defaults"}
    for entry in node.get("defaults") or []:
        if not isinstance(entry, str):
            return None
        schema = re.fullmatch(r"/(schema_\w+)@_here_", entry)  # the keys of a structured config (config_schema)
        if schema and schema.group(1) in config_schema.SCHEMAS:
            keys |= {f.name for f in dataclasses.fields(config_schema.SCHEMAS[schema.group(1)])}
        elif entry != "_self_":
            more = _declared(group, entry)
            if more is None:
                return None
            keys |= more
    return keys


def check_callback_entries(cfg: DictConfig) -> None:
    """Each entry of ``callbacks`` names a class to build (``_target_``), or is null."""
    for k, node in (cfg.get("callbacks") or {}).items():
        if node is not None and (not isinstance(node, DictConfig) or "_target_" not in node):
            raise ConfigError(f"callbacks.{k} has no _target_: each entry of callbacks is a callback to build "
                              f"(callbacks.{k}._target_=<class>), or null")


def check_constructors(cfg: DictConfig, groups=("model", "data", "trainer", "callbacks"), trust_files=True) -> None:
    """Every group that is instantiated (data, model, trainer, each callback) names only keys its class takes,
    and every key it requires: a config that cannot be built (``data=fashion_mnist`` under an experiment that
    sets ``data.n``) is refused in one line naming the key, before any run, claim or write.

    With ``trust_files``, a model or data group that holds only the keys its option's yaml declares passes
    without importing its class (a sweep worker checks its trials so, without importing Lightning: seconds);
    a test checks that every option's yaml fits its class."""
    given = {"model": {"d_in", "d_out"}, "data": set(),  # what train() adds to its groups' keys
             "trainer": {"logger", "callbacks", "enable_checkpointing", "default_root_dir", "plugins"}}
    nodes = [(g, cfg.get(g), given[g]) for g in given if g in groups]
    if "callbacks" in groups:
        nodes += [(f"callbacks.{k}", v, set()) for k, v in (cfg.get("callbacks") or {}).items()]
        check_callback_entries(cfg)
    for where, node, added in nodes:
        if not isinstance(node, DictConfig) or "_target_" not in node:
            continue
        keys = {str(k) for k in node if not str(k).startswith("_") and not (k == "name" and where in given)}
        declared = _declared(where, node.get("name")) if trust_files and where in ("model", "data") else None
        if declared is not None and keys <= declared:
            continue
        _check_node(where, node, keys, added)


def _check_node(where: str, node: DictConfig, keys: set[str], added: set[str]) -> None:
    from hydra.utils import get_object

    try:
        target = get_object(node._target_)
    except Exception as e:
        raise ConfigError(f"{where}._target_ {node._target_!r} cannot be imported ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''})") from None
    names, required, open_ = _takes(target)
    label = f"{where}={node.name}" if where in ("model", "data") and node.get("name") else where
    name = getattr(target, "__name__", node._target_)
    unknown = sorted(keys - names) if not open_ else []
    if unknown:
        listed = " and ".join(f"{where}.{k}" for k in unknown)
        raise ConfigError(f"{listed} {'is not a parameter' if len(unknown) == 1 else 'are not parameters'} of "
                          f"{label} ({name} takes {', '.join(sorted(names - added))}); drop "
                          f"{' '.join(f'~{where}.{k}' for k in unknown)}, or choose another {where.split('.')[0]}")
    missing = sorted(required - keys - added)
    if missing:
        raise ConfigError(f"{label} needs {where}.{missing[0]} ({name} has no default for it); set "
                          f"+{where}.{missing[0]}=...")
