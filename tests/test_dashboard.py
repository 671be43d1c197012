"""optuna-dashboard reads a frontier study as a researcher needs: the objective by its metric name, the
frontier's parameters as Optuna parameters it can plot, and no trial shown as failed that did not fail."""

import json
import os
import subprocess
import sys
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import pytest


def api(storage_url: str, path: str) -> dict:
    """GET from optuna-dashboard's own HTTP API (its WSGI app, no server)."""
    from optuna_dashboard import wsgi

    app = wsgi(optuna.storages.RDBStorage(storage_url))
    env: dict = {}
    setup_testing_defaults(env)
    env.update(PATH_INFO=path, REQUEST_METHOD="GET")
    status = {}
    body = b"".join(app(env, lambda s, h, exc=None: status.update(code=s)))
    assert status["code"].startswith("200"), (status, body[:500])
    return json.loads(body)


@pytest.mark.slow
def test_optuna_dashboard_shows_frontier_metric_parameters_and_no_false_failures(tmp_path):
    url = f"sqlite:///{tmp_path}/f.db"
    out = subprocess.run([str(Path(sys.executable).parent / "grelu-sweep"), "sweep=ackley_frontier",
                          "sweep.frontier.cells={data.n: [8]}", "sweep.frontier.seeds=[0,1]",
                          "sweep.frontier.resolution=2", f"sweep.storage={url}", f"sweep.out_dir={tmp_path}/out"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "WANDB_MODE": "disabled"})
    assert out.returncode == 0, out.stderr
    study_id = api(url, "/api/studies")["study_summaries"][0]["study_id"]
    detail = api(url, f"/api/studies/{study_id}")
    assert detail["objective_names"] == ["train/sse"]  # not "Objective 0"
    space = {p["name"]: p["distribution"]["type"] for p in detail["union_search_space"]}
    assert space == {"data.n": "CategoricalDistribution", "model.width": "IntDistribution",
                     "seed": "IntDistribution"}
    states = [t["state"] for t in detail["trials"]]
    assert set(states) == {"Complete"}  # a width scan runs every seed at every width: nothing failed or dropped
    completed = [t for t in detail["trials"] if t["state"] == "Complete"]
    assert all({p["name"] for p in t["params"]} == set(space) for t in completed)
    assert detail["best_trials"]  # a best trial among real results
