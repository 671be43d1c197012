"""The networks: the paper's initialization, frozen parts, gate modes, the bit-packed gate cache."""

import math

import pytest
import torch

from lightning_grelu.nets import GateCache, GReLUMLP, ReLUMLP
from lightning_grelu.nets.gate_cache import pack_bits, unpack_bits


def sphere(n, d, seed=0):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    return x / x.norm(dim=1, keepdim=True)


def test_init_statistics_match_the_paper():
    d_in, d_out, m, L = 300, 50, 400, 3
    net = GReLUMLP(d_in, d_out, m, L, seed=3)
    for name, w, var in [("C", net.C, 2 / d_in), ("B", net.B, 2 / d_out), ("W1", net.W[0], 2 / m),
                         ("W3", net.W[2], 2 / m), ("Psi1", net.psi[0], 2 / m)]:
        w = w.detach()
        # 1e4+ entries: the sample variance is within a few % and the mean near 0
        assert abs(w.var().item() / var - 1) < 0.05, name
        assert abs(w.mean().item()) < 4 * math.sqrt(var / w.numel()), name


def test_same_seed_gives_relu_and_grelu_identical_trainable_weights_and_independent_gates():
    relu, grelu = ReLUMLP(7, 2, 64, 3, seed=11), GReLUMLP(7, 2, 64, 3, seed=11)
    assert torch.equal(relu.C, grelu.C) and torch.equal(relu.B, grelu.B)
    for a, b, psi in zip(relu.W, grelu.W, grelu.psi):
        assert torch.equal(a, b)
        assert not torch.equal(a, psi)  # Psi is an independent draw
    other = ReLUMLP(7, 2, 64, 3, seed=12)
    assert not torch.equal(relu.W[0], other.W[0])


def test_only_hidden_layers_train_by_default_and_switch_trains_io():
    net = GReLUMLP(5, 1, 16, 2)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"W.0", "W.1"}
    assert "psi" in dict(net.named_buffers()) and "psi" not in dict(net.named_parameters())
    both = GReLUMLP(5, 1, 16, 2, train_io=True)
    assert {n for n, p in both.named_parameters() if p.requires_grad} == {"C", "W.0", "W.1", "B"}


def test_grelu_values_can_be_negative_and_first_layer_is_relu():
    net = GReLUMLP(6, 1, 128, 2, seed=1)
    x = sphere(32, 6)
    h = net.hidden(x)
    assert torch.equal(h[0], torch.relu(x @ net.C.T))
    assert (h[1] < 0).any() and (h[2] < 0).any()
    masks = net.gates(x)
    assert all(((hk != 0) <= D).all() for hk, D in zip(h[1:], masks))  # closed gate => zero value


def test_copy_gates_equal_relu_at_init_and_from_relu_equals_a_trained_relu():
    x = sphere(40, 8)
    relu = ReLUMLP(8, 3, 64, 3, seed=5)
    copy = GReLUMLP(8, 3, 64, 3, seed=5, gate_init="copy")
    assert torch.allclose(copy(x), relu(x), atol=1e-6)
    with torch.no_grad():
        for W in relu.W:
            W.add_(0.3 * torch.randn_like(W))
    frozen = GReLUMLP.from_relu(relu)
    assert torch.allclose(frozen(x), relu(x), atol=1e-6)
    assert all(torch.equal(p, w) for p, w in zip(frozen.psi, relu.W))


@pytest.mark.parametrize("m", [1, 7, 8, 13, 64])
def test_bit_packing_round_trips(m):
    mask = torch.rand(5, 3, m) > 0.5
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.shape == (5, 3, math.ceil(m / 8))
    assert torch.equal(unpack_bits(packed, m), mask)


def test_cached_gates_equal_recomputed_gates_and_outputs():
    net = GReLUMLP(10, 2, 100, 3, seed=2)
    x = sphere(50, 10)
    cache = GateCache.build(net, x, batch_size=16)  # several build batches
    assert cache.nbytes == 50 * 3 * math.ceil(100 / 8)
    idx = torch.tensor([49, 0, 17, 17, 3])
    for a, b in zip(cache.lookup(idx), net.gates(x[idx])):
        assert torch.equal(a, b)
    assert torch.equal(net(x[idx], cache.lookup(idx)), net(x[idx]))


def test_gates_do_not_depend_on_training_precision():
    net = GReLUMLP(10, 1, 64, 2, seed=4)
    x = sphere(30, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_amp = net.gates(x)
    for a, b in zip(under_amp, net.gates(x)):
        assert torch.equal(a, b)


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="width"):
        ReLUMLP(3, 1, 0, 2)
    with pytest.raises(ValueError, match="depth"):
        GReLUMLP(3, 1, 8, 0)
