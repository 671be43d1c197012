"""NTK probe: the empirical NTK Gram H = J J^T of the trained weights over the training set.

At the start of training (the first epoch, after the step-size policy chose the lr):
  * ``probe/ntk_lambda_max`` by power iteration (any size: Jacobian-vector products only);
  * when n d_y <= ``max_explicit``: H_0 itself (n d_y operator products), its ``probe/ntk_lambda_min``
    and condition number ``probe/ntk_cond``, and the linear-rate prediction of the steps to ``eps`` (times the initial SSE when ``eps_relative``),
    ``probe/ntk_predicted_steps_to_eps`` = log(eps / SSE_0) / (2 log rho), rho = max|1 - eta lambda|
    over lambda_min and lambda_max (null when rho >= 1: the rate predicts no convergence). Above
    ``max_explicit`` these are skipped and ``probe/ntk_explicit`` is 0.
Every ``every_n_epochs``: ``probe/ntk_movement`` = ||H_t - H_0||_F / ||H_0||_F (lazy training keeps it
near 0; feature learning moves it), for the net as it now computes (after a GReLU->ReLU switch: the
ReLU net). Cost: each explicit Gram is n d_y products of about three forward passes over the
training set; the power iteration at most ``power_iters`` such products.
"""

from __future__ import annotations

import math

import lightning as L
import torch

from lightning_grelu.errors import ConfigError
from lightning_grelu.nets import ntk
from lightning_grelu.nets.spec import param_dtype


def predicted_steps(eta: float, lam_min: float, lam_max: float, sse0: float, eps: float) -> float | None:
    """Steps for the slowest mode of the linearised GD to bring the SSE from sse0 to eps."""
    rho = max(abs(1 - eta * lam_min), abs(1 - eta * lam_max))
    if not (0 < rho < 1) or not (eps > 0 and sse0 > 0):
        return None
    return max(0.0, math.ceil(math.log(eps / sse0) / (2 * math.log(rho))))


class NTKProbe(L.Callback):
    def __init__(self, every_n_epochs: int = 10, max_explicit: int = 4096, power_iters: int = 100,
                 eps: float | None = None, eps_relative: bool = False):
        if not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ConfigError(f"callbacks.ntk.every_n_epochs must be an integer >= 1, got {every_n_epochs!r}")
        self.every, self.max_explicit, self.power_iters, self.eps = every_n_epochs, max_explicit, power_iters, eps
        self.eps_relative = eps_relative  # eps times the initial SSE, as TimeToTarget reads it
        self.init: dict[str, float] = {}
        self.h0: torch.Tensor | None = None
        self.last: dict[str, float] = {}

    def _gram_inputs(self, trainer, module):
        x = trainer.datamodule.train_inputs().to(param_dtype(module.net))
        index = torch.arange(x.shape[0], device=x.device)
        forward, gates = module.ntk_spec(index)
        return x, forward, gates

    def on_train_epoch_start(self, trainer, module):
        if self.init:
            return
        x, forward, gates = self._gram_inputs(trainer, module)
        lam_max = ntk.lambda_max(module.net, x, gates, forward=forward, iters=self.power_iters)
        self.init = {"probe/ntk_lambda_max": lam_max, "probe/ntk_explicit": 0.0}
        d_y = trainer.datamodule.d_out
        if x.shape[0] * d_y <= self.max_explicit:
            self.h0 = ntk.explicit_gram(module.net, x, gates, forward=forward).to(torch.float64)
            eig = torch.linalg.eigvalsh(self.h0)
            lam_min, lam_top = float(eig[0]), float(eig[-1])
            self.init.update({"probe/ntk_explicit": 1.0, "probe/ntk_lambda_min": lam_min,
                              "probe/ntk_cond": lam_top / lam_min if lam_min > 0 else float("inf")})
            eta = trainer.optimizers[0].param_groups[0]["lr"]
            sse0 = getattr(trainer, "initial_train_sse", None)
            target = self.eps * sse0 if (self.eps and sse0 and self.eps_relative) else self.eps
            steps = predicted_steps(eta, lam_min, lam_top, sse0, target) if sse0 and target else None
            if steps is not None:
                self.init["probe/ntk_predicted_steps_to_eps"] = steps

    def on_train_epoch_end(self, trainer, module):
        out = dict(self.init)  # logged every time, so a resumed run's record still holds them
        if self.h0 is not None and (trainer.current_epoch + 1) % self.every == 0:
            x, forward, gates = self._gram_inputs(trainer, module)
            ht = ntk.explicit_gram(module.net, x, gates, forward=forward).to(torch.float64)
            out["probe/ntk_movement"] = float(torch.linalg.norm(ht - self.h0) / torch.linalg.norm(self.h0))
        for name, value in out.items():
            if math.isfinite(value):
                module.log(name, float(value))
        self.last = out

    def state_dict(self):
        return {"init": self.init, "h0": self.h0}

    def load_state_dict(self, state):
        self.init, self.h0 = state.get("init", {}), state.get("h0")
