"""train(cfg) end to end on tiny Ackley problems: run record, convergence, frozen parts, the switch,
precision, resume across the switch, W&B offline."""

import csv
import glob
import json
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from conftest import TINY
from lightning_grelu.nets import GReLUMLP, ReLUMLP
from lightning_grelu.train import train
from lightning_grelu.wandb_records import config_keys, history_keys, is_closed, records, wait_until_closed


def test_run_record(cfg_for, tmp_path):
    summary = train(cfg_for(*TINY, "data.n_val=4"))
    run = tmp_path / "run"
    assert json.loads((run / "summary.json").read_text()) == summary
    for key in ("status", "train/sse", "train/mse", "steps", "wall_time_s", "steps_to_eps", "val/sse"):
        assert key in summary, key
    assert summary["status"] == "completed" and summary["steps"] == 30
    assert summary["train/mse"] == pytest.approx(2 * summary["train/sse"] / 10)
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == list(range(30))
    assert float(rows[0]["train/sse"]) == pytest.approx(summary["initial/train_sse"])
    assert float(rows[0]["train/mse"]) == pytest.approx(2 * float(rows[0]["train/sse"]) / 10, rel=1e-5)
    assert float(rows[-1]["train/sse"]) < float(rows[0]["train/sse"])
    cfg = OmegaConf.load(run / "config.yaml")
    assert cfg.model.width == 200 and "${" not in (run / "config.yaml").read_text()  # resolved


@pytest.mark.parametrize("model", ["relu", "grelu"])
def test_theory_width_converges(cfg_for, model):
    """n=10, L=2, m = n^2 L = 200: train SSE falls below 1e-3 of its initial value."""
    s = train(cfg_for(*TINY, f"model={model}", "trainer.max_epochs=300", "eps=1e-3"))
    assert s["train/sse"] < 1e-3 * s["initial/train_sse"]
    assert s["steps_to_eps"] is not None and 0 < s["steps_to_eps"] < 300


def test_steps_to_eps_is_the_first_step_below_eps(cfg_for, tmp_path):
    s = train(cfg_for(*TINY, "trainer.max_epochs=100", "eps=1.0"))
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    # full batch: row e holds the SSE after e steps
    first = next(int(r["epoch"]) for r in rows if float(r["train/sse"]) <= 1.0)
    assert s["steps_to_eps"] == first


def test_frozen_parts_unchanged_and_gates_fixed(cfg_for, tmp_path):
    cfg = cfg_for(*TINY, "model=grelu", "callbacks=default", "callbacks.model_checkpoint.every_n_epochs=30")
    train(cfg)
    ckpt = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=False)
    state = {k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    init = GReLUMLP(10, 1, 200, 2, seed=0)
    for name in ("C", "B", "psi"):
        assert torch.equal(state[name], getattr(init, name)), name
    assert not torch.equal(state["W.0"], init.W[0])  # W did train
    # the optimizer only ever saw W_1..W_L
    groups = ckpt["optimizer_states"][0]["param_groups"]
    assert sum(len(g["params"]) for g in groups) == 2
    trained = GReLUMLP(10, 1, 200, 2, seed=0)
    trained.load_state_dict(state)
    from lightning_grelu.data import AckleyDataModule
    dm = AckleyDataModule(n=10, d=10)
    dm.setup()
    x = dm.splits["train"].x
    hamming = sum(int((a != b).sum()) for a, b in zip(init.gates(x), trained.gates(x)))
    assert hamming == 0


def test_relu_weights_are_only_w_in_optimizer(cfg_for, tmp_path):
    train(cfg_for(*TINY, "model=relu", "callbacks=default", "callbacks.model_checkpoint.every_n_epochs=30"))
    ckpt = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=False)
    init = ReLUMLP(10, 1, 200, 2, seed=0)
    assert torch.equal(ckpt["state_dict"]["net.C"], init.C) and torch.equal(ckpt["state_dict"]["net.B"], init.B)


def test_train_io_switch_trains_c_and_b(cfg_for, tmp_path):
    train(cfg_for(*TINY, "model.train_io=true", "callbacks=default", "callbacks.model_checkpoint.every_n_epochs=30"))
    ckpt = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=False)
    init = GReLUMLP(10, 1, 200, 2, seed=0)
    assert not torch.equal(ckpt["state_dict"]["net.C"], init.C)
    assert not torch.equal(ckpt["state_dict"]["net.B"], init.B)


def test_switch_is_continuous_when_n_le_m(cfg_for):
    s = train(cfg_for(*TINY, "model=grelu_to_relu", "trainer.max_epochs=40", "trainer.precision=64-true"))
    assert s["switch/epoch"] == 20  # default: half of max_epochs
    assert s["switch/exact"] is True
    assert s["switch/max_rel_pred_diff"] < 1e-6
    assert s["switch/rel_jump"] < 1e-6
    assert s["switch/rel_residual"] < 1e-8


def test_switch_fp32_and_training_goes_on_as_relu(cfg_for, tmp_path):
    s = train(cfg_for(*TINY, "model=grelu_to_relu", "trainer.max_epochs=40", "model.switch_epoch=10"))
    assert s["switch/epoch"] == 10 and s["switch/rel_jump"] < 1e-3
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    sse = [float(r["train/sse"]) for r in rows]
    assert sse[-1] < sse[10]  # still learning after the switch, as a ReLU net


def test_cached_gates_train_exactly_like_recomputed_gates(tmp_path):
    from conftest import compose_cfg
    a = train(compose_cfg(tmp_path / "a", *TINY, "model.cache_gates=true"))
    b = train(compose_cfg(tmp_path / "b", *TINY, "model.cache_gates=false"))
    assert a["train/sse"] == b["train/sse"]


def test_gates_from_a_trained_relu_run_start_where_relu_ended(tmp_path):
    from conftest import compose_cfg
    ckpt_args = ["callbacks=default", "callbacks.model_checkpoint.every_n_epochs=30"]
    relu = train(compose_cfg(tmp_path / "relu", *TINY, "model=relu", *ckpt_args))
    ckpt = tmp_path / "relu" / "checkpoints" / "last.ckpt"
    g = train(compose_cfg(tmp_path / "g", *TINY, "model=grelu", "model.gate_init=from_relu",
                          f"model.relu_checkpoint={ckpt}", "trainer.max_epochs=5"))
    # the GReLU net with the ReLU net's frozen patterns computes exactly the trained ReLU net
    assert g["initial/train_sse"] == pytest.approx(relu["train/sse"], rel=1e-5)
    assert g["train/sse"] < g["initial/train_sse"]


def test_bf16_mixed(cfg_for):
    s = train(cfg_for(*TINY, "trainer.precision=bf16-mixed"))
    assert s["status"] == "completed" and s["train/sse"] < 0.5 * s["initial/train_sse"]


@pytest.mark.slow
def test_resume_across_the_switch_equals_uninterrupted(tmp_path):
    from conftest import compose_cfg
    base = [*TINY, "model=grelu_to_relu", "trainer.max_epochs=40", "model.switch_epoch=20", "callbacks=default",
            "callbacks.model_checkpoint.every_n_epochs=5", "callbacks.model_checkpoint.save_top_k=-1"]
    full = train(compose_cfg(tmp_path / "full", *base))
    for epoch in (9, 24):  # checkpoints before and after the switch
        ckpt = tmp_path / "full" / "checkpoints" / f"epoch{epoch:04d}.ckpt"
        assert ckpt.exists()
        resumed = train(compose_cfg(tmp_path / f"resumed{epoch}", *base, f"ckpt_path={ckpt}"))
        assert resumed["steps"] == full["steps"]
        assert resumed["train/sse"] == pytest.approx(full["train/sse"], rel=1e-6)
        assert resumed["switch/epoch"] == 20


def test_wandb_offline_run_is_syncable_and_holds_metrics(cfg_for, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    train(cfg_for(*TINY, "logger=wandb"))
    runs = glob.glob(str(tmp_path / "run" / "wandb" / "offline-run-*"))
    assert len(runs) == 1
    files = glob.glob(runs[0] + "/run-*.wandb")
    keys = history_keys(files[0])
    assert {"train/sse", "train/mse"} <= keys
    assert {"model", "data", "seed"} <= config_keys(files[0])  # the resolved config, as plain data
    step_metrics = {r.metric.step_metric for r in records(files[0]) if r.WhichOneof("record_type") == "metric"}
    assert "trainer/global_step" in step_metrics  # every metric has a defined x-axis
    out = subprocess.run([sys.executable, "-m", "wandb", "sync", "--dry-run", runs[0]], capture_output=True,
                         text=True, timeout=120)
    assert "Would sync 1 run" in out.stdout + out.stderr
    # train() returned only after W&B closed the file; a file still being written (cut mid-record) reads as open
    assert is_closed(files[0])
    data = open(files[0], "rb").read()
    cut = tmp_path / "cut.wandb"
    cut.write_bytes(data[:len(data) // 2 + 3])
    assert 0 < len(records(cut)) < len(records(files[0])) and not is_closed(cut)
    assert not wait_until_closed(cut, timeout_s=0.2)
