"""Before anything is built: will this run fit? An estimate of the training device's memory from the
net's own description (:class:`~lightning_grelu.nets.spec.NetSpec`, asked from the class ``model._target_``
names) and the data's sizes, the memory that device has, and the check between them.

Counted (bytes of the weights' dtype: 8 under 64-true, else 4; bf16-mixed keeps float32 weights): the net's
parameters and buffers; a frozen gate path where it stays on the device (training on the host, augmented
data or ``model.cache_gates=false``; otherwise it waits on the host once the gates are cached, and the
device holds one streamed block of it at a time); gradients and optimizer state (momentum: one copy, Adam:
two) of what trains; the bit-packed gate cache; the training data; and the activations of one batch (the
spec's estimate per sample). With the data on the host (CPU training) the sum is host memory.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lightning_grelu.errors import ConfigError, MachineError
from lightning_grelu.nets.mlp import STREAM_BYTES
from lightning_grelu.nets.spec import NetSpec, spec_of

HEADROOM = 0.95  # refuse above 95% of what the device has: allocators and the framework need the rest


def training_device(trainer_cfg) -> torch.device:
    accel = str(trainer_cfg.get("accelerator", "cpu"))
    if accel in ("gpu", "cuda") or (accel == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def check_devices(trainer_cfg) -> torch.device:
    """A GPU preset on a machine without one, or more devices than it has: one line, before any work."""
    device = training_device(trainer_cfg)
    if device.type == "cuda":
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        want = trainer_cfg.get("devices", 1)
        want = have if want in (-1, "auto") else (len(want) if isinstance(want, (list, tuple)) else int(want))
        if have == 0:
            raise MachineError("trainer.accelerator=gpu but no CUDA GPU is visible here; use trainer=cpu (or "
                              "trainer=ddp_cpu for the DDP path on CPU)")
        if want > have:
            raise MachineError(f"trainer.devices={want} but {have} CUDA GPU(s) are visible; set trainer.devices<={have}")
    return device


def bytes_per_number(precision) -> int:
    return 8 if str(precision) in ("64", "64-true", "double") else 4


def estimate_parts(spec: NetSpec, n: int, d_in: int, d_out: int, batch: int | None, precision,
                   gate_path_on_device: bool = True, gates_cached: bool = True) -> dict[str, int]:
    """Bytes on the training device, part by part (their sum is the estimate)."""
    b = bytes_per_number(precision)
    gate_path = spec.gate_path * b
    rows = n if batch is None else min(batch, n)
    return {
        "weights": (spec.params + spec.buffers) * b,
        "gate_path": gate_path if gate_path_on_device or not gates_cached else min(gate_path, STREAM_BYTES),
        "gradients": spec.trained * b,
        "optimizer": spec.trained * spec.optimizer_states * b,
        "gate_cache": n * spec.gate_cache_bytes_per_sample if gates_cached else 0,
        "data": n * (d_in + d_out) * b,
        "activations": rows * spec.activations_per_sample * b,
    }


def estimate_bytes(spec: NetSpec, n: int, d_in: int, d_out: int, batch: int | None, precision,
                   gate_path_on_device: bool = True, gates_cached: bool = True) -> int:
    return sum(estimate_parts(spec, n, d_in, d_out, batch, precision, gate_path_on_device, gates_cached).values())


def available_bytes(device: torch.device) -> int | None:
    """Free memory on the device (CUDA), or the host memory this process may still take: the smaller
    of MemAvailable and the cgroup's limit less its usage."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    limits = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            if limit != "max" and int(limit) < 1 << 60:
                limits.append(int(limit) - int(Path(usage_file).read_text().strip()))
            break
        except (OSError, ValueError):
            continue
    return min(limits) if limits else None


def describe(cfg, dm) -> NetSpec:
    """The spec of the net ``cfg.model`` builds on these data; a model class that cannot describe itself is
    the config's fault (ConfigError)."""
    try:
        return spec_of(cfg.model, dm.d_in, dm.d_out)
    except (ValueError, NotImplementedError) as e:
        raise ConfigError(str(e)) from None


def check_memory(cfg, dm, device: torch.device, spec: NetSpec | None = None) -> dict:
    """The estimate and what the device has; ConfigError (nothing written yet) when it cannot fit."""
    spec = spec if spec is not None else describe(cfg, dm)
    # gates are cached on fixed data only (augmented inputs change every epoch: recomputed per batch)
    cached = spec.gate_cache_bytes_per_sample > 0 and not bool(dm.augmented)
    # the gate path leaves an accelerator once the gates are cached (GReLUModule.setup); on the host it is host memory
    need = estimate_bytes(spec, len(dm.split("train")), dm.d_in, dm.d_out, dm.batch_size, cfg.trainer.get("precision"),
                          gate_path_on_device=device.type == "cpu", gates_cached=cached)
    have = available_bytes(device)
    info = {"memory/estimate_gib": need / 2**30, "memory/device": str(device)}
    if have is not None:
        info["memory/available_gib"] = have / 2**30
        if need > HEADROOM * have:
            raise ConfigError(f"this run needs about {need / 2**30:.1f} GiB on {device} and {have / 2**30:.1f} GiB "
                              f"is available: lower model.width (or depth, data.batch_size), or run it on a device "
                              "with more memory")
    return info
