"""The empirical NTK Gram H = J J^T of a net's trained weights over a set of inputs, as an operator.

J is the Jacobian of the stacked predictions (n * d_y of them) with respect to the weights that
train. H is never formed: ``u -> J (J^T u)`` is one vector-Jacobian and one Jacobian-vector product
(``torch.func``), so its cost is about two forward-backward passes over the inputs whatever the
width. For the sum loss 1/2 ||f - y||^2, gradient descent is stable for steps below 2 / lambda_max(H).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.func import functional_call, jvp, vjp


def trained_params(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.detach() for k, p in net.named_parameters() if p.requires_grad}


def gram_operator(net: torch.nn.Module, x: torch.Tensor, *args) -> Callable[[torch.Tensor], torch.Tensor]:
    """``u (n, d_y) -> J J^T u`` for the net's trained weights at ``x`` (extra ``args``, e.g. fixed
    gates, are passed to the net's forward)."""
    params = trained_params(net)

    def f(p):
        return functional_call(net, p, (x, *args))

    _, pullback = vjp(f, params)

    def apply(u: torch.Tensor) -> torch.Tensor:
        (g,) = pullback(u)
        return jvp(f, (params,), (g,))[1]

    return apply


@torch.no_grad()
def lambda_max(net: torch.nn.Module, x: torch.Tensor, *args, iters: int = 100, rtol: float = 1e-4,
               seed: int = 0) -> float:
    """Largest eigenvalue of the NTK Gram at ``x`` by power iteration (stops when two estimates
    agree to ``rtol``)."""
    with torch.enable_grad():
        op = gram_operator(net, x, *args)
        out = net(x, *args)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    u = torch.randn(out.shape, generator=gen, dtype=out.dtype).to(out.device)
    u /= u.norm()
    est = 0.0
    for _ in range(iters):
        w = op(u)
        new = float((u * w).sum())
        u = w / w.norm().clamp_min(1e-300)
        if abs(new - est) <= rtol * abs(new):
            return new
        est = new
    return est
