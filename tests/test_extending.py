"""A net variant and a data set added from test files alone (tests/toy/: a module on PYTHONPATH, two options in a
folder GRELU_CONF_PATH names), touching no package file: trained by grelu-train in a real subprocess, seen by every
composition and group check, and measured by the memory estimate and the throughput probe through what the net
says about itself (its describe), checked against what torch really holds and counts."""

from __future__ import annotations

import json
import os
from dataclasses import replace
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, cli, compose_cfg
from measure import AfterOneStep, StepFlops

TOY = REPO / "tests" / "toy"
ENV = {"GRELU_CONF_PATH": str(TOY / "conf"), "PYTHONPATH": os.pathsep.join([str(TOY), os.environ.get("PYTHONPATH", "")])}
ARGS = ["model=toy_residual", "data=toy_blobs", "callbacks=[probes]"]


@pytest.fixture
def toy(monkeypatch):
    """This process sees the toy as the subprocesses do: the options through GRELU_CONF_PATH, the module on
    sys.path."""
    monkeypatch.setenv("GRELU_CONF_PATH", ENV["GRELU_CONF_PATH"])
    monkeypatch.syspath_prepend(str(TOY))
    import toy_grelu

    return toy_grelu


def test_the_toy_lives_outside_the_package():
    from lightning_grelu.config_check import CONF_DIR

    package = Path(CONF_DIR).parent
    assert not list(package.rglob("*toy*")), "the toy must need no package file"
    assert all(package not in p.parents for p in TOY.rglob("*"))


@pytest.mark.slow
def test_grelu_train_trains_a_net_and_a_data_set_from_outside_the_package(tmp_path, toy):
    from lightning_grelu import memory

    run_dir = tmp_path / "run"
    out = subprocess.run([*cli("grelu-train"), *ARGS, "trainer.max_epochs=15", f"paths.run_dir={run_dir}"],
                         cwd=tmp_path, env={**os.environ, "WANDB_MODE": "offline", **ENV}, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["status"] == "completed" and s["model"] == "toy_residual" and s["data"] == "toy_blobs"
    assert s["train/sse"] < 0.2 * s["initial/train_sse"] and s["train/acc"] > 0.5  # it learns the blobs
    assert s["lr_policy"] == "ntk" and s["ntk/lambda_max_init"] > 0  # the NTK operator ran on the residual net
    spec = toy.ToyResidualNet.describe(6, 3, 32, 2)
    assert {k: v for k, v in s.items() if k.startswith("net/")} == spec.record()
    want = memory.estimate_bytes(spec, 48, 6, 3, None, "32-true", gate_path_on_device=True)
    assert s["memory/estimate_gib"] * 2**30 == pytest.approx(want, rel=1e-9)
    assert s["probe/model_tflops"] == pytest.approx(s["probe/samples_per_s"] * spec.flops_per_sample / 1e12,
                                                    rel=1e-4)


def test_the_toy_nets_estimate_and_flops_match_what_torch_holds_and_counts(tmp_path, toy):
    """The toy's own describe, asked by the suite, against torch: the numbers one real step holds and computes."""
    from lightning_grelu import memory
    from lightning_grelu.nets.spec import spec_of

    held, counted = AfterOneStep(), StepFlops()
    cfg = compose_cfg(tmp_path / "run", *ARGS, "callbacks=[probes,ntk]", "trainer.max_epochs=2", "model.momentum=0.9",
                      "model.lr_policy=fixed", "model.lr=1e-4")
    from lightning_grelu.train import train

    s = train(cfg, callbacks=[held, counted])
    assert s["status"] == "completed" and s["probe/ntk_lambda_max"] > 0 and s["probe/ntk_explicit"] == 1  # NTK probe
    spec = spec_of(cfg.model, 6, 3)
    assert spec == replace(toy.ToyResidualNet.describe(6, 3, 32, 2), optimizer_states=1)  # asked of the toy's class
    est = memory.estimate_parts(spec, 48, 6, 3, None, "32-true")
    got = held.measured
    assert got["weights"] == est["weights"] + est["gate_path"] and got["gradients"] == est["gradients"]
    assert got["optimizer"] == est["optimizer"] and got["gate_cache"] == est["gate_cache"] > 0
    assert 0 < got["activations"] <= est["activations"]
    assert counted.counted == spec.flops_per_sample * counted.batch


def test_every_composition_and_group_check_sees_the_toy_options(toy, tmp_path, monkeypatch):
    """grelu-train's group check, the sweep/reproduction/engine composition (compose_trial), and the scan engine
    asking the net whether the batched MLP engine can run it."""
    from lightning_grelu.config_check import check_group_choice, group_options, validate
    from lightning_grelu.errors import ConfigError
    from lightning_grelu.scan.runner import batchable
    from lightning_grelu.sweeps.run_trial import compose_trial

    assert "toy_residual" in group_options("model") and "toy_blobs" in group_options("data")
    check_group_choice("model", "toy_residual")
    cfg = compose_trial(str(tmp_path / "t"), ["model=toy_residual", "data=toy_blobs", "data.batch_size=8"])
    assert cfg.model._target_ == "toy_grelu.ToyResidualModule" and cfg.data.batch_size == 8
    assert cfg.model.lr == 3.0e-6 and cfg.data.shuffle is True  # the shared keys come from the schema
    plain = compose_trial(str(tmp_path / "t"), ["model=toy_residual", "data=toy_blobs", "callbacks=none"])
    assert batchable(plain) == "model=toy_residual"  # not the paper's MLP: left to grelu-train
    with pytest.raises(Exception, match="data.d_in=abc"):  # the schema's types hold for the toy's keys
        compose_trial(str(tmp_path / "t"), ["model=toy_residual", "data=toy_blobs", "data.d_in=abc"])
    monkeypatch.setenv("GRELU_CONF_PATH", str(tmp_path / "nowhere"))  # every path validates: sweeps, reproductions
    with pytest.raises(ConfigError, match="GRELU_CONF_PATH names .*nowhere, which is not a directory"):
        validate(plain)
    monkeypatch.delenv("GRELU_CONF_PATH")
    with pytest.raises(ConfigError, match="unknown model 'toy_residual'"):
        check_group_choice("model", "toy_residual")


def test_help_and_refusals_see_the_conf_path(tmp_path):
    env = {**os.environ, **ENV}
    for command in ("grelu-train", "grelu-eval"):
        help_text = subprocess.run([*cli(command), "--help"], env=env, capture_output=True, text=True, timeout=300)
        assert "toy_residual" in help_text.stdout and "toy_blobs" in help_text.stdout, command
    bad = subprocess.run([*cli("grelu-train"), "model=toy_residual", "data=toy_blobs", "data.n=abc"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "grelu-train: error: data.n must be an integer >= 1, got 'abc' (set data.n=...)"), bad.stderr
    missing = subprocess.run([*cli("grelu-train"), "model=relu"], cwd=tmp_path, capture_output=True, text=True,
                             env={**env, "GRELU_CONF_PATH": str(tmp_path / "nowhere")}, timeout=300)
    assert missing.returncode == 2 and "GRELU_CONF_PATH names" in missing.stderr and not list(tmp_path.iterdir())
    shadow = tmp_path / "shadow"
    (shadow / "model").mkdir(parents=True)
    (shadow / "model" / "relu.yaml").write_text("_target_: toy_grelu.ToyResidualModule\nname: relu\n")
    hidden = subprocess.run([*cli("grelu-train"), "model=relu"], cwd=shadow, capture_output=True, text=True,
                            env={**env, "GRELU_CONF_PATH": str(shadow)}, timeout=300)
    assert hidden.returncode == 2 and "would hide it" in hidden.stderr and len(hidden.stderr.splitlines()) == 1
    assert sorted(p.name for p in shadow.rglob("*")) == ["model", "relu.yaml"]  # nothing written


def test_plots_colour_a_run_by_what_its_net_says_and_old_records_by_name():
    from lightning_grelu.reproduce.common import BLUE, RED, color
    from lightning_grelu.results.records import Run

    assert color(Run("a", {"model": "toy_residual", "net/gated": True})) == BLUE
    assert color(Run("b", {"model": "grelu_like", "net/gated": False})) == RED
    assert color(Run("c", {"model": "grelu_to_relu"})) == BLUE  # written before net/*: the name says
    assert color(Run("d", {"model": "relu"})) == RED
