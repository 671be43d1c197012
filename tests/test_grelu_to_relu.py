"""Theorem 2: the GReLU -> ReLU solver."""

import pytest
import torch

from lightning_grelu.nets import GReLUMLP, ReLUMLP, grelu_to_relu
from lightning_grelu.nets.grelu_to_relu import positive_null_vector


def trained_grelu(d_in, d_out, m, L, seed=0):
    net = GReLUMLP(d_in, d_out, m, L, seed=seed).double()
    with torch.no_grad():  # move away from init, as training would
        for W in net.W:
            W.add_(0.2 * torch.randn_like(W) / W.shape[0] ** 0.5)
    return net


def inputs(n, d, seed=1):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("n,m,L,d_y", [(20, 64, 1, 1), (30, 96, 3, 1), (40, 128, 4, 3), (48, 64, 2, 10)])
def test_exact_when_n_le_m(n, m, L, d_y):
    grelu = trained_grelu(12, d_y, m, L)
    x = inputs(n, 12)
    relu, report = grelu_to_relu(grelu, x, batch_size=16)
    assert type(relu) is ReLUMLP  # the baseline's own class: training just goes on
    assert torch.equal(relu.C, grelu.C) and torch.equal(relu.B, grelu.B)
    f_g, f_r = grelu(x), relu(x)
    rel = (f_r - f_g).norm(dim=1).max() / f_g.norm(dim=1).pow(2).mean().sqrt()
    assert rel < 1e-6
    assert report.exact and report.max_rel_pred_diff < 1e-6
    assert max(report.rel_residual) < 1e-8
    # intermediate layers: the ReLU pre-activations are the GReLU hidden values (the paper's eq. 48)
    a = torch.relu(x @ relu.C.T)
    for k, h in enumerate(grelu.hidden(x)[1:L], start=0):
        p = a @ relu.W[k].T
        assert torch.allclose(p, h, atol=1e-9)
        a = torch.relu(p)


def test_residual_report_when_n_gt_m():
    grelu = trained_grelu(12, 2, 32, 3)
    x = inputs(300, 12)
    relu, report = grelu_to_relu(grelu, x, ridge=1e-8, batch_size=64)
    assert not report.exact and report.n == 300
    assert len(report.rel_residual) == 3 and len(report.gate_agreement) == 3
    assert all(0 < r < 1 for r in report.rel_residual)  # a real fit, not exact
    assert all(0 < a <= 1 for a in report.gate_agreement)
    assert report.max_rel_pred_diff > 1e-6
    # the least-squares fit beats doing nothing: predictions are closer than zero is
    assert (relu(x) - grelu(x)).norm() < grelu(x).norm()


def test_normal_equations_equal_the_one_batch_solution():
    grelu = trained_grelu(6, 1, 16, 2)
    x = inputs(100, 6)
    r1, _ = grelu_to_relu(grelu, x, batch_size=7)
    r2, _ = grelu_to_relu(grelu, x, batch_size=1000)
    for a, b in zip(r1.W, r2.W):
        assert torch.allclose(a, b, atol=1e-8)


def test_positive_null_vector():
    B = torch.randn(3, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = positive_null_vector(B)
    assert (v > 0).all() and (B @ v).abs().max() < 1e-9
    with pytest.raises(ValueError, match="positive null vector"):
        positive_null_vector(torch.ones(1, 5, dtype=torch.float64))
