"""The low-rank gate path (section 4.4) and Remark 4 (a ReLU net as a GReLU with Psi' = W), each checked
against an independent computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_grelu.nets import GReLUMLP, ReLUMLP
from lightning_grelu.nets.lowrank import METHODS, default_rank, factorize, low_rank, relative_error


def sphere(n, d, seed=0):
    return torch.nn.functional.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


@pytest.mark.parametrize("method", METHODS)
def test_rank_m_reproduces_the_full_grelu_exactly(method):
    net = GReLUMLP(10, 3, 48, 3, seed=2)
    x = sphere(60, 10)
    lr = low_rank(net, r=48, method=method)
    assert lr.rank == [48, 48, 48]
    assert all(torch.equal(a, b) for a, b in zip(lr.gates(x), net.gates(x)))
    assert torch.equal(lr(x), net(x))


def test_svd_is_exact_where_psi_has_rank_r():
    """Psi_k = A_k B_k of rank 6: the rank-6 SVD path gives the same gates and predictions (float64)."""
    net = GReLUMLP(10, 2, 64, 2, seed=1).double()
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for psi in net.psi:
            psi.copy_(torch.randn(64, 6, generator=gen, dtype=torch.float64)
                      @ torch.randn(6, 64, generator=gen, dtype=torch.float64) / 8)
    x = sphere(80, 10).double()
    lr = low_rank(net, r=6, method="svd")
    assert lr.rank == [6, 6]
    assert all(torch.equal(a, b) for a, b in zip(lr.gates(x), net.gates(x)))
    torch.testing.assert_close(lr(x), net(x), rtol=1e-10, atol=1e-12)
    assert relative_error(net.psi[0], lr.U[0], lr.V[0]) < 1e-12


def test_nma_split_splits_a_signed_psi_into_non_negative_parts():
    """Psi = u1 v1' - u2 v2' with non-negative u, v and disjoint row supports: P+ and P- are rank 1 each,
    so the split NMF of rank 2 recovers Psi, with factors of the signs the split promises."""
    gen = torch.Generator().manual_seed(0)
    u1, u2 = torch.rand(40, 1, generator=gen), torch.rand(40, 1, generator=gen)
    u1[20:], u2[:20] = 0, 0
    v1, v2 = torch.rand(1, 40, generator=gen), torch.rand(1, 40, generator=gen)
    psi = (u1 @ v1 - u2 @ v2).double()
    U, V = factorize(psi, 2, "nma_split")
    assert U.shape == (40, 2) and V.shape == (2, 40)
    assert (V >= 0).all() and (U[:, 0] >= 0).all() and (U[:, 1] <= 0).all()
    assert relative_error(psi, U, V) < 1e-3


def test_nma_shift_adds_the_shift_back_as_one_rank():
    gen = torch.Generator().manual_seed(1)
    u, v = torch.rand(30, 1, generator=gen).double(), torch.rand(1, 30, generator=gen).double()
    u[3] = 0  # so that min(u v') = 0 and the shift s is exactly 0.7
    psi = u @ v - 0.7
    U, V = factorize(psi, 2, "nma_shift")
    assert torch.allclose(U[:, -1], torch.full((30,), -0.7, dtype=torch.float64)) and torch.equal(V[-1], torch.ones(30, dtype=torch.float64))
    assert relative_error(psi, U, V) < 1e-3


@pytest.mark.parametrize("method", METHODS)
def test_the_error_falls_with_the_rank_and_svd_is_the_floor(method):
    psi = GReLUMLP(4, 1, 64, 1, seed=0).psi[0]
    errs = [relative_error(psi, *factorize(psi, r, method)) for r in (4, 16, 32)]
    svd = [relative_error(psi, *factorize(psi, r, "svd")) for r in (4, 16, 32)]
    assert errs[0] > errs[1] > errs[2]
    assert all(e >= s - 1e-9 for e, s in zip(errs, svd))  # Eckart-Young: nothing of rank r does better


def test_bad_rank_and_method_are_refused():
    psi = torch.randn(8, 8)
    with pytest.raises(ValueError, match="rank r"):
        factorize(psi, 0)
    with pytest.raises(ValueError, match="method"):
        factorize(psi, 2, "pca")
    assert default_rank(1024) == 16 and default_rank(40000) == 100


def relu_patterns_float64(relu: ReLUMLP, x: torch.Tensor) -> list[np.ndarray]:
    """A ReLU net's activation patterns, by hand in numpy."""
    h = np.maximum(x.double().numpy() @ relu.C.detach().double().numpy().T, 0)
    out = []
    for W in relu.W:
        pre = h @ W.detach().double().numpy().T
        out.append(pre > 0)
        h = np.maximum(pre, 0)
    return out


def test_remark_4_a_relu_net_as_a_grelu_with_psi_w_has_its_activation_patterns():
    relu = ReLUMLP(8, 3, 64, 3, seed=5).double()
    with torch.no_grad():  # a "trained" net: W moved away from its initialization
        for W in relu.W:
            W.add_(0.3 * torch.randn_like(W))
    x = sphere(50, 8).double()
    grelu = GReLUMLP.from_relu(relu)
    for gate, pattern in zip(grelu.gates(x), relu_patterns_float64(relu, x)):
        assert np.array_equal(gate.numpy(), pattern)
    torch.testing.assert_close(grelu(x), relu(x), rtol=1e-12, atol=1e-12)
    full_rank = low_rank(grelu, r=64, method="nma_shift")  # and its low-rank path at r = m is the ReLU net again
    torch.testing.assert_close(full_rank(x), relu(x), rtol=1e-12, atol=1e-12)
