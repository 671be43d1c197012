"""Step-size policies (model.lr_policy) and the NTK behind them: the power iteration against an
explicit Gram, the ntk policy on a problem where a fixed lr diverges, the NTK probe."""

import csv

import pytest
import torch

from conftest import TINY
from lightning_grelu.callbacks.ntk_probe import predicted_steps
from lightning_grelu.modules.step_size import theorem_lr
from lightning_grelu.nets import GReLUMLP, ReLUMLP
from lightning_grelu.nets.ntk import explicit_gram, lambda_max
from lightning_grelu.train import train


def jacobian_gram(net, x):
    """J J^T from autograd's full Jacobian: the reference the operator is held against."""
    names = [k for k, p in net.named_parameters() if p.requires_grad]
    params = tuple(dict(net.named_parameters())[k].detach() for k in names)
    J = torch.autograd.functional.jacobian(
        lambda *ps: torch.func.functional_call(net, dict(zip(names, ps)), (x,)), params)
    J = torch.cat([j.reshape(x.shape[0] * net.d_out, -1) for j in J], dim=1)
    return J @ J.T


@pytest.mark.parametrize("cls,train_io", [(ReLUMLP, False), (GReLUMLP, False), (GReLUMLP, True)])
def test_power_iteration_and_operator_match_an_explicit_jacobian(cls, train_io):
    net = cls(5, 2, 16, 3, seed=1, train_io=train_io).double()
    x = torch.nn.functional.normalize(torch.randn(7, 5, generator=torch.Generator().manual_seed(0),
                                                  dtype=torch.float64), dim=1)
    H = jacobian_gram(net, x)
    assert torch.allclose(explicit_gram(net, x, batch_size=3), H, rtol=1e-10, atol=1e-10)  # batched products
    top = torch.linalg.eigvalsh(H)[-1].item()
    assert lambda_max(net, x, iters=1000, rtol=1e-12, batch_size=4) == pytest.approx(top, rel=1e-8)


def test_ntk_policy_is_stable_where_a_fixed_lr_diverges(cfg_for):
    fixed = train(cfg_for(*TINY, "model.lr=1e-2", "trainer.max_epochs=100", name="fixed"))
    assert fixed["status"] == "diverged"
    ntk = train(cfg_for(*TINY, "model.lr=1e-2", "model.lr_policy=ntk", "trainer.max_epochs=100", name="ntk"))
    assert ntk["status"] == "completed" and ntk["lr_policy"] == "ntk"
    assert ntk["lr"] == pytest.approx(1.0 / ntk["ntk/lambda_max_init"])
    assert ntk["train/sse"] < 1e-3 * ntk["initial/train_sse"]
    # the step's lambda_max is the top eigenvalue of J J^T of the initial net on the training set (autograd's
    # Jacobian here, not the operator the policy uses)
    from lightning_grelu.data.ackley import sphere

    x = sphere(10, 10, torch.Generator().manual_seed(0)).double()
    top = torch.linalg.eigvalsh(jacobian_gram(GReLUMLP(10, 1, 200, 2, seed=0).double(), x))[-1].item()
    assert ntk["ntk/lambda_max_init"] == pytest.approx(top, rel=1e-3)


def test_theorem_policy_records_theorem_1s_step(cfg_for):
    s = train(cfg_for(*TINY, "model=relu", "model.lr_policy=theorem", "model.lr_scale=2", "trainer.max_epochs=3"))
    assert s["lr"] == pytest.approx(2 * theorem_lr(10, 10, 2, 1)) == pytest.approx(2 * 10 / (10 ** 4 * 8))
    assert s["lr_policy"] == "theorem" and s["lr_scale"] == 2


def test_resume_keeps_the_chosen_lr(cfg_for, tmp_path):
    args = [*TINY, "model.lr_policy=ntk", "callbacks=default", "callbacks.model_checkpoint.every_n_epochs=5"]
    first = train(cfg_for(*args, "trainer.max_epochs=10", name="r"))
    ckpt = torch.load(tmp_path / "r/checkpoints/last.ckpt", weights_only=False)
    assert ckpt["lr_info"]["lr"] == first["lr"]
    again = train(cfg_for(*args, "trainer.max_epochs=20", "ckpt_path=last", "overwrite=true", name="r"))  # extend
    assert again["lr"] == first["lr"] and again["ntk/lambda_max_init"] == first["ntk/lambda_max_init"]


def test_predicted_steps_follow_the_linear_rate():
    # rho = 1 - 0.5 = 0.5: SSE shrinks by 4 per step, 1 -> 1e-6 takes ceil(log(1e-6) / log(0.25)) = 10 steps
    assert predicted_steps(0.5, 1.0, 1.0, 1.0, 1e-6) == 10
    assert predicted_steps(2.5, 1.0, 1.0, 1.0, 1e-6) is None  # |1 - 2.5| > 1: no convergence predicted


@pytest.mark.parametrize("relative", [False, True])
def test_ntk_probe_predicts_steps_to_the_same_target_as_steps_to_eps(cfg_for, relative):
    s = train(cfg_for(*TINY, "model.lr_policy=ntk", "trainer.max_epochs=2", "callbacks=[ntk]", "eps=1e-3",
                      f"eps_relative={str(relative).lower()}"))
    target = 1e-3 * s["initial/train_sse"] if relative else 1e-3
    want = predicted_steps(s["lr"], s["probe/ntk_lambda_min"], s["probe/ntk_lambda_max"], s["initial/train_sse"],
                           target)
    assert s["probe/ntk_predicted_steps_to_eps"] == pytest.approx(want, abs=1)


@pytest.mark.parametrize("model", ["relu", "grelu", "grelu_to_relu"])
def test_ntk_probe_records_the_spectrum_and_kernel_movement(cfg_for, tmp_path, model):
    s = train(cfg_for(*TINY, f"model={model}", "model.lr_policy=ntk", "trainer.max_epochs=20",
                      "callbacks=[ntk]", "callbacks.ntk.every_n_epochs=5", "eps=1e-2"))
    lam_max, lam_min = s["probe/ntk_lambda_max"], s["probe/ntk_lambda_min"]
    assert 0 < lam_min <= lam_max and s["probe/ntk_cond"] == pytest.approx(lam_max / lam_min, rel=1e-3)
    assert lam_max == pytest.approx(s["ntk/lambda_max_init"], rel=1e-3)  # the policy and the probe agree
    assert s["probe/ntk_movement"] >= 0 and s["probe/ntk_predicted_steps_to_eps"] > 0
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    moved = [float(r["probe/ntk_movement"]) for r in rows if r.get("probe/ntk_movement")]
    assert len(moved) == 16 and len(set(moved)) <= 4  # measured at epochs 5, 10, 15, 20 (rows carry it on)
    if model == "grelu_to_relu":  # after the switch the probe sees the ReLU net: its kernel differs
        assert moved[-1] > moved[0]


def test_ntk_policy_with_mini_batches_uses_one_batchs_gram(cfg_for):
    from lightning_grelu.data.ackley import ackley_targets, sphere  # noqa: F401

    s = train(cfg_for(*TINY, "model=relu", "model.lr_policy=ntk", "data.batch_size=4", "data.shuffle=false",
                      "trainer.max_epochs=2"))
    x = sphere(10, 10, torch.Generator().manual_seed(0)).float()
    full = lambda_max(ReLUMLP(10, 1, 200, 2, seed=0), x)
    batch = lambda_max(ReLUMLP(10, 1, 200, 2, seed=0), x[:4])
    assert s["ntk/lambda_max_init"] == pytest.approx(batch, rel=1e-3) and batch < full


def test_ntk_policy_takes_the_converted_nets_own_step_at_the_switch(cfg_for):
    s = train(cfg_for(*TINY, "model=grelu_to_relu", "model.lr_policy=ntk", "trainer.max_epochs=20"))
    assert s["lr"] == pytest.approx(1 / s["ntk/lambda_max_init"])
    assert s["lr_after_switch"] == pytest.approx(1 / s["ntk/lambda_max_switch"])
    assert s["lr_after_switch"] != s["lr"] and s["status"] == "completed"


@pytest.mark.slow
def test_ntk_step_under_ddp_equals_one_process(tmp_path):
    """Two CPU ranks (gloo) each take half the rows; the all-reduced products give the same lambda_max."""
    import json

    from conftest import run_cli

    args = [*TINY, "model.lr_policy=ntk", "trainer.max_epochs=3"]
    one = run_cli(*args, f"paths.run_dir={tmp_path / 'one'}", cwd=tmp_path)
    two = run_cli(*args, "trainer=ddp_cpu", f"paths.run_dir={tmp_path / 'two'}", cwd=tmp_path)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    s1 = json.loads((tmp_path / "one" / "summary.json").read_text())
    s2 = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert s2["ntk/lambda_max_init"] == pytest.approx(s1["ntk/lambda_max_init"], rel=1e-3)
    assert s2["lr"] == pytest.approx(s1["lr"], rel=1e-3)


def test_theorem_step_budget_sets_the_number_of_gd_steps(cfg_for):
    import math

    s = train(cfg_for(*TINY, "model.lr_policy=theorem", "step_budget=theorem", "step_budget_scale=20", "eps=1e-3",
                      "model.inner_steps=10"))
    steps = math.ceil(20 * math.log(10 ** 3 * 2 / (10 * 1e-3)))  # n = 10, L = 2, d_x = 10
    assert s["epochs"] == math.ceil(steps / 10) and s["steps"] == 10 * s["epochs"]  # 10 GD steps per epoch
