"""W&B sweep specs: W&B's controller needs its server, so expand each YAML's command for sampled
parameter values exactly as `wandb agent` does (${env} ${program} ${args_no_hyphens}) and run it."""

import itertools
import json
import math
import random

import pytest
import yaml

from conftest import REPO, run_cli
from fixtures import write_sgemm

SPECS = sorted((REPO / "sweeps").glob("wandb_*.yaml"))


def sample(spec: dict, rng: random.Random) -> dict:
    """One parameter set as W&B's controller would hand it to an agent."""
    out = {}
    params = spec["parameters"]
    if spec["method"] == "grid":
        grid = {k: v.get("values", [v.get("value")]) for k, v in params.items()}
        combos = list(itertools.product(*grid.values()))
        return dict(zip(grid, rng.choice(combos)))
    for k, v in params.items():
        if "value" in v:
            out[k] = v["value"]
        elif "values" in v:
            out[k] = rng.choice(v["values"])
        elif v["distribution"] == "log_uniform_values":
            out[k] = math.exp(rng.uniform(math.log(v["min"]), math.log(v["max"])))
        elif v["distribution"] == "int_uniform":
            out[k] = rng.randint(v["min"], v["max"])
        else:
            raise AssertionError(f"unhandled distribution {v}")
    return out


def expand(spec: dict, params: dict) -> list[str]:
    """The agent's macro expansion of `command`."""
    args = [f"{k}={v}" for k, v in params.items()]
    out = []
    for token in spec["command"]:
        out += {"${env}": ["/usr/bin/env"], "${program}": [spec["program"]], "${args_no_hyphens}": args}.get(
            token, [token])
    return out


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_wandb_sweep_command_expands_and_runs(path, tmp_path):
    spec = yaml.safe_load(path.read_text())
    assert spec["program"] == "grelu-train" and "${args_no_hyphens}" in spec["command"]
    params = sample(spec, random.Random(0))
    cmd = expand(spec, params)
    assert cmd[:2] == ["/usr/bin/env", "grelu-train"] and all("=" in a and not a.startswith("-") for a in cmd[2:])
    # run it, shrunk to CPU size by overrides appended after the agent's (Hydra: last one wins)
    shrink = ["trainer=cpu", "trainer.precision=32-true", "trainer.max_epochs=2", "callbacks=none",
              f"paths.run_dir={tmp_path / 'run'}"]
    if params.get("data") == "sgemm":
        shrink += [f"data.data_dir={write_sgemm(tmp_path / 'sgemm', n=100)}", "model.width=32", "model.depth=2"]
    else:
        shrink += ["data.n=10", "data.d=10", "model.width=32"]
    out = run_cli(*cmd[2:], *shrink, cwd=tmp_path, env={"WANDB_MODE": "offline"})
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["model"] == params["model"]
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))  # one W&B run per agent call


def test_fig2a_grid_holds_the_paper_widths():
    spec = yaml.safe_load((REPO / "sweeps" / "wandb_fig2a_frontier.yaml").read_text())
    widths = spec["parameters"]["model.width"]["values"]
    n, L = 100, 4
    assert n * L in widths and n * n * L in widths
    for p in (0.5, 0.6, 0.7, 0.8, 0.9):
        assert round((n * n * L) ** p) in widths
    assert spec["parameters"]["seed"]["values"] == [0, 1, 2, 3, 4]
