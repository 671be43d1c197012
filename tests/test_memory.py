"""Runs that cannot fit are refused before anything is built, and nets are drawn layer by layer so
that host memory peaks at one layer (the theory width: 6.4 GB layers, 52 GB for all of them)."""

import math
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from conftest import run_cli
from lightning_grelu.memory import estimate_bytes
from lightning_grelu.nets import GReLUMLP, ReLUMLP
from lightning_grelu.nets.mlp import init_on


def drawn_all_at_once(d_in, d_out, m, L, seed):
    """The weights as the nets drew them before layer-by-layer init: one generator, all layers."""
    gen = torch.Generator().manual_seed(seed)
    C = torch.randn(m, d_in, generator=gen) * math.sqrt(2 / d_in)
    W = [torch.randn(m, m, generator=gen) * math.sqrt(2 / m) for _ in range(L)]
    B = torch.randn(d_out, m, generator=gen) * math.sqrt(2 / d_out)
    gen2 = torch.Generator().manual_seed(seed + 1_000_003)
    psi = torch.stack([torch.randn(m, m, generator=gen2) * math.sqrt(2 / m) for _ in range(L)])
    return C, W, B, psi


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_layer_by_layer_init_draws_the_same_weights(device):
    C, W, B, psi = drawn_all_at_once(7, 2, 48, 3, seed=5)
    with init_on(device):
        net = GReLUMLP(7, 2, 48, 3, seed=5)
        relu = ReLUMLP(7, 2, 48, 3, seed=5)
    assert net.W[0].device.type == device and net.psi.device.type == device and relu.C.device.type == device
    if device == "cpu":
        assert torch.equal(net.C, C) and torch.equal(net.B, B) and torch.equal(net.psi, psi)
        assert all(torch.equal(a, b) for a, b in zip(net.W, W))
        assert all(torch.equal(a, b) for a, b in zip(relu.W, W))


def test_host_memory_peaks_at_one_layer():
    """m = 6000, L = 4: 144 MB a layer, 1.15 GB for W and Psi together; built for a device (here
    `meta`), the process's peak resident memory grows by about one layer, not by all of them."""
    code = """
import resource, torch
from lightning_grelu.nets import GReLUMLP
from lightning_grelu.nets.mlp import init_on
torch.ones(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with init_on("meta"):
    GReLUMLP(16, 1, 6000, 4, seed=0)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    layer = 6000 * 6000 * 4
    assert int(out.stdout.strip().splitlines()[-1]) < 2.5 * layer  # all eight layers would be 8x


def test_estimate_counts_weights_gradients_optimizer_state_and_gates():
    cfg = OmegaConf.create({"width": 100, "depth": 2, "optimizer": "sgd", "momentum": 0.9, "train_io": False})
    got = estimate_bytes(cfg, n=10, d_in=5, d_out=1, batch=None, precision="32-true", grelu=True)
    io, hidden = 100 * 5 + 100, 2 * 100 * 100
    want = 4 * ((io + hidden) + hidden * 2)  # weights; gradients and momentum of W
    want += 4 * (hidden + 100 * 5) + 10 * 2 * math.ceil(100 / 8)  # Psi and C_0; the bit-packed gate cache
    want += 4 * (10 * 6) + 4 * 4 * 10 * 100 * 3  # data; activations
    assert got == want
    assert estimate_bytes(cfg, 10, 5, 1, None, "64-true", True) > got  # float64 doubles the numbers


@pytest.mark.parametrize("args,needle", [
    (["model.width=100000"], "GiB"),
    (["experiment=ackley_theory_width", "trainer=cpu"], "GiB"),  # 52 GB of layers: refused, not killed
    (["trainer=gpu"], "no CUDA GPU"),
    (["trainer=ddp", "trainer.devices=4"], "no CUDA GPU"),
])
def test_runs_that_cannot_run_here_are_refused_in_one_line(tmp_path, args, needle):
    if needle == "no CUDA GPU" and torch.cuda.is_available():
        pytest.skip("a GPU is visible: the preset can run")
    out = run_cli(*args, f"paths.root={tmp_path / 'runs'}", cwd=tmp_path, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert not [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]  # nothing written
