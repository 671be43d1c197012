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
    """Largest eigenvalue of the NTK Gram at ``x`` (see :func:`extreme_eigenvalues`, whose accuracy it has)."""
    return extreme_eigenvalues(net, x, gates, tol=rtol, max_iters=iters, seed=seed, batch_size=batch_size,
                               all_reduce=all_reduce, forward=forward)["lambda_max"]


EXPLICIT_MAX = 64  # n d_y up to which the Gram is formed and diagonalised (exact, n d_y products)


def extreme_eigenvalues(net: torch.nn.Module, x: torch.Tensor, gates=None, *, tol: float = 1e-6,
                        max_iters: int = 1000, seed: int = 0, batch_size: int = 8192,
                        all_reduce: AllReduce | None = None, forward=None, explicit_max: int = EXPLICIT_MAX) -> dict:
    """lambda_max of the NTK Gram at ``x`` with a stated accuracy: ``{"lambda_max", "rel_residual", "matvecs",
    "method"}`` (and ``lambda_min`` when the Gram was formed).

    - n d_y <= ``explicit_max``: the Gram is formed (n d_y products) and diagonalised: exact to round-off.
    - one process: Lanczos (ARPACK's implicitly restarted Lanczos, ``scipy.sparse.linalg.eigsh``, over a
      ``LinearOperator`` of the products) to a relative tolerance ``tol``; near-degenerate top eigenvalues do
      not stop it early, as they can a power iteration.
    - DDP (``all_reduce``): a power iteration that stops only when the residual ||H u - lambda u|| / lambda is
      below ``tol`` (a small residual bounds the distance of lambda to an eigenvalue; a stalled Rayleigh
      quotient alone does not), or after ``max_iters``.
    ``rel_residual`` = ||H u - lambda u|| / lambda of the returned pair: lambda lies within that relative
    distance of an eigenvalue of H."""
    op = gram_operator(net, x, _gates_fn(gates), batch_size, all_reduce, forward)
    with torch.no_grad():
        out_shape = net(x[:1]).shape[1:]
    shape = (x.shape[0], *out_shape)
    size = int(torch.tensor(shape).prod())
    if all_reduce is None and size <= explicit_max:
        H = explicit_gram(net, x, gates, batch_size, forward=forward).double().cpu().numpy()
        import numpy as np

        vals = np.linalg.eigvalsh(H)
        return {"lambda_max": float(vals[-1]), "lambda_min": float(vals[0]), "rel_residual": 0.0,
                "matvecs": size, "method": "explicit"}
    if all_reduce is None:
        return _lanczos(op, shape, x, tol, max_iters, seed)
    return _power(op, shape, x, tol, max_iters, seed, all_reduce)


def _lanczos(op, shape, x, tol, max_iters, seed) -> dict:
    import numpy as np
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    size = int(np.prod(shape))
    count = [0]

    def matvec(v):
        count[0] += 1
        u = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64).reshape(shape)).to(x.device, x.dtype)
        return op(u).double().cpu().numpy().reshape(-1)

    A = LinearOperator((size, size), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(size)
    try:
        vals, vecs = eigsh(A, k=1, which="LA", tol=tol, v0=v0, maxiter=max_iters)
    except ArpackNoConvergence as e:  # report what it reached, with its residual
        if not len(e.eigenvalues):
            raise
        vals, vecs = e.eigenvalues, e.eigenvectors
    lam, v = float(vals[-1]), vecs[:, -1]
    res = float(np.linalg.norm(matvec(v) - lam * v) / max(abs(lam), 1e-300))
    return {"lambda_max": lam, "rel_residual": res, "matvecs": count[0], "method": "lanczos"}


def _power(op, shape, x, tol, max_iters, seed, all_reduce) -> dict:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    u = torch.randn(shape, generator=gen, dtype=torch.float64).to(x.device, x.dtype)
    u /= _norm(u, all_reduce)
    lam, res, it = 0.0, float("inf"), 0
    for it in range(1, max_iters + 1):
        w = op(u)
        lam = float(_dot(u, w, all_reduce))
        res = float(_norm(w - lam * u, all_reduce)) / max(abs(lam), 1e-300)
        if res <= tol:
            break
        u = w / _norm(w, all_reduce).clamp_min(1e-300)
    return {"lambda_max": lam, "rel_residual": res, "matvecs": it, "method": "power"}


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


def mlp_gram(x: torch.Tensor, C: torch.Tensor, W: list[torch.Tensor], B: torch.Tensor,
             gates: list[torch.Tensor] | None = None) -> torch.Tensor:
    """The NTK Gram of the trained W_1..W_L of one of the suite's nets, in closed form, in float64.

    With masks M_k (ReLU: 1[p_k > 0] at these weights; GReLU: its fixed gates), f_a(x_i) = B_a h_L(i) and
    d f_a(x_i) / d W_k = delta_k^a(i) h_{k-1}(i)^T, delta_L^a = M_L * B_a, delta_{k-1}^a = M_{k-1} * (W_k^T delta_k^a),
    so H[(i,a), (j,b)] = sum_k (delta_k^a(i) . delta_k^b(j)) (h_{k-1}(i) . h_{k-1}(j)). Rows and columns are
    ordered like the residual (n, d_y) flattened: i * d_y + a. Cost: L (n d_y)^2 m, no autograd."""
    x, C, B = x.double(), C.double(), B.double()
    W = [w.double() for w in W]
    h = torch.relu(x @ C.T)
    hs, masks = [], []
    for k, Wk in enumerate(W):
        hs.append(h)
        p = h @ Wk.T
        mask = gates[k].to(p.dtype) if gates is not None else (p > 0).to(p.dtype)
        masks.append(mask)
        h = p * mask
    n, d_y = x.shape[0], B.shape[0]
    delta = masks[-1][None] * B[:, None, :]  # (d_y, n, m): d f_a / d p_L
    H = torch.zeros(n * d_y, n * d_y, dtype=torch.float64, device=x.device)
    for k in range(len(W) - 1, -1, -1):
        rows = delta.permute(1, 0, 2).reshape(n * d_y, -1)
        inner = hs[k] @ hs[k].T
        H += (rows @ rows.T) * inner.repeat_interleave(d_y, 0).repeat_interleave(d_y, 1)
        if k > 0:
            delta = (delta @ W[k]) * masks[k - 1][None]
    return 0.5 * (H + H.T)


def linear_steps_to(eta: float, eigenvalues: torch.Tensor, coefficients: torch.Tensor, level: float,
                    max_steps: float = 1e12) -> float | None:
    """Steps GD on the model linearised at init needs to bring the SSE down to ``level``.

    Linearised, the residual moves as r_{t+1} = (I - eta H) r_t, so SSE_t = 1/2 sum_i (1 - eta lambda_i)^{2t} c_i^2
    with c = Q^T r_0 (H = Q diag(lambda) Q^T). SSE_t is non-increasing when every |1 - eta lambda_i| <= 1; the
    first t with SSE_t <= level is found by bisection. None when no t <= ``max_steps`` gets there (a floor of
    modes with lambda ~ 0, or eta beyond 2 / lambda_max)."""
    lam, c2 = eigenvalues.double(), coefficients.double() ** 2
    rho2 = (1 - eta * lam) ** 2

    def sse(t: float) -> float:
        return 0.5 * float((c2 * rho2 ** t).sum())

    if sse(0) <= level:
        return 0.0
    if bool((rho2 > 1 + 1e-12).any()) or sse(max_steps) > level:
        return None
    lo, hi = 0.0, 1.0
    while sse(hi) > level:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if sse(mid) > level else (lo, mid)
    return float(hi)
