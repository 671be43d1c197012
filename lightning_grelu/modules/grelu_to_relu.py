"""GReLU -> ReLU: train as GReLU, convert to the equivalent ReLU net at ``switch_epoch``
(Theorem 2), then keep training as a plain ReLU net (the paper switches at epoch 40 of 80).

Whether the conversion reproduced the GReLU's training predictions is measured (``switch/exact``,
against ``exact_rtol``), and an inexact one prints one warning line. The converted weights are
copied into the same Parameter objects, so the optimizer and DDP's
gradient buckets stay valid; from then on the net is run as its ReLU parent class (``ReLUMLP``).
The ``switched`` buffer is saved in checkpoints, so a run resumed before or after the switch
continues correctly. Optimizer state (momentum) is reset at the switch: it belonged to other weights.
"""

from __future__ import annotations

import sys
from dataclasses import replace

import torch

from lightning_grelu import faults
from lightning_grelu.config_schema import CONVERSION_TARGETS as TARGETS
from lightning_grelu.errors import ConfigError
from lightning_grelu.modules.base import RegressionModule, all_reduce
from lightning_grelu.modules.grelu import GReLUModule
from lightning_grelu.nets import ReLUMLP, grelu_to_relu
from lightning_grelu.nets.spec import param_dtype

# rel_jump's denominator never falls below this fraction of the zero predictor's SSE (1/2 ||Y||^2):
# after a converged run the SSE is float noise, and a jump relative to noise would read as alarming.
JUMP_FLOOR = 1e-8


class GReLUToReLUModule(GReLUModule):
    def __init__(self, *args, switch_epoch: int | None = None, ridge: float = 0.0, conversion_target: str = "carry",
                 exact_rtol: float | None = None, **kwargs):
        if conversion_target not in TARGETS:
            raise ConfigError(f"model.conversion_target must be one of {TARGETS}, got {conversion_target!r}")
        if exact_rtol is not None and not (isinstance(exact_rtol, (int, float)) and 0 < exact_rtol < 1):
            raise ConfigError(f"model.exact_rtol must be a number in (0, 1) or null (by dtype), got {exact_rtol!r}")
        if not (isinstance(ridge, (int, float)) and ridge >= 0):
            raise ConfigError(f"model.ridge must be a number >= 0, got {ridge!r}")
        super().__init__(*args, **kwargs)
        self.save_hyperparameters()
        self.switch_epoch = switch_epoch  # None: half of max_epochs, fixed at fit start
        self.ridge, self.conversion_target, self.exact_rtol = ridge, conversion_target, exact_rtol
        self.register_buffer("switched", torch.tensor(False))
        self.switch_report: dict = {}

    @classmethod
    def describe_net(cls, hp, d_in, d_out):
        return replace(super().describe_net(hp, d_in, d_out), converts_to="relu")

    def on_fit_start(self):
        if self.switch_epoch is None:
            self.switch_epoch = max(self.trainer.max_epochs // 2, 1)

    def on_train_start(self):
        if bool(self.switched):  # resumed after the switch: no gates to cache
            RegressionModule.on_train_start(self)
            if "lr_after_switch" in self.lr_info:
                self.set_lr(self.lr_info["lr_after_switch"])
        else:
            super().on_train_start()

    def predict_batch(self, x, index, stage):
        if bool(self.switched):
            return ReLUMLP.forward(self.net, x)
        return super().predict_batch(x, index, stage)

    def ntk_spec(self, index):
        if bool(self.switched):
            return (lambda net, x: ReLUMLP.forward(net, x)), None
        return super().ntk_spec(index)

    def trace(self, x):
        if bool(self.switched):  # after the switch the probes see the ReLU net and its moving patterns
            return ReLUMLP.trace(self.net, x.to(param_dtype(self.net)))
        return super().trace(x)

    def on_train_epoch_start(self):
        if not bool(self.switched) and self.current_epoch >= self.switch_epoch:
            self.switch_to_relu()

    @torch.no_grad()
    def switch_to_relu(self) -> None:
        dm = self.trainer.datamodule
        x, y = dm.train_inputs().to(param_dtype(self.net)), dm.split("train").y
        before = self.evaluate(x, y)
        n, world = x.shape[0], self.trainer.world_size
        opts = dict(ridge=self.ridge, target=self.conversion_target, rtol=self.exact_rtol)
        rows = torch.arange(n, device=x.device)
        if world > 1 and n > self.net.width:  # normal equations: each rank its shard, Gram sums all-reduced
            rows = rows[self.global_rank::world]
            opts["all_reduce"] = all_reduce
        # the cached gates (equal to recomputed ones): no pass of the gate path, which may be on the host
        relu, report = grelu_to_relu(self.net, x[rows], gates=self.cached_gates(rows), **opts)
        faults.point("switch")
        for mine, solved in zip(self.net.W, relu.W):
            mine.copy_(solved)
        self.switched.fill_(True)
        self.gate_cache = None
        self._last_index = self._last_masks = None
        for opt in self.trainer.optimizers:
            opt.state.clear()
        if self.hparams.lr_policy == "ntk":  # the ReLU net's NTK is not the GReLU's: its own stable step
            lam = self.ntk_lambda_max()["lambda_max"]
            self.lr_info.update({"ntk/lambda_max_switch": lam, "lr_after_switch": self.hparams.lr_scale / lam})
            self.set_lr(self.lr_info["lr_after_switch"])
            self.log_lr_info()
        after = self.evaluate(x, y)
        zero_sse = 0.5 * float((y.double() ** 2).sum())  # the SSE of predicting 0
        jump = abs(after["sse"] - before["sse"]) / max(before["sse"], JUMP_FLOOR * zero_sse, 1e-300)
        deficit = max(report.ideal_rank - r for r in report.input_rank)
        self.switch_report = {
            "switch/epoch": int(self.current_epoch),
            "switch/sse_before": before["sse"], "switch/sse_after": after["sse"], "switch/rel_jump": jump,
            "switch/max_rel_pred_diff": report.max_rel_pred_diff, "switch/exact_rtol": report.rtol,
            "switch/exact": report.exact, "switch/rel_residual": max(report.rel_residual),
            "switch/input_rank_deficit": deficit, "switch/seconds": report.seconds,
        }
        for k, r in enumerate(report.rel_residual, start=1):
            self.switch_report[f"switch/rel_residual_l{k}"] = r
        for k, r in enumerate(report.input_rank, start=1):
            self.switch_report[f"switch/input_rank_l{k}"] = r
        if not report.exact and self.global_rank == 0:
            print(f"grelu-train: warning: the GReLU->ReLU conversion at epoch {self.current_epoch} is inexact: training "
                  f"predictions differ by up to {report.max_rel_pred_diff:.3g} relative (tolerance {report.rtol:g}; "
                  f"n={report.n}, m={report.width}, input rank deficit {deficit}); summary.json has switch/exact: false",
                  file=sys.stderr, flush=True)
        for logger in self.loggers:
            logger.log_metrics({k: float(v) for k, v in self.switch_report.items()}, step=self.global_step)

    def on_save_checkpoint(self, checkpoint):
        super().on_save_checkpoint(checkpoint)
        checkpoint["switch_report"] = self.switch_report

    def on_load_checkpoint(self, checkpoint):
        super().on_load_checkpoint(checkpoint)
        self.switch_report = checkpoint.get("switch_report", {})

