"""grelu-train -m (a Hydra multirun): every job runs whatever the others did, each is recorded, the exit
code is the first failing job's, and the task returns the objective a Hydra sweeper plugin needs."""

import json
import math

import pytest
from omegaconf import open_dict
from conftest import TINY, run_cli


@pytest.mark.slow
def test_a_diverged_or_refused_job_does_not_stop_the_multirun(tmp_path):
    out = run_cli("-m", *TINY, "model.lr=-1,10.0,3e-5", f"paths.root={tmp_path / 'runs'}", cwd=tmp_path)
    assert out.returncode == 2, out.stderr  # the first job that did not complete was refused
    runs = {p.name.split("_")[0]: p for p in (tmp_path / "runs" / "multirun").glob("*/*/*_grelu_s0*")}
    # job 0: lr=-1 (refused, nothing written), 1: lr=10 (diverges), 2: lr=3e-5 (completes)
    assert "0" not in runs or not (runs["0"] / "summary.json").exists()
    assert json.loads((runs["1"] / "summary.json").read_text())["status"] == "diverged"
    assert json.loads((runs["2"] / "summary.json").read_text())["status"] == "completed"
    assert "multirun of 3 jobs: 1 refused (parameters or machine), 1 diverged, 1 completed" in out.stderr


@pytest.mark.slow
def test_a_completed_multirun_exits_0(tmp_path):
    out = run_cli("-m", *TINY, "seed=0,1", f"paths.root={tmp_path / 'runs'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "multirun of 2 jobs: 2 completed" in out.stdout


@pytest.mark.parametrize("metric", ["train/sse", "steps"])
def test_the_task_returns_the_optimized_metric(tmp_path, metric):
    from hydra.core.hydra_config import HydraConfig
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from lightning_grelu.cli import train as cli
    from lightning_grelu.config_check import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*TINY, f"paths.run_dir={tmp_path / 'run'}", f"optimized_metric={metric}"],
                      return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    value = cli._hydra_main.__wrapped__(cfg)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert isinstance(value, float) and not math.isnan(value) and value == pytest.approx(summary[metric])
