"""A sweep spec (a ``sweep_conf/sweep/*.yaml`` node), checked before any trial runs.

    name: ackley_width_lr
    base: [experiment=ackley_small]            # grelu-train overrides every trial starts from
    trial_overrides: []                        # appended to base: per-machine settings (trainer=gpu)
    space:                                     # any grelu-train key (or group) -> a distribution
      model.width: {type: int, low: 16, high: 512, log: true}
      model.lr: {type: float, low: 1.0e-6, high: 1.0e-3, log: true}
      model: {type: categorical, choices: [relu, grelu]}
    objectives: [{metric: train/sse, direction: minimize}]
    sampler: tpe | random | grid               # grid: categorical choices, or `grid: [...]` values
    n_trials: 20                               # the global cap over all workers
    storage: null                              # sqlite file in out_dir | journal:///path | postgresql://...
    db_timeout_s: 30                           # bound on connecting to / each statement of the storage
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import optuna

from lightning_grelu.errors import ConfigError

SAMPLERS = ("tpe", "random", "grid")
METRIC_PREFIXES = ("train/", "val/", "test/", "probe/", "switch/", "initial/")
METRICS = ("steps_to_eps", "epochs_to_eps", "seconds_to_eps", "steps", "wall_time_s", "width", "depth", "lr")


@dataclass
class Param:
    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list | None = None
    grid: list | None = None

    def suggest(self, trial: optuna.Trial):
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, self.choices)
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)

    def grid_values(self) -> list:
        return list(self.choices if self.type == "categorical" else (self.grid or []))


@dataclass
class SweepSpec:
    name: str
    base: list[str]
    space: list[Param]
    objectives: list[tuple[str, str]]
    sampler: str = "tpe"
    pruner: str = "none"
    n_trials: int = 10
    storage: str | None = None
    out_dir: str = "sweeps_out"
    seed: int = 0
    trial_timeout_s: float | None = None
    db_timeout_s: float = 30.0
    extra: dict = field(default_factory=dict)
    fsync_each: bool = True  # journal storages: fsync every operation (a width scan syncs once per batch)

    @property
    def directions(self) -> list[str]:
        return [d for _, d in self.objectives]

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(Path(self.out_dir) / 'study.db').resolve()}"

    def sample_overrides(self) -> list[str]:
        """One point of the space (each parameter at its low end / first choice, frontier cells at their first
        value and the lowest width): what a trial's config is checked at before any trial runs."""
        sample = [f"{p.name}={(p.choices or p.grid or [p.low])[0] if p.type != 'int' else int(p.low)}"
                  for p in self.space]
        if self.extra.get("frontier"):
            f = parse_frontier(self.extra["frontier"])
            sample += [f"{k}={v[0]}" for k, v in f.cells.items()] + [f"model.width={f.low}"]
        return sample

    def samples(self) -> list[list[str]]:
        """:meth:`sample_overrides`, and that point with each other choice of each categorical parameter or frontier
        cell (a group choice such as ``model: [relu, grelu]`` changes which keys a trial's config holds), one at a
        time."""
        first = self.sample_overrides()
        others = [(p.name, (p.choices or [])[1:]) for p in self.space if p.type == "categorical"]
        if self.extra.get("frontier"):  # a frontier's cells (e.g. model: [relu, grelu]) likewise
            others += [(k, list(v)[1:]) for k, v in parse_frontier(self.extra["frontier"]).cells.items()]
        out = [first]
        for name, values in others:
            for value in values:
                out.append([o for o in first if not o.startswith(f"{name}=")] + [f"{name}={value}"])
        return out


def _param(name: str, node: dict) -> Param:
    kind = node.get("type")
    if kind not in ("int", "float", "categorical"):
        raise ConfigError(f"sweep.space.{name}: type must be int, float or categorical, got {kind!r}")
    if kind == "categorical":
        choices = list(node.get("choices") or [])
        if not choices:
            raise ConfigError(f"sweep.space.{name}: empty choices")
        return Param(name, kind, choices=choices)
    low, high = node.get("low"), node.get("high")
    if low is None or high is None or not float(low) <= float(high):
        raise ConfigError(f"sweep.space.{name}: empty range low={low!r} high={high!r} (need low <= high)")
    if node.get("log") and float(low) <= 0:
        raise ConfigError(f"sweep.space.{name}: a log range needs low > 0, got {low!r}")
    return Param(name, kind, float(low), float(high), bool(node.get("log", False)), grid=node.get("grid"))


def _positive(v, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < float("inf"):
        raise ConfigError(f"{key} must be a number of seconds > 0, got {v!r}")
    return float(v)


def _shape(node: dict) -> None:
    """The spec's structure, before its values: a string where a mapping belongs is one line, not a traceback."""
    for key, kind, example in (("space", dict, "{model.lr: {type: float, low: 1e-6, high: 1e-3, log: true}}"),
                               ("base", list, "[experiment=ackley_small]"), ("trial_overrides", list, "[trainer=gpu]"),
                               ("objectives", list, "[{metric: train/sse, direction: minimize}]"),
                               ("frontier", dict, "{cells: {...}, width: {low: 4, high: 512}}")):
        v = node.get(key)
        if v is not None and not isinstance(v, kind):
            raise ConfigError(f"sweep.{key} must be a {'mapping' if kind is dict else 'list'}, got {v!r} "
                              f"(e.g. sweep.{key}={example})")
    for k, v in (node.get("space") or {}).items():
        if not isinstance(v, dict):
            raise ConfigError(f"sweep.space.{k} must be a mapping, got {v!r} (e.g. {{type: int, low: 16, high: 256}})")
    for o in node.get("objectives") or []:
        if not isinstance(o, dict):
            raise ConfigError(f"sweep.objectives: each must be a mapping, got {o!r} "
                              "(e.g. {metric: train/sse, direction: minimize})")


def parse(node: dict) -> SweepSpec:
    _shape(node)
    space = [_param(k, v or {}) for k, v in (node.get("space") or {}).items()]
    if not space and not node.get("frontier"):
        raise ConfigError("sweep.space is empty: give at least one parameter")
    objectives = []
    for o in node.get("objectives") or []:
        metric, direction = o.get("metric"), o.get("direction", "minimize")
        if direction not in ("minimize", "maximize"):
            raise ConfigError(f"sweep.objectives: direction must be minimize or maximize, got {direction!r}")
        if not (metric in METRICS or str(metric).startswith(METRIC_PREFIXES)):
            raise ConfigError(f"sweep.objectives: {metric!r} is not a metric a run produces "
                              f"(summary keys: {', '.join(METRICS)}, or train/*, val/*, test/*, probe/*, switch/*)")
        objectives.append((metric, direction))
    if not objectives:
        raise ConfigError("sweep.objectives is empty: e.g. [{metric: train/sse, direction: minimize}]")
    sampler, pruner = node.get("sampler", "tpe"), node.get("pruner", "none")
    if sampler not in SAMPLERS:
        raise ConfigError(f"sweep.sampler must be one of {SAMPLERS}, got {sampler!r}")
    if pruner not in ("none", "median"):
        raise ConfigError(f"sweep.pruner must be none or median, got {pruner!r}")
    if pruner != "none" and len(objectives) > 1:
        raise ConfigError("sweep.pruner works with one objective only (Optuna cannot prune multi-objective studies)")
    n = node.get("n_trials")
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"sweep.n_trials must be an integer >= 1, got {n!r}")
    if node.get("storage") is not None:
        from lightning_grelu.sweeps.storage import check_url

        check_url(node["storage"])
    spec = SweepSpec(name=str(node.get("name")), base=[*(node.get("base") or []), *(node.get("trial_overrides") or [])],
                     space=space,
                     objectives=objectives, sampler=sampler, pruner=pruner, n_trials=n,
                     storage=node.get("storage"), out_dir=str(node.get("out_dir") or f"sweeps_out/{node.get('name')}"),
                     seed=int(node.get("seed", 0)), trial_timeout_s=node.get("trial_timeout_s"),
                     db_timeout_s=_positive(node.get("db_timeout_s", 30.0), "sweep.db_timeout_s"))
    spec.extra = {"frontier": node.get("frontier")} if node.get("frontier") else {}
    if sampler == "grid":
        missing = [p.name for p in space if not p.grid_values()]
        if missing:
            raise ConfigError(f"sweep.sampler=grid needs values for {', '.join(missing)} (categorical choices, "
                              "or `grid: [...]`)")
    return spec


@dataclass
class FrontierSpec:
    cells: dict[str, list]
    low: int
    high: int
    seeds: list[int]
    resolution: float = 1.5


def parse_frontier(node: dict) -> FrontierSpec:
    cells = dict(node.get("cells") or {})
    width = node.get("width") or {}
    low, high = int(width.get("low", 1)), int(width.get("high", 0))
    if not 1 <= low < high:
        raise ConfigError(f"sweep.frontier.width: need 1 <= low < high, got low={low} high={high}")
    seeds = list(node.get("seeds") or [0])
    resolution = float(node.get("resolution", 1.5))
    if resolution <= 1:
        raise ConfigError(f"sweep.frontier.resolution must be > 1, got {resolution}")
    return FrontierSpec(cells, low, high, seeds, resolution)
