"""Independent measures of what a training step really takes, from the live objects of a real run: the bytes of
the distinct tensor storages torch holds after one optimizer step, and the FLOPs torch counts in one step
(torch.utils.flop_counter). The memory estimate and the throughput probe are checked against these, never against
a copy of their own formulas."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.flop_counter import FlopCounterMode


def storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (a view or a shared tensor is counted once)."""
    seen = {}
    for t in tensors:
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


class AfterOneStep(L.Callback):
    """What torch really holds after the first optimizer step of a real run, measured from the live objects,
    and the activations autograd saved for that step's backward."""

    def __init__(self):
        self.measured, self._saved, self._hooks = None, {}, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        def pack(t):
            self._saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        self._hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
        self._hooks.__enter__()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self._hooks.__exit__(None, None, None)
        if self.measured is not None:
            return
        state = list(module.state_dict().values())  # parameters, buffers and the (offloaded) gate path
        train = trainer.datamodule.splits["train"]
        known = {t.untyped_storage().data_ptr() for t in [*state, train.x, train.y]}
        opt = [v for s in trainer.optimizers[0].state.values() for v in s.values() if torch.is_tensor(v)]
        cache = getattr(module, "gate_cache", None)
        self.measured = {
            "weights": storage_bytes(state),
            "gradients": storage_bytes([p.grad for p in module.parameters() if p.grad is not None]),
            "optimizer": storage_bytes(opt), "optimizer_tensors": len(opt),
            "gate_cache": cache.packed.untyped_storage().nbytes() if cache is not None else 0,
            "data": storage_bytes([train.x, train.y]),
            "activations": sum(b for ptr, b in self._saved.items() if ptr not in known),
        }


class StepFlops(L.Callback):
    """FLOPs torch counts (FlopCounterMode) in the first training step of a real run: forward, backward and the
    optimizer step, everything between batch start and batch end."""

    def __init__(self):
        self.counted, self.batch, self._mode = None, None, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if self.counted is None:
            self._mode = FlopCounterMode(display=False)
            self._mode.__enter__()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self.counted, self.batch, self._mode = self._mode.get_total_flops(), int(batch[0].shape[0]), None
