"""Step-size policies: how a run's learning rate is chosen (``model.lr_policy``).

- ``fixed``: ``model.lr`` as given (the paper's protocol: one lr for every width).
- ``theorem``: Theorem 1's eta = d_x / (n^4 L^3 d_y), times ``model.lr_scale``.
- ``ntk``: eta = ``model.lr_scale`` / lambda_max(H_0), H_0 the empirical NTK Gram of the trained
  weights at initialization over the rows one step's loss sums (the training set with full-batch
  data, one batch with mini-batches), by power iteration with Jacobian-vector products
  (:mod:`lightning_grelu.nets.ntk`). GD on the sum loss is stable for lr_scale < 2, so every width
  gets a step suited to it and a width comparison measures the width, not the lr. A GReLU->ReLU
  run takes the converted net's own step at the switch (``lr_after_switch``).

The policy is resolved once, when training starts, and saved in checkpoints: a resumed run keeps the
lr it started with. What was chosen, and why, goes to ``summary.json`` (``lr``, ``lr_policy``,
``lr_scale``, ``ntk/lambda_max_init``).
"""

from __future__ import annotations

import math

from lightning_grelu.config_schema import LR_POLICIES as POLICIES
from lightning_grelu.errors import ConfigError


def check_policy(policy: str, scale: float) -> None:
    if policy not in POLICIES:
        raise ConfigError(f"model.lr_policy must be one of {POLICIES}, got {policy!r}")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ConfigError(f"model.lr_scale must be a finite number > 0, got {scale!r}")


def theorem_lr(d_x: int, n: int, depth: int, d_y: int) -> float:
    """Theorem 1's step size eta = d_x / (n^4 L^3 d_y)."""
    return d_x / (float(n) ** 4 * float(depth) ** 3 * d_y)


def resolve(policy: str, scale: float, lr: float, *, d_x: int, n: int, depth: int, d_y: int,
            lambda_max=None) -> dict:
    """The lr a policy gives, and the quantities behind it. ``lambda_max()`` computes the NTK's
    largest eigenvalue (only called by the ``ntk`` policy)."""
    out = {"lr_policy": policy, "lr_scale": scale}
    if policy == "fixed":
        out["lr"] = lr
    elif policy == "theorem":
        out["lr"] = scale * theorem_lr(d_x, n, depth, d_y)
    else:
        found = lambda_max()
        found = found if isinstance(found, dict) else {"lambda_max": float(found)}
        lam = float(found["lambda_max"])
        if not (math.isfinite(lam) and lam > 0):
            raise ConfigError(f"model.lr_policy=ntk: the NTK's largest eigenvalue is {lam!r}; the net computes a "
                             "constant (all units dead?); use model.lr_policy=fixed")
        out["ntk/lambda_max_init"] = lam
        # how exactly lambda_max is known: lambda lies within rel_residual (relative) of an eigenvalue
        for key, name in (("rel_residual", "ntk/lambda_max_rel_residual"), ("matvecs", "ntk/eig_matvecs"),
                          ("lambda_min", "ntk/lambda_min_init")):
            if found.get(key) is not None:
                out[name] = float(found[key])
        if found.get("method"):
            out["ntk/eig_method"] = found["method"]
        out["lr"] = scale / lam
    return out
