"""GReLU -> ReLU: train as GReLU, convert to the equivalent ReLU net at ``switch_epoch``
(Theorem 2), then keep training as a plain ReLU net (the paper switches at epoch 40 of 80).

The converted weights are copied into the same Parameter objects, so the optimizer and DDP's
gradient buckets stay valid; from then on the net is run as its ReLU parent class (``ReLUMLP``).
The ``switched`` buffer is saved in checkpoints, so a run resumed before or after the switch
continues correctly. Optimizer state (momentum) is reset at the switch: it belonged to other weights.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from lightning_grelu import faults
from lightning_grelu.modules.base import RegressionModule
from lightning_grelu.modules.grelu import GReLUModule
from lightning_grelu.nets import ReLUMLP, grelu_to_relu


class GReLUToReLUModule(GReLUModule):
    def __init__(self, *args, switch_epoch: int | None = None, ridge: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.save_hyperparameters()
        self.switch_epoch = switch_epoch  # None: half of max_epochs, fixed at fit start
        self.ridge = ridge
        self.register_buffer("switched", torch.tensor(False))
        self.switch_report: dict = {}

    def on_fit_start(self):
        if self.switch_epoch is None:
            self.switch_epoch = max(self.trainer.max_epochs // 2, 1)

    def on_train_start(self):
        if bool(self.switched):  # resumed after the switch: no gates to cache
            RegressionModule.on_train_start(self)
        else:
            super().on_train_start()

    def predict_batch(self, x, index, stage):
        if bool(self.switched):
            return ReLUMLP.forward(self.net, x)
        return super().predict_batch(x, index, stage)

    def trace(self, x):
        if bool(self.switched):  # after the switch the probes see the ReLU net and its moving patterns
            return ReLUMLP.trace(self.net, x.to(self.net.C.dtype))
        return super().trace(x)

    def on_train_epoch_start(self):
        if not bool(self.switched) and self.current_epoch >= self.switch_epoch:
            self.switch_to_relu()

    @torch.no_grad()
    def switch_to_relu(self) -> None:
        dm = self.trainer.datamodule
        x, y = dm.train_inputs().to(self.net.C.dtype), dm.split("train").y
        before = self.evaluate(x, y)
        n, world = x.shape[0], self.trainer.world_size
        if world > 1 and n > self.net.width:  # normal equations: each rank its shard, Gram sums all-reduced
            relu, report = grelu_to_relu(self.net, x[self.global_rank::world], ridge=self.ridge,
                                         all_reduce=_all_reduce)
        else:  # n <= m: the exact kernel solve, identical on every rank
            relu, report = grelu_to_relu(self.net, x, ridge=self.ridge)
        faults.point("switch")
        for mine, solved in zip(self.net.W, relu.W):
            mine.copy_(solved)
        self.switched.fill_(True)
        self.gate_cache = None
        self._last_index = self._last_masks = None
        for opt in self.trainer.optimizers:
            opt.state.clear()
        after = self.evaluate(x, y)
        jump = abs(after["sse"] - before["sse"]) / max(abs(before["sse"]), 1e-30)
        self.switch_report = {
            "switch/epoch": int(self.current_epoch),
            "switch/sse_before": before["sse"], "switch/sse_after": after["sse"], "switch/rel_jump": jump,
            "switch/max_rel_pred_diff": report.max_rel_pred_diff,
            "switch/rel_residual": max(report.rel_residual),
            "switch/gate_agreement": sum(report.gate_agreement) / len(report.gate_agreement),
            "switch/exact": report.exact, "switch/seconds": report.seconds,
        }
        for k, r in enumerate(report.rel_residual, start=1):
            self.switch_report[f"switch/rel_residual_l{k}"] = r
        for k, a in enumerate(report.gate_agreement, start=1):
            self.switch_report[f"switch/gate_agreement_l{k}"] = a
        for logger in self.loggers:
            logger.log_metrics({k: float(v) for k, v in self.switch_report.items()}, step=self.global_step)

    def on_save_checkpoint(self, checkpoint):
        checkpoint["switch_report"] = self.switch_report

    def on_load_checkpoint(self, checkpoint):
        self.switch_report = checkpoint.get("switch_report", {})


def _all_reduce(t: torch.Tensor, op: str) -> torch.Tensor:
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return t
