"""Computing only the open entries: the counts against a brute-force count, and the two attempts
(open-row matvecs, the gathered step) against the dense computation they replace."""

from __future__ import annotations

import copy

import pytest
import torch

from lightning_grelu.nets import GReLUMLP, ReLUMLP
from lightning_grelu.nets.open_entries import (gathered_step, grelu_open_values, open_flops, open_gates, open_matvec,
                                               relu_open_forward, transposed)


def sphere(n, d, seed=0):
    return torch.nn.functional.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def brute_force(first, patterns, grelu):
    """Count, entry by entry, the multiply-adds a layer needs for each sample."""
    out, prev = [], first
    for k, D in enumerate(patterns, start=1):
        fwd = gw = 0
        for s in range(D.shape[0]):
            for i in range(D.shape[1]):
                for j in range(prev.shape[1]):
                    needed_in = bool(prev[s, j])
                    fwd += needed_in and (bool(D[s, i]) or not grelu)
                    gw += needed_in and bool(D[s, i])
        out.append((2 * fwd, 2 * gw, 2 * gw if k > 1 else 0))
        prev = D
    return out


@pytest.mark.parametrize("grelu", [True, False])
def test_open_flops_equal_a_brute_force_count(grelu):
    gen = torch.Generator().manual_seed(0)
    first = torch.rand(5, 7, generator=gen) > 0.5
    patterns = [torch.rand(5, 6, generator=gen) > 0.4, torch.rand(5, 6, generator=gen) > 0.6]
    got = [(r["open_fwd"], r["open_grad_w"], r["open_grad_h"]) for r in open_flops(first, patterns, grelu)]
    assert got == brute_force(first, patterns, grelu)
    rows = open_flops(first, patterns, grelu)
    assert rows[0]["dense_fwd"] == 2 * 5 * 6 * 7 and rows[0]["dense_grad_h"] == 0 and rows[1]["dense_grad_h"] == 2 * 5 * 36


def test_open_row_matvecs_equal_the_dense_products():
    relu, grelu = ReLUMLP(12, 3, 80, 3, seed=1), GReLUMLP(12, 3, 80, 3, seed=1)
    x = sphere(1, 12)
    h = torch.relu(torch.randn(80, generator=torch.Generator().manual_seed(2)))
    torch.testing.assert_close(open_matvec(relu.W[0].detach().T.contiguous(), h), relu.W[0].detach() @ h)
    with torch.no_grad():
        torch.testing.assert_close(relu_open_forward(relu, transposed(relu), x[0]), relu(x)[0])
        masks = grelu.gates(x)
        torch.testing.assert_close(grelu_open_values(grelu, transposed(grelu), x[0], [m[0] for m in masks]), grelu(x)[0])
        got = open_gates(grelu.gate_C, [p.T.contiguous() for p in grelu.psi], x[0])
    assert all(torch.equal(a, b[0]) for a, b in zip(got, masks))


@pytest.mark.parametrize("batch", [1, 3])
def test_the_gathered_step_is_the_dense_step(batch):
    net = GReLUMLP(12, 2, 64, 3, seed=4)
    dense = copy.deepcopy(net)
    x, y = sphere(batch, 12), torch.randn(batch, 2, generator=torch.Generator().manual_seed(5))
    masks = net.gates(x)
    loss = gathered_step(net, x, y, masks, lr=0.1)
    pred = dense(x, masks)
    dense_loss = 0.5 * ((pred - y) ** 2).sum()
    dense_loss.backward()
    with torch.no_grad():
        for W in dense.W:
            W -= 0.1 * W.grad
    assert loss == pytest.approx(float(dense_loss), rel=1e-6)
    for a, b in zip(net.W, dense.W):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(net.W, GReLUMLP(12, 2, 64, 3, seed=4).W))  # it did move
