"""Once the gates are cached the gate path (Psi, C_0) leaves the training device: it waits on the host,
and gates, predictions, probes, the GReLU->ReLU conversion and checkpoints are what they were."""

from __future__ import annotations

import copy
import types

import lightning as L
import pytest
import torch

from conftest import TINY
from lightning_grelu import memory
from lightning_grelu.nets import GReLUMLP, grelu_to_relu
from lightning_grelu.nets import mlp
from lightning_grelu.train import train


class SeeTheModule(L.Callback):
    """At the first training batch (the cache is built by then): what the module holds, and where."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if hasattr(self, "buffers"):
            return
        net = module.net
        self.cached = module.gate_cache is not None
        self.buffers = dict(net.named_buffers())
        self.registered = [t.shape for t in [*net.parameters(), *net.buffers()]]
        self.psi_device = net.psi.device.type
        moved = copy.deepcopy(net).to("meta")  # any device move: the gate path does not come along
        self.after_move = (moved.W[0].device.type, moved.psi.device.type, moved.gate_C.device.type)
        self.psi_after_move_equal = moved.psi.device.type == "cpu" and torch.equal(moved.psi, net.psi)


def test_the_device_holds_no_gate_path_after_caching(cfg_for):
    seen = SeeTheModule()
    train(cfg_for(*TINY, "model=grelu", "trainer.max_epochs=2"), callbacks=[seen])
    assert seen.cached
    assert "psi" not in seen.buffers and "gate_C" not in seen.buffers
    assert (2, 200, 200) not in seen.registered  # no registered tensor has Psi's shape
    assert seen.psi_device == "cpu"
    assert seen.after_move == ("meta", "cpu", "cpu") and seen.psi_after_move_equal


def test_without_a_cache_the_gate_path_stays_on_the_device(cfg_for):
    seen = SeeTheModule()
    train(cfg_for(*TINY, "model=grelu", "model.cache_gates=false", "trainer.max_epochs=2"), callbacks=[seen])
    assert not seen.cached and "psi" in seen.buffers  # recomputed every batch: streaming it would cost a pass
    assert seen.after_move[1] == "meta"


def _nets(seed=0, dtype=torch.float32):
    net = GReLUMLP(12, 3, 64, 3, seed=seed).to(dtype)
    off = copy.deepcopy(net)
    off.offload_gate_path()
    return net, off


def test_offloaded_gates_predictions_probes_and_conversion_are_unchanged():
    net, off = _nets()
    x = torch.nn.functional.normalize(torch.randn(40, 12, generator=torch.Generator().manual_seed(1)), dim=1)
    assert off.gate_path_offloaded and not net.gate_path_offloaded
    assert all(torch.equal(a, b) for a, b in zip(net.gates(x), off.gates(x)))
    assert torch.equal(net(x), off(x))
    assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(net.trace(x), off.trace(x)))
    relu_a, rep_a = grelu_to_relu(net, x)
    relu_b, rep_b = grelu_to_relu(off, x)
    assert all(torch.equal(a, b) for a, b in zip(relu_a.W, relu_b.W)) and rep_a.exact == rep_b.exact
    # dtype changes of the module (64-true precision) still reach the gate path
    net64, off64 = net.double(), off.double()
    assert off64.psi.dtype == torch.float64 and off64.gate_C.dtype == torch.float64
    assert all(torch.equal(a, b) for a, b in zip(net64.gates(x.double()), off64.gates(x.double())))


def test_checkpoints_hold_the_offloaded_gate_path_and_restore_it():
    net, off = _nets()
    a, b = net.state_dict(), off.state_dict()
    assert list(a) == list(b)  # same keys, same order: old and new checkpoints load either way
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = GReLUMLP(12, 3, 64, 3, seed=7)
    off.load_state_dict(other.state_dict())
    assert off.gate_path_offloaded and torch.equal(off.psi, other.psi) and torch.equal(off.gate_C, other.gate_C)
    missing = {k: v for k, v in other.state_dict().items() if k != "psi"}
    with pytest.raises(RuntimeError, match="psi"):
        off.load_state_dict(missing)
    wrong = {**other.state_dict(), "psi": torch.zeros(2, 64, 64)}
    with pytest.raises(RuntimeError, match="size mismatch for psi"):
        off.load_state_dict(wrong)


def test_streamed_row_blocks_equal_the_whole_product(monkeypatch):
    gen = torch.Generator().manual_seed(3)
    z, A = torch.randn(9, 50, generator=gen), torch.randn(70, 50, generator=gen)
    monkeypatch.setattr(mlp, "STREAM_BYTES", 50 * 4 * 8)  # blocks of 8 rows: 9 blocks, the last one short
    got = mlp.streamed_matmul(z, A, torch.float32)
    assert got.shape == (9, 70)
    # Against the float64 product, within the textbook float32 dot-product bound K u |z| |A|^T (u = 2^-24, K = 50):
    # a block of the wrong rows, a short last block dropped or a column offset is off by O(1), far outside it. (The
    # float32 whole product is no reference: BLAS sums a 9x70 and a 9x8 product in different orders.)
    exact, bound = z.double() @ A.double().T, 50 * 2.0**-24 * (z.double().abs() @ A.double().abs().T)
    assert ((got.double() - exact).abs() <= bound).all()


def _check(cfg, device, augmented=False):
    dm = types.SimpleNamespace(split=lambda name: range(cfg.data.n), d_in=cfg.data.d, d_out=1, batch_size=None,
                               augmented=augmented)
    return memory.check_memory(cfg, dm, torch.device(device))["memory/estimate_gib"] * 2**30


def test_theory_width_grelu_fits_60_gb_by_the_estimate(cfg_for, monkeypatch):
    """m = 40,000, L = 4, n = 100: W and its gradients are 51.2 GB; Psi (25.6 GB) no longer sits beside them."""
    monkeypatch.setattr(memory, "available_bytes", lambda device: None)
    grelu, relu = cfg_for("experiment=ackley_theory_width"), cfg_for("experiment=ackley_theory_width", "model=relu")
    on_gpu = _check(grelu, "cuda")
    assert on_gpu <= 60e9
    psi = 4 * 40000 * 40000 * 4
    assert _check(relu, "cuda") < on_gpu < _check(relu, "cuda") + 0.02 * psi  # one streamed block, the bit cache
    assert _check(grelu, "cuda", augmented=True) > _check(relu, "cuda") + psi  # gates recomputed per batch
    assert _check(grelu, "cpu") > _check(relu, "cpu") + psi  # the host is the device: nothing is saved there
