"""The empirical NTK Gram H = J J^T of a net's trained weights over a set of inputs, as an operator.

J is the Jacobian of the stacked predictions (n * d_y of them) with respect to the weights that
train. H is never formed for large n: ``u -> J (J^T u)`` is one vector-Jacobian and one
Jacobian-vector product per batch of inputs (``torch.func``), so it costs about three forward passes
whatever the width, and memory for one batch. For the sum loss 1/2 ||f - y||^2, gradient descent is
stable for steps below 2 / lambda_max(H) and converges at the linear rate (1 - eta lambda_min)^t.
Under DDP each rank holds its rows of u and the J^T u sums are all-reduced.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.func import functional_call, jvp, vjp

AllReduce = Callable[[torch.Tensor], torch.Tensor]  # sum over ranks, in place or not


def trained_params(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.detach() for k, p in net.named_parameters() if p.requires_grad}


class _Call(torch.nn.Module):
    """``fn(net, *args)`` as a module, so that functional_call can swap the net's weights under any
    forward (e.g. a converted GReLU->ReLU net run as its ReLU parent class)."""

    def __init__(self, net: torch.nn.Module, fn):
        super().__init__()
        self.net, self.fn = net, fn

    def forward(self, *args):
        return self.fn(self.net, *args)


def gram_operator(net: torch.nn.Module, x: torch.Tensor, gates=None, batch_size: int = 8192,
                  all_reduce: AllReduce | None = None, forward=None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``u (n, d_y) -> J J^T u`` for the net's trained weights at ``x``. ``gates(slice)`` may supply
    fixed gates for rows of ``x`` (a GReLU's cached gates); they are passed to the forward, which is
    ``forward(net, x[, gates])`` if given, else the net's own."""
    call = _Call(net, forward or (lambda module, *args: module(*args)))
    params = {f"net.{k}": v for k, v in trained_params(net).items()}
    slices = [slice(s, min(s + batch_size, x.shape[0])) for s in range(0, x.shape[0], batch_size)]

    def f_of(rows: slice):
        args = (x[rows],) if gates is None else (x[rows], gates(rows))
        return lambda p: functional_call(call, p, args)

    def apply(u: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            g = None
            for rows in slices:
                _, pullback = vjp(f_of(rows), params)
                (gb,) = pullback(u[rows])
                g = gb if g is None else {k: g[k] + gb[k] for k in g}
            if all_reduce is not None:
                flat = all_reduce(torch.cat([v.reshape(-1) for v in g.values()]))
                g, start = {}, 0
                for k, p in params.items():
                    g[k] = flat[start:start + p.numel()].view_as(p)
                    start += p.numel()
            return torch.cat([jvp(f_of(rows), (params,), (g,))[1] for rows in slices]).detach()

    return apply


def _gates_fn(gates):
    if isinstance(gates, (list, tuple)):  # masks for all of x
        return lambda rows: [D[rows] for D in gates]
    return gates


def lambda_max(net: torch.nn.Module, x: torch.Tensor, gates=None, *, iters: int = 100, rtol: float = 1e-4,
               seed: int = 0, batch_size: int = 8192, all_reduce: AllReduce | None = None, forward=None) -> float:
    """Largest eigenvalue of the NTK Gram at ``x`` by power iteration (stops when two successive
    Rayleigh quotients agree to ``rtol``). ``gates`` may be a list of fixed gate masks for all of
    ``x`` or a function of a row slice."""
    op = gram_operator(net, x, _gates_fn(gates), batch_size, all_reduce, forward)
    with torch.no_grad():
        out_shape = net(x[:1]).shape[1:]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    u = torch.randn((x.shape[0], *out_shape), generator=gen, dtype=torch.float64).to(x.device, x.dtype)
    u /= _norm(u, all_reduce)
    est = 0.0
    for _ in range(iters):
        w = op(u)
        new = float(_dot(u, w, all_reduce))
        u = w / _norm(w, all_reduce).clamp_min(1e-300)
        if abs(new - est) <= rtol * abs(new):
            return new
        est = new
    return est


def explicit_gram(net: torch.nn.Module, x: torch.Tensor, gates=None, batch_size: int = 8192,
                  forward=None) -> torch.Tensor:
    """H as an (n d_y) x (n d_y) matrix, one operator application per column (for small n d_y)."""
    op = gram_operator(net, x, _gates_fn(gates), batch_size, forward=forward)
    with torch.no_grad():
        d_y = net(x[:1]).shape[1]
    size = x.shape[0] * d_y
    cols = []
    for j in range(size):
        e = torch.zeros(size, dtype=x.dtype, device=x.device)
        e[j] = 1
        cols.append(op(e.view(x.shape[0], d_y)).reshape(-1))
    H = torch.stack(cols, dim=1)
    return 0.5 * (H + H.T)


def _dot(a: torch.Tensor, b: torch.Tensor, all_reduce: AllReduce | None) -> torch.Tensor:
    s = (a * b).sum().reshape(1)
    return (all_reduce(s) if all_reduce is not None else s)[0]


def _norm(a: torch.Tensor, all_reduce: AllReduce | None) -> torch.Tensor:
    return _dot(a, a, all_reduce).sqrt()
