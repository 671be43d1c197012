"""A width scan's description: which series, which seeds, which widths, under which protocols. The atlas,
fig2a and grelu-sweep's frontier mode each build one; the engine (:mod:`lightning_grelu.scan.engine`) runs it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lightning_grelu.scan import grid
from lightning_grelu.sweeps.spec import SweepSpec


@dataclass
class Scan:
    """A thin description: which series, which seeds, which widths, under which protocols."""

    name: str
    base: list[str]  # grelu-train overrides every trial starts from (budget, targets, lr policy, ...)
    series: list[dict]  # per series: overrides (dotted keys or groups -> value)
    seeds: list[int]
    rule: grid.Rule = field(default_factory=grid.Rule)
    budgets: list[int] = field(default_factory=list)  # the T of every protocol reported (besides the run's own)
    stop_on: list[tuple[int, float]] = field(default_factory=list)  # protocols the scan must resolve
    out_dir: str = "scan_out"
    storage: str | None = None  # None: journal file in out_dir
    max_nets: int = 64  # nets trained together at most
    device: str = "cpu"
    threads: int | None = 1  # torch threads of this worker (small nets: more workers beat more threads)
    space: list[dict] | None = None  # every series the study's trials can come from (``series`` is one part of
    # it under --part K/N); its values are the Optuna parameters' choices, which must not change between parts

    def sweep_spec(self) -> SweepSpec:
        storage = self.storage or f"journal:///{(Path(self.out_dir) / 'study.log').resolve()}"
        return SweepSpec(name=self.name, base=list(self.base), space=[], objectives=[("train/sse", "minimize")],
                         sampler="random", n_trials=1, storage=storage, out_dir=str(self.out_dir), fsync_each=False)

    def run_dir(self, params: dict) -> Path:
        """A trial's run directory, named by its parameters (known when it is enqueued)."""
        rest = "-".join(f"{k.split('.')[-1]}{v}" for k, v in params.items() if k not in ("model.width", "seed"))
        label = re.sub(r"[^A-Za-z0-9_.=+-]+", "-", rest)[:150]
        return (Path(self.out_dir) / "trials" / f"{label}_m{params['model.width']}_s{params['seed']}").resolve()


def key(params: dict) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in params.items()))
