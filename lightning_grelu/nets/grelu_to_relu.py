"""GReLU -> ReLU conversion (Theorem 2): least squares, layer by layer, on the training set.

What is matched (n <= m, exact up to float64 round-off):
  * layers 1..L-1: the ReLU net's pre-activation p_k equals the GReLU hidden value h_k for every
    training sample (the paper's proof, eq. 48). The ReLU net hands relu(h_k) to the next layer,
    and the next layer is solved from exactly those inputs.
  * layer L (the readout): B is fixed and a ReLU cannot output the negative entries of h_L, so the
    last layer is solved for the non-negative target  a_L = h_L + s v,  where v > 0 spans part of
    the null space of B (B v = 0) and s >= 0 is the smallest shift making a_L >= 0. Then
    B relu(p_L) = B a_L = B h_L: every training prediction equals the GReLU prediction.
When n > m the same targets are fitted by ridge / minimum-norm least squares from normal equations
accumulated over batches in float64 (summed across ranks by ``all_reduce`` under DDP); the report
gives the relative residual of each layer and the fraction of gate signs the ReLU net reproduces.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from lightning_grelu.nets.mlp import GReLUMLP, ReLUMLP

_OPEN_RTOL = 1e-6  # relative threshold above which a ReLU unit counts as open in the agreement report
AllReduce = Callable[[torch.Tensor, str], torch.Tensor]  # (tensor, "sum" | "max") -> reduced tensor


@dataclass
class ConversionReport:
    n: int
    width: int
    exact: bool  # n <= m: kernel (minimum-norm) solve; else normal equations
    ridge: float
    rel_residual: list[float] = field(default_factory=list)  # per layer ||A W^T - T||_F / ||T||_F
    gate_agreement: list[float] = field(default_factory=list)  # per layer: ReLU unit open == D_k
    max_rel_pred_diff: float = float("nan")  # max_i ||f_relu(x_i) - f_grelu(x_i)|| / rms_i ||f_grelu(x_i)||
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def positive_null_vector(B: torch.Tensor, iters: int = 2000) -> torch.Tensor:
    """A vector v > 0 (min entry 1 after scaling) with B v = 0, by alternating projections between
    {v : B v = 0} and {v >= 1}. Exists when 0 lies inside the cone of B's columns, which holds with
    overwhelming probability for a Gaussian B with width >> d_y."""
    B = B.to(torch.float64)
    proj = B.T @ torch.linalg.solve(B @ B.T, B)  # projector onto the row space of B
    v = torch.ones(B.shape[1], dtype=torch.float64, device=B.device)
    for _ in range(iters):
        v = v - proj @ v
        if v.min() > 0:
            return v / v.min()
        v = v.clamp(min=1.0)
    raise ValueError("the readout B has no strictly positive null vector (is the width much larger than d_y?); "
                     "the GReLU->ReLU readout cannot be matched exactly")


def _solve_psd(G: torch.Tensor, R: torch.Tensor, ridge: float) -> torch.Tensor:
    """Solve (G + lambda I) X = R for PSD G, lambda = ridge * mean(diag G) (scale-free);
    minimum-norm pseudo-inverse solution if singular."""
    if ridge > 0:
        lam = ridge * G.diagonal().mean()
        G = G + lam * torch.eye(G.shape[0], dtype=G.dtype, device=G.device)
    L, info = torch.linalg.cholesky_ex(G)
    if int(info) == 0:
        X = torch.cholesky_solve(R, L)
        if torch.isfinite(X).all():
            return X
    return torch.linalg.pinv(G, hermitian=True) @ R


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


@torch.no_grad()
def grelu_to_relu(grelu: GReLUMLP, inputs: torch.Tensor, *, ridge: float = 0.0, batch_size: int = 8192,
                  gates: Callable[[slice], list[torch.Tensor]] | None = None,
                  all_reduce: AllReduce | None = None) -> tuple[ReLUMLP, ConversionReport]:
    """Return a ReLU net (same sizes, same C and B) reproducing ``grelu`` on ``inputs``, and a report.

    ``gates(slice)`` may supply cached gates for rows of ``inputs``; by default they are recomputed.
    Under DDP pass each rank's shard and ``all_reduce``; the exact (n <= m) path needs every sample
    on every rank, so give it the full training set there.
    """
    t0 = time.perf_counter()
    dev, dt = grelu.C.device, grelu.C.dtype
    f64 = torch.float64
    red = all_reduce or (lambda t, op: t)
    n = int(red(torch.tensor(float(inputs.shape[0]), device=dev), "sum").item())
    m, L = grelu.width, grelu.depth
    exact = n <= m
    if exact and all_reduce is not None and n != inputs.shape[0]:
        raise ValueError("the exact GReLU->ReLU solve (n <= m) needs the whole training set on every rank")
    report = ConversionReport(n=n, width=m, exact=exact, ridge=ridge)
    gates = gates or (lambda rows: grelu.gates(inputs[rows]))

    relu = ReLUMLP(grelu.d_in, grelu.d_out, m, L, train_io=grelu.C.requires_grad).to(dev, dt)
    relu.C.copy_(grelu.C)
    relu.B.copy_(grelu.B)
    v = positive_null_vector(grelu.B)

    def layer_io(rows: slice, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(ReLU net's input to layer k, target for layer k's output), float64, for ``rows``."""
        x = inputs[rows]
        h = grelu.hidden(x, gates(rows))[k].to(f64)
        a = torch.relu(x @ relu.C.T)
        for W in relu.W[: k - 1]:
            a = torch.relu(a @ W.T)
        if k == L:  # shift along the null space of B so the target is reachable by a ReLU
            s = (torch.relu(-h) / v).amax(dim=1, keepdim=True)
            h = h + s * v
        return a.to(f64), h

    for k in range(1, L + 1):
        if exact:
            A, T = map(torch.cat, zip(*(layer_io(r, k) for r in _batches(n, batch_size))))
            K = A @ A.T
            Wt = A.T @ _solve_psd(K, T, ridge)  # minimum-norm interpolant, (m_in, m_out)
            resid = torch.linalg.norm(A @ Wt - T) / torch.linalg.norm(T).clamp_min(1e-300)
        else:
            G = torch.zeros(m, m, dtype=f64, device=dev)
            R = torch.zeros(m, m, dtype=f64, device=dev)
            tt = torch.zeros((), dtype=f64, device=dev)
            for r in _batches(inputs.shape[0], batch_size):
                A, T = layer_io(r, k)
                G += A.T @ A
                R += A.T @ T
                tt += (T * T).sum()
            G, R, tt = red(G, "sum"), red(R, "sum"), red(tt, "sum")
            Wt = _solve_psd(G, R, ridge)
            # ||A Wt - T||^2 = tr(Wt' G Wt) - 2 tr(Wt' R) + ||T||^2, without a second pass
            sq = ((Wt * (G @ Wt)).sum() - 2 * (Wt * R).sum() + tt).clamp_min(0)
            resid = sq.sqrt() / tt.sqrt().clamp_min(1e-300)
        relu.W[k - 1].copy_(Wt.T.to(dt))
        report.rel_residual.append(float(resid))

    # One last pass: gate-sign agreement per layer and how well predictions match.
    agree = torch.zeros(L, dtype=f64, device=dev)
    max_diff = torch.zeros((), dtype=f64, device=dev)
    sq_norm = torch.zeros((), dtype=f64, device=dev)
    for r in _batches(inputs.shape[0], batch_size):
        x = inputs[r]
        D = gates(r)
        a = torch.relu(x @ relu.C.T)
        for k, W in enumerate(relu.W):
            p = a @ W.T
            # a unit counts as open above round-off: closed GReLU gates give p = 0 up to ~1e-16
            open_ = p > _OPEN_RTOL * p.abs().amax(dim=1, keepdim=True)
            agree[k] += (open_ == D[k]).to(f64).mean(dim=1).sum()
            a = torch.relu(p)
        f_relu = (a @ relu.B.T).to(f64)
        f_grelu = grelu(x, D).to(f64)
        max_diff = torch.maximum(max_diff, torch.linalg.norm(f_relu - f_grelu, dim=1).max())
        sq_norm += (f_grelu * f_grelu).sum()
    agree, max_diff, sq_norm = red(agree, "sum"), red(max_diff, "max"), red(sq_norm, "sum")
    report.gate_agreement = (agree / n).tolist()
    report.max_rel_pred_diff = float(max_diff / (sq_norm / n).sqrt().clamp_min(1e-300))
    report.seconds = time.perf_counter() - t0
    return relu, report
