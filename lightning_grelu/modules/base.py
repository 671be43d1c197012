"""The base LightningModule: squared loss as the paper defines it, metrics, and the optimizer.

Loss (the paper's "MSE", eq. 2) is the SUM of squared errors, SSE = 1/2 sum_i ||f(x_i) - y_i||^2.
Logged per epoch: ``{stage}/sse`` (that sum over the split) and ``{stage}/mse`` = (1/n) sum_i
||f(x_i) - y_i||^2 (per-sample mean of the squared error norm). Under DDP each rank's loss is scaled
by the world size, so the averaged gradient is the gradient of the global batch SSE: one step on
N devices equals one step on one device.
"""

from __future__ import annotations

from dataclasses import replace

import lightning as L
import torch
import torch.distributed as dist

from lightning_grelu import faults
from lightning_grelu.config_schema import OPTIMIZERS
from lightning_grelu.errors import ConfigError
from lightning_grelu.modules import step_size
from lightning_grelu.nets import ntk
from lightning_grelu.nets.spec import NetSpec, param_dtype


class RegressionModule(L.LightningModule):
    def __init__(self, d_in: int, d_out: int, width: int, depth: int, lr: float = 1e-3, optimizer: str = "sgd",
                 momentum: float = 0.0, weight_decay: float = 0.0, train_io: bool = False, init_seed: int = 0,
                 inner_steps: int = 1, lr_policy: str = "fixed", lr_scale: float = 1.0):
        super().__init__()
        if not isinstance(width, int) or width < 1:
            raise ConfigError(f"model.width must be an integer >= 1, got {width!r}")
        if not isinstance(depth, int) or depth < 1:
            raise ConfigError(f"model.depth must be an integer >= 1, got {depth!r}")
        if not lr > 0:
            raise ConfigError(f"model.lr must be > 0, got {lr!r}")
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"model.optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if not isinstance(inner_steps, int) or inner_steps < 1:
            raise ConfigError(f"model.inner_steps must be an integer >= 1, got {inner_steps!r}")
        step_size.check_policy(lr_policy, lr_scale)
        self.save_hyperparameters()
        self.lr_info: dict = {}  # the step-size policy's choice, fixed at the first train start
        self.net = self.build_net()
        # Full-batch GD on small nets is dominated by per-step framework overhead: take
        # `inner_steps` optimizer steps on the same (whole) batch per Lightning step. The iterates
        # are exactly those of plain GD; each epoch logs the loss at its first inner step.
        self.inner_steps = inner_steps
        self.automatic_optimization = inner_steps == 1
        self.inner_sse: list[torch.Tensor] = []  # this epoch's per-inner-step SSEs (inner_steps > 1)

    num_classes: int | None = None

    @classmethod
    def describe(cls, hp, d_in: int, d_out: int) -> NetSpec:
        """What a run of this module needs, before anything is built (``hp``: the model config or
        hparams): the net's :class:`NetSpec` with the optimizer's state per trained number."""
        opt = hp.get("optimizer", "sgd")
        states = 2 if opt == "adam" else (1 if (hp.get("momentum") or 0) > 0 else 0)
        return replace(cls.describe_net(hp, d_in, d_out), optimizer_states=states)

    @classmethod
    def describe_net(cls, hp, d_in: int, d_out: int) -> NetSpec:
        """The spec of the net :meth:`build_net` builds (each module answers for its own net)."""
        raise NotImplementedError(f"{cls.__name__} does not describe its net (define describe_net)")

    def setup(self, stage: str) -> None:
        self.num_classes = getattr(self.trainer.datamodule, "num_classes", None)

    def build_net(self) -> torch.nn.Module:
        raise NotImplementedError

    # The one place a subclass changes the computation: predictions for a batch of a split.
    def predict_batch(self, x: torch.Tensor, index: torch.Tensor, stage: str) -> torch.Tensor:
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict_batch(x, None, "predict")

    def trace(self, x: torch.Tensor):
        """Per trained layer (pre-activation, activation pattern) of the net as it now computes."""
        return self.net.trace(x.to(param_dtype(self.net)))

    @staticmethod
    def residual(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """pred - y in float32 or wider: bf16 predictions are widened, float64 (64-true) stays float64."""
        dtype = torch.promote_types(torch.promote_types(pred.dtype, y.dtype), torch.float32)
        return pred.to(dtype) - y.to(dtype)

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y, index = batch
        pred = self.predict_batch(x, index, stage)
        err = self.residual(pred, y)
        sq = (err * err).sum()
        sse = 0.5 * sq
        bs = max(int(x.shape[0]), 1)
        sync = self.trainer.world_size > 1
        # Epoch totals only: no host sync per step; the cross-rank reduction happens once per epoch.
        # mse: a batch-size-weighted mean of per-sample squared errors = (1/n) sum_i ||err_i||^2 exactly.
        opts = dict(on_step=False, on_epoch=True, sync_dist=sync, batch_size=bs, add_dataloader_idx=False)
        self.log(f"{stage}/sse", sse, reduce_fx="sum", **opts)
        self.log(f"{stage}/mse", sq / bs, reduce_fx="mean", **opts)
        if self.num_classes:  # one-hot regression of a classification task: accuracy too
            hits = (pred.argmax(dim=1) == y.argmax(dim=1)).float().sum()
            self.log(f"{stage}/acc", hits / bs, reduce_fx="mean", **opts)
        return sse

    def training_step(self, batch, batch_idx):
        faults.point("train_step")
        if self.automatic_optimization:
            return self._step(batch, "train") * self.trainer.world_size
        opt = self.optimizers()
        self.inner_sse = []  # the SSE of every inner step's iterate: targets are checked at every GD step
        for i in range(self.inner_steps):
            sse = self._step(batch, "train") if i == 0 else self._sse(batch)
            self.inner_sse.append(sse.detach())
            opt.zero_grad(set_to_none=True)
            self.manual_backward(sse * self.trainer.world_size)
            opt.step()

    def _sse(self, batch) -> torch.Tensor:
        x, y, index = batch
        err = self.residual(self.predict_batch(x, index, "train"), y)
        return 0.5 * (err * err).sum()

    def on_train_start(self):
        if self.inner_steps > 1 and self.trainer.num_training_batches != 1:
            raise ConfigError(f"model.inner_steps={self.inner_steps} needs full-batch data (one batch per epoch, "
                             "data.batch_size=null); with mini-batches it would repeat each batch")
        self.resolve_lr()

    def ntk_spec(self, index: torch.Tensor):
        """(forward, gates) for NTK products over training rows ``index``: ``forward(net, x[, gates])``
        computes what the net now computes, ``gates(slice)`` fixed gates for a slice of those rows or
        None. The GReLU modules answer from their gate cache and follow the switch."""
        return None, None

    def ntk_lambda_max(self) -> dict:
        """lambda_max of the NTK Gram of the net as it now computes, over the rows one step's loss sums:
        the whole training set with full-batch data, else its first batch (a mini-batch step's Gram).
        Under DDP each rank takes its share of those rows and the products are all-reduced. Returns
        :func:`ntk.extreme_eigenvalues`'s dict: the value, its relative residual, the products it took."""
        dm, world, rank = self.trainer.datamodule, self.trainer.world_size, self.trainer.global_rank
        x = dm.train_inputs().to(param_dtype(self.net))
        rows = x.shape[0] if dm.batch_size is None else min(dm.batch_size, x.shape[0])
        index = torch.arange(rows, device=x.device)[rank::world]
        forward, gates = self.ntk_spec(index)
        return ntk.extreme_eigenvalues(self.net, x[index], gates, forward=forward,
                                       all_reduce=(lambda t: all_reduce(t, "sum")) if world > 1 else None)

    def resolve_lr(self) -> None:
        """Apply ``model.lr_policy`` once (a resumed run keeps the lr its checkpoint holds)."""
        hp = self.hparams
        if not self.lr_info:
            dm = self.trainer.datamodule
            self.lr_info = step_size.resolve(hp.lr_policy, hp.lr_scale, hp.lr, d_x=dm.d_in, n=len(dm.split("train")),
                                             depth=hp.depth, d_y=dm.d_out, lambda_max=self.ntk_lambda_max)
            self.log_lr_info()
        self.set_lr(self.lr_info["lr"])

    def set_lr(self, lr: float) -> None:
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr

    def log_lr_info(self) -> None:
        for logger in self.loggers:
            logger.log_metrics({k: float(v) for k, v in self.lr_info.items() if not isinstance(v, str)},
                               step=self.global_step)

    def on_save_checkpoint(self, checkpoint):
        checkpoint["lr_info"] = self.lr_info

    def on_load_checkpoint(self, checkpoint):
        self.lr_info = checkpoint.get("lr_info", {})

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        # the validation loop may also run the test split every epoch (data.test_every_epoch)
        self._step(batch, self.trainer.datamodule.eval_splits[dataloader_idx])

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]  # frozen C, B, Psi never seen
        hp = self.hparams
        if hp.optimizer == "adam":
            return torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
        return torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, stage: str = "train", batch_size: int = 8192) -> dict:
        """SSE, MSE (and accuracy for one-hot targets) of the current weights on a whole split, in
        full precision, no logging. ``stage`` matters: only training rows may use cached gates."""
        x = x.to(param_dtype(self.net))  # e.g. 64-true precision: the net is float64, the data float32
        sq = torch.zeros((), dtype=torch.float64, device=x.device)
        hits = torch.zeros((), dtype=torch.float64, device=x.device)
        for s in range(0, x.shape[0], batch_size):
            idx = torch.arange(s, min(s + batch_size, x.shape[0]), device=x.device)
            pred = self.predict_batch(x[idx], idx, stage)
            err = pred.double() - y[idx].double()
            sq += (err * err).sum()
            hits += (pred.argmax(dim=1) == y[idx].argmax(dim=1)).sum()
        out = {"sse": 0.5 * float(sq), "mse": float(sq) / max(x.shape[0], 1)}
        if self.num_classes:
            out["acc"] = float(hits) / max(x.shape[0], 1)
        return out


def all_reduce(t: torch.Tensor, op: str) -> torch.Tensor:
    """In-place all-reduce across DDP ranks, ``op`` "sum" or "max"; returns ``t``."""
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return t
