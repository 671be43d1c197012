"""What a net says about itself before it is built (as AlgoPerf's ``Workload`` describes a workload).

The memory estimate, the throughput probe, grelu-bench, the width-scan engine and the plots ask a net's
:class:`NetSpec` instead of guessing from config keys or option names. A net class answers
``describe(d_in, d_out, ...) -> NetSpec`` (a classmethod: nothing is drawn); the LightningModule that the
config's ``model._target_`` names answers ``describe(hp, d_in, d_out)`` for its net and optimizer, and
:func:`spec_of` asks it from a config alone. Counts are numbers (elements), not bytes: the precision decides
the bytes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class NetSpec:
    params: int  # numbers in parameters, trained or frozen (C, W, B of the paper's nets)
    trained: int  # of those, the ones that train: each has a gradient and the optimizer's state
    flops_per_sample: int  # model FLOPs of one training step per sample: forward and backward matmuls that a
    # dense implementation must do (gate computations excluded; see gate_flops_per_sample)
    activations_per_sample: int  # numbers one sample's training step holds at its peak (values kept for backward,
    # pre-activations, their gradients): an estimate, for the memory check
    buffers: int = 0  # numbers in buffers that stay on the training device
    gate_path: int = 0  # numbers of a frozen gate path (buffers) that may leave the device once gates are cached
    gate_cache_bytes_per_sample: int = 0  # bytes of cached gates per training sample (0: the net caches none)
    gate_flops_per_sample: int = 0  # FLOPs of computing one sample's gates (a recomputing step spends them too)
    optimizer_states: int = 0  # copies of the trained numbers the optimizer keeps (momentum: 1, Adam: 2)
    gated: bool = False  # activation patterns fixed by a gate path (plots draw such nets blue, as the paper)
    converts_to: str | None = None  # the kind of net this one turns into during training (GReLU->ReLU: "relu")
    layout: str | None = None  # "mlp": the paper's C, W_1..W_L, B (closed-form NTK, the batched scan engine)

    def record(self) -> dict:
        """The fields a run record keeps (``net/<field>``): results read them instead of the model's name."""
        return {f"net/{k}": v for k, v in asdict(self).items()}


def spec_of(model_cfg, d_in: int, d_out: int) -> NetSpec:
    """The spec of the net a model config builds: ``describe(hp, d_in, d_out)`` of the class its ``_target_``
    names (imported here, by name: nets/ itself never imports Lightning)."""
    from hydra.utils import get_class

    cls = get_class(str(model_cfg["_target_"]))
    describe = getattr(cls, "describe", None)
    if describe is None:
        raise ValueError(f"model._target_={model_cfg['_target_']} has no describe(hp, d_in, d_out) -> NetSpec: "
                         "the memory check and the throughput probe need it (see the README, 'Adding a net')")
    return describe(model_cfg, d_in, d_out)


def param_dtype(net: torch.nn.Module) -> torch.dtype:
    """The dtype of a net's weights (its first floating parameter): what its inputs are cast to."""
    return next(p.dtype for p in net.parameters() if p.is_floating_point())
