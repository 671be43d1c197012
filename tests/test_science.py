"""Where the suite's math must hold through a real run: fixed gates when C and B train, float64 end
to end under 64-true, and the switch report's quantities."""

import json

import lightning as L
import pytest
import torch

from conftest import TINY, run_cli
from lightning_grelu.data.ackley import ackley_targets, sphere
from lightning_grelu.modules.grelu_to_relu import JUMP_FLOOR
from lightning_grelu.nets import GReLUMLP, ReLUMLP
from lightning_grelu.train import train


class Snapshot(L.Callback):
    """The net's state (and gates on the training inputs) at fit start and at fit end."""

    def on_train_start(self, trainer, module):
        x = trainer.datamodule.train_inputs()
        self.x, self.y = x, trainer.datamodule.split("train").y
        self.start = {k: v.detach().clone() for k, v in module.net.state_dict().items()}
        self.gates_start = module.net.gates(x) if hasattr(module.net, "gates") else None

    def on_train_end(self, trainer, module):
        self.end = {k: v.detach().clone() for k, v in module.net.state_dict().items()}
        self.gates_end = module.net.gates(self.x) if hasattr(module.net, "gates") else None


def test_grelu_gates_stay_fixed_when_c_and_b_train(cfg_for, tmp_path):
    snap = Snapshot()
    s = train(cfg_for(*TINY, "model.train_io=true", "model.lr=1e-4", "trainer.max_epochs=300", "callbacks=default",
                      "callbacks.model_checkpoint.every_n_epochs=300"), callbacks=[snap])
    assert not torch.equal(snap.start["C"], snap.end["C"])  # C did train ...
    for before, after in zip(snap.gates_start, snap.gates_end):
        assert torch.equal(before, after)  # ... and the gates did not move
    # the saved net, gates recomputed from its own state, computes the summary's train SSE
    ckpt = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=False)
    net = GReLUMLP(10, 1, 200, 2, train_io=True)
    net.load_state_dict({k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")})
    with torch.no_grad():
        sse = 0.5 * float(((net(snap.x) - snap.y).double() ** 2).sum())
    assert sse == pytest.approx(s["train/sse"], rel=1e-5)
    assert s["train/sse"] < 0.5 * s["initial/train_sse"]  # it trained


@pytest.mark.parametrize("model", ["relu", "grelu"])
def test_64_true_is_float64_end_to_end(cfg_for, model):
    """One GD step of a 64-true run equals a float64 step computed here, to 1e-12."""
    snap = Snapshot()
    lr = 3e-5
    train(cfg_for(*TINY, f"model={model}", "trainer.precision=64-true", "trainer.max_epochs=1", f"model.lr={lr}"),
          callbacks=[snap])
    assert snap.x.dtype == torch.float64 and snap.y.dtype == torch.float64
    x = sphere(10, 10, torch.Generator().manual_seed(0))  # data_seed 0, train split: float64 all the way
    y = ackley_targets(x)
    assert torch.equal(snap.x, x) and torch.equal(snap.y, y)
    net = (GReLUMLP if model == "grelu" else ReLUMLP)(10, 1, 200, 2, seed=0).double()
    loss = 0.5 * ((net(x) - y) ** 2).sum()
    grads = torch.autograd.grad(loss, list(net.W))
    for k, g in enumerate(grads):
        expected = net.W[k].detach() - lr * g
        got = snap.end[f"W.{k}"]
        assert got.dtype == torch.float64
        assert float((got - expected).norm() / expected.norm()) < 1e-12


def test_switch_report_near_zero_loss_is_relative_to_the_problem_scale(cfg_for):
    """After convergence the SSE is float noise; rel_jump must not read as a 30% jump of noise."""
    s = train(cfg_for(*TINY, "model=grelu_to_relu", "trainer.precision=64-true", "model.lr=1e-4",
                      "trainer.max_epochs=1200", "model.inner_steps=1"))
    assert s["switch/exact"] is True and s["switch/input_rank_deficit"] == 0
    assert s["switch/sse_before"] < 1e-12  # converged before the switch
    zero_sse = 0.5 * float((ackley_targets(sphere(10, 10, torch.Generator().manual_seed(0))) ** 2).sum())
    floor = JUMP_FLOOR * zero_sse
    assert s["switch/rel_jump"] == pytest.approx(abs(s["switch/sse_after"] - s["switch/sse_before"]) /
                                                 max(s["switch/sse_before"], floor))
    assert s["switch/rel_jump"] < 1e-3


@pytest.mark.slow
def test_inexact_switch_warns_once_and_is_flagged(tmp_path):
    """n = 10 > m = 8: a least-squares fit; one warning line, switch/exact false in summary.json."""
    out = run_cli(*TINY, "model=grelu_to_relu", "model.width=8", f"paths.run_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    warnings = [ln for ln in out.stderr.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "inexact" in warnings[0] and "switch/exact: false" in warnings[0]
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["switch/exact"] is False and s["switch/max_rel_pred_diff"] > s["switch/exact_rtol"]
    assert "switch/sse_before" in out.stdout and "switch/exact" in out.stdout  # printed beside rel_jump
    ok = run_cli(*TINY, "model=grelu_to_relu", f"paths.run_dir={tmp_path / 'ok'}", cwd=tmp_path)
    assert ok.returncode == 0 and "warning" not in ok.stderr
    assert json.loads((tmp_path / "ok" / "summary.json").read_text())["switch/exact"] is True
