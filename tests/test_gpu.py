"""The GPU path (marker `gpu`, `make test-gpu`): skipped with a reason where no CUDA device is visible.

Cached gates and the gate path on the device, bf16-mixed gates, the GReLU->ReLU solve on the device,
a full run record with trainer=gpu, DDP over NCCL, grelu-bench on every case, and the theory width's
peak memory against the estimate the suite prints."""

import json
import os
import subprocess

import pytest
import torch

from conftest import TINY, cli, run_cli
from lightning_grelu.nets import GateCache, GReLUMLP, grelu_to_relu

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


def sphere(n, d, seed=0, dtype=torch.float32):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return x / x.norm(dim=1, keepdim=True)


def test_cached_gates_equal_recomputed_gates_on_cuda():
    net = GReLUMLP(64, 2, 1000, 3, seed=1).to(CUDA)  # m = 1000: bit packing with a partial last byte
    x = sphere(300, 64).to(CUDA)
    cache = GateCache.build(net, x, batch_size=128)
    assert cache.packed.device.type == "cuda"
    idx = torch.randperm(300, device=CUDA)[:100]
    for a, b in zip(cache.lookup(idx), net.gates(x[idx])):
        assert torch.equal(a, b)


def test_bf16_mixed_gates_equal_float32_gates():
    net = GReLUMLP(64, 2, 512, 3, seed=2).to(CUDA)
    x = sphere(256, 64).to(CUDA)
    ref = net.gates(x)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = net.gates(x)
        loss = net(x).float().pow(2).sum()  # a bf16 step uses these gates
    loss.backward()
    assert all(torch.equal(a, b) for a, b in zip(ref, got))


def test_grelu_to_relu_on_cuda_equals_the_cpu_solve():
    net = GReLUMLP(12, 2, 96, 3, seed=3).double()
    x = sphere(40, 12, dtype=torch.float64)
    cpu, rep_cpu = grelu_to_relu(net, x)
    gpu, rep_gpu = grelu_to_relu(net.to(CUDA), x.to(CUDA))
    assert rep_cpu.exact and rep_gpu.exact
    for a, b in zip(cpu.W, gpu.W):
        assert torch.allclose(a, b.cpu(), rtol=1e-8, atol=1e-10)


def test_grelu_train_on_gpu_writes_a_complete_run_record(tmp_path):
    out = run_cli(*TINY, "trainer=gpu", "callbacks=default", f"paths.run_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["status"] == "completed" and s["memory/device"].startswith("cuda")
    for name in ("config.yaml", "metrics.csv", "checkpoints/last.ckpt"):
        assert (tmp_path / "run" / name).exists(), name


def test_ddp_over_nccl_on_one_device(tmp_path):
    out = run_cli(*TINY, "trainer=ddp", "trainer.devices=1", f"paths.run_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "completed"


@pytest.mark.parametrize("case", ["tiny", "small_fullbatch", "cifar_d6_w10k", "cifar_d6_w10k_b4096",
                                  "sgemm_d10_w4096", "theory_width"])
def test_grelu_bench_runs_every_case_on_cuda(case, tmp_path):
    out = subprocess.run([*cli("grelu-bench"), "--case", case, "--device", "cuda", "--warmup", "1", "--steps", "2", "--repeats", "2",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert list(tmp_path.glob(f"{case}_*.jsonl"))


def test_theory_width_peak_memory_is_within_10_percent_of_the_estimate(tmp_path):
    out = run_cli("experiment=ackley_theory_width", "trainer.max_epochs=2", "callbacks=none",
                  f"paths.run_dir={tmp_path / 'run'}", cwd=tmp_path, timeout=900,
                  env={"PYTORCH_CUDA_ALLOC_CONF": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "GiB" in out.stdout  # the estimate is printed before training
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["memory/peak_gib"] == pytest.approx(s["memory/estimate_gib"], rel=0.10)
