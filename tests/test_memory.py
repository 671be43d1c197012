"""Runs that cannot fit are refused before anything is built, and nets are drawn layer by layer so
that host memory peaks at one layer (the theory width: 6.4 GB layers, 52 GB for all of them)."""

import math
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_cfg, run_cli
from measure import AfterOneStep
from lightning_grelu.train import train
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


@pytest.mark.parametrize("model,args", [
    ("relu", ["model.optimizer=adam"]),
    ("grelu", ["model.momentum=0.9"]),
    ("grelu", ["model.momentum=0.9", "trainer.precision=64-true"]),
    ("grelu", ["model.train_io=true", "model.optimizer=adam", "model.cache_gates=false"]),
])
def test_estimate_counts_weights_gradients_optimizer_state_and_gates(tmp_path, model, args):
    """Each part of the estimate against the bytes torch really holds after one optimizer step of a real run on
    CPU (distinct storages of the state dict, the gradients, the optimizer's state, the gate cache, the data),
    and the activations part against what autograd saved for that step's backward (an upper bound)."""
    from lightning_grelu import memory
    from lightning_grelu.nets.spec import spec_of

    probe = AfterOneStep()
    cfg = compose_cfg(tmp_path / "run", "data.n=12", "data.d=7", "model.width=40", "model.depth=3",
                      "trainer.max_epochs=1", "callbacks=none", f"model={model}", *args)
    summary = train(cfg, callbacks=[probe])
    assert summary["status"] == "completed"
    got = probe.measured
    spec = spec_of(cfg.model, 7, 1)
    est = memory.estimate_parts(spec, 12, 7, 1, None, cfg.trainer.precision)
    assert got["weights"] == est["weights"] + est["gate_path"]  # on the host the gate path stays beside W
    assert got["gradients"] == est["gradients"]
    # Adam's step counters are one scalar per trained tensor, which the estimate leaves out
    counters = got["optimizer_tensors"] // 3 if "model.optimizer=adam" in args else 0  # exp_avg, exp_avg_sq, step
    assert 0 <= got["optimizer"] - est["optimizer"] <= 8 * counters
    assert got["gate_cache"] == est["gate_cache"]
    assert got["data"] == est["data"]
    assert 0 < got["activations"] <= est["activations"]
    assert summary["memory/estimate_gib"] * 2**30 == pytest.approx(sum(est.values()), rel=1e-9)


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
