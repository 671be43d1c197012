"""GReLU -> ReLU conversion (Theorem 2): least squares, layer by layer, on the training set.

The ReLU net keeps C and B and gets new W_1..W_L. Layer k is solved from the inputs a_{k-1} the
ReLU net really computes (n x m matrix A_{k-1}) for a target T_k of its pre-activation, and hands
a_k = relu(T_k) to the next layer:

  * layers 1..L-1, ``target="carry"`` (the default): T_k = h_k + c_k a_0, the GReLU hidden value
    plus a small carry of the first layer's features a_0 = relu(C x) (0.1 of h_k's rms per sample).
    The paper's eq. 48 (``target="relu"``: T_k = h_k) hands the next layer relu(h_k), ~3/4 zeros
    (closed gates, negative values), and the GReLU's own hidden matrices lose rank as n approaches m
    (each column is masked by its gates), so that layer cannot interpolate. The carry opens the
    closed-gate units with a copy of a_0, which has rank n whenever relu(C X) has, and changes the
    open ones by 10%: the converted net stays close to eq. 48's and trains on like it.
    ``target="lift"``: T_k = h_k + s_k 1 + c_k a_0 with s_k the smallest per-sample shift making it
    positive (plus 0.1 rms): every unit is open on the training samples, the most robust to rank
    loss, but the interpolating weights are large and the net that results trains unstably at the
    lr that suited the GReLU net (measured; see README);
  * layer L (the readout): B is fixed and a ReLU cannot output the negative entries of h_L, so the
    target is h_L + s v with v > 0, B v = 0 (a linear program finds v) and s >= 0 the smallest
    shift making it non-negative. Then B a_L = B h_L.

If every input matrix A_0..A_{L-1} has rank n (possible only when n <= m), each layer interpolates
its target and every training prediction equals the GReLU prediction. Whether that happened is
*measured*, never assumed: ``exact`` is true when the converted net's predictions on the training
inputs match the GReLU's to ``rtol`` (relative to their rms). When n > m no layer can interpolate,
so the targets are eq. 48's (carry and lift only serve rank) and are fitted by (ridge) least squares
from normal equations accumulated over batches in float64 (summed across ranks by ``all_reduce``
under DDP). The report gives each layer's relative residual and the
numerical rank of each layer's input matrix (ideal: min(n, m); a deficit is what makes a
conversion inexact).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

from lightning_grelu.nets.mlp import GReLUMLP, ReLUMLP, init_on

TARGETS = ("carry", "lift", "relu")
CARRY = 0.1  # size of the carried first-layer features in the intermediate targets, relative to h_k
LIFT_MARGIN = 0.1  # the lift keeps every ReLU unit open by 0.1 rms on training samples
AllReduce = Callable[[torch.Tensor, str], torch.Tensor]  # (tensor, "sum" | "max") -> reduced tensor


def default_rtol(dtype: torch.dtype) -> float:
    """Tolerance on the relative prediction difference under which a conversion counts as exact:
    1e-6 for a float64 net, 1e-4 for a float32 one (its weights are rounded to float32 after the
    float64 solve, which alone moves predictions by ~1e-6 on well-conditioned layers)."""
    return 1e-6 if dtype == torch.float64 else 1e-4


@dataclass
class ConversionReport:
    n: int
    width: int
    target: str  # "carry" | "lift" | "relu": the intermediate-layer targets used (module docstring)
    solve: str  # "interpolation" (n <= m, per-sample) | "normal_equations" (n > m, accumulated)
    ridge: float
    rtol: float
    exact: bool = False  # measured: max_rel_pred_diff <= rtol
    rel_residual: list[float] = field(default_factory=list)  # per layer ||A W^T - T||_F / ||T||_F
    input_rank: list[int] = field(default_factory=list)  # per layer: numerical rank of its input matrix
    max_rel_pred_diff: float = float("nan")  # max_i ||f_relu(x_i) - f_grelu(x_i)|| / rms_i ||f_grelu(x_i)||
    seconds: float = 0.0

    @property
    def ideal_rank(self) -> int:
        return min(self.n, self.width)

    def as_dict(self) -> dict:
        return asdict(self)


def _project_null(B: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """v minus its component in the row space of B (least squares, so a rank-deficient B is fine)."""
    coef = torch.linalg.lstsq(B.T, v.unsqueeze(1)).solution
    return v - (B.T @ coef).squeeze(1)


def _clearly_positive(v: torch.Tensor, scale: float) -> bool:
    """min(v) > 0 beyond float64 round-off, ``scale`` being the size of the vector v was projected
    from (an entry at 1e-16 of it is a zero)."""
    return bool(v.min() > 1e-9 * scale)


def positive_null_vector(B: torch.Tensor) -> torch.Tensor:
    """A vector v with B v = 0 and min(v) = 1, or ValueError when none exists.

    First the cheap guess (the projection of the all-ones vector on B's null space, enough when the
    width is much larger than d_y); otherwise the linear program  max t  s.t.  B (w + t 1) = 0,
    sum(w) + m t = m, w >= 0  (scipy's HiGHS), whose optimum t* is positive exactly when a strictly
    positive null vector exists. The LP's answer is projected back onto the null space in float64."""
    B64 = B.detach().to(torch.float64).cpu()
    d_y, m = B64.shape
    v = _project_null(B64, torch.ones(m, dtype=torch.float64))
    if not _clearly_positive(v, 1.0):
        from scipy.optimize import linprog

        Bn = B64.numpy()
        c = np.zeros(m + 1)
        c[-1] = -1.0  # maximize t
        a_eq = np.zeros((d_y + 1, m + 1))
        a_eq[:d_y, :m], a_eq[:d_y, m] = Bn, Bn.sum(axis=1)
        a_eq[d_y, :m], a_eq[d_y, m] = 1.0, float(m)
        b_eq = np.zeros(d_y + 1)
        b_eq[d_y] = float(m)
        res = linprog(c, A_eq=a_eq, b_eq=b_eq, bounds=[(0, None)] * (m + 1), method="highs")
        v = torch.zeros(m, dtype=torch.float64)
        if res.status == 0 and res.x[-1] > 1e-9:  # sum(v) = m: t* is the smallest entry of a mean-1 vector
            v = _project_null(B64, torch.from_numpy(res.x[:m] + res.x[-1]))
    if not _clearly_positive(v, float(v.abs().max().clamp_min(1.0))):
        raise ValueError("the readout B has no strictly positive null vector (0 is not inside the cone of its "
                         "columns: is the width close to d_y?); the GReLU->ReLU readout cannot be matched exactly")
    return (v / v.min()).to(B.device)


def _interpolate(A: torch.Tensor, T: torch.Tensor, ridge: float) -> tuple[torch.Tensor, int]:
    """Minimum-norm W^T with A W^T = T (A: n x m_in, n <= m_in) by SVD, so the conditioning is that
    of A, not of A A^T; ridge > 0 filters the singular values instead. Returns (W^T, rank of A)."""
    U, S, Vh = torch.linalg.svd(A, full_matrices=False)
    keep = S > S.max() * max(A.shape) * torch.finfo(A.dtype).eps
    if ridge > 0:
        inv = S / (S * S + ridge * (S * S).sum() / A.shape[0])  # lambda relative to the mean diagonal of A A^T
    else:
        inv = torch.where(keep, 1.0 / S.clamp_min(torch.finfo(A.dtype).tiny), torch.zeros_like(S))
    return Vh.T @ (inv.unsqueeze(1) * (U.T @ T)), int(keep.sum())


def _solve_normal(G: torch.Tensor, R: torch.Tensor, ridge: float) -> tuple[torch.Tensor, int]:
    """Solve (G + lambda I) X = R for PSD G = A^T A, lambda = ridge * mean(diag G). Cholesky when G is
    positive definite (rank m); else an eigendecomposition gives the rank and the pseudo-inverse."""
    m = G.shape[0]
    chol, info = torch.linalg.cholesky_ex(G)
    if int(info) == 0:
        if ridge > 0:
            chol = torch.linalg.cholesky(G + ridge * G.diagonal().mean() * torch.eye(m, dtype=G.dtype, device=G.device))
        X = torch.cholesky_solve(R, chol)
        if torch.isfinite(X).all():
            return X, m
    lam, V = torch.linalg.eigh(G)
    keep = lam > lam.max().clamp_min(0) * m * torch.finfo(G.dtype).eps
    shift = ridge * G.diagonal().mean()
    inv = torch.where(keep | (shift > 0), 1.0 / (lam.clamp_min(0) + shift).clamp_min(torch.finfo(G.dtype).tiny), 0.0)
    return V @ (inv.unsqueeze(1) * (V.T @ R)), int(keep.sum())


def _rms(t: torch.Tensor) -> torch.Tensor:
    return t.pow(2).mean(dim=1, keepdim=True).sqrt()


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


@torch.no_grad()
def grelu_to_relu(grelu: GReLUMLP, inputs: torch.Tensor, *, ridge: float = 0.0, batch_size: int = 8192,
                  gates: Callable[[slice], list[torch.Tensor]] | None = None,
                  all_reduce: AllReduce | None = None, target: str = "carry",
                  rtol: float | None = None) -> tuple[ReLUMLP, ConversionReport]:
    """Return a ReLU net (same sizes, same C and B) reproducing ``grelu`` on ``inputs``, and a report.

    ``gates(slice)`` may supply cached gates for rows of ``inputs``; by default they are recomputed.
    Under DDP pass each rank's shard and ``all_reduce``; the interpolation (n <= m) path needs every
    sample on every rank, so give it the full training set there. ``rtol`` (default by the net's
    dtype, :func:`default_rtol`) decides ``report.exact`` from the measured prediction difference.
    """
    if target not in TARGETS:
        raise ValueError(f"model.conversion_target must be one of {TARGETS}, got {target!r}")
    t0 = time.perf_counter()
    dev, dt = grelu.C.device, grelu.C.dtype
    f64 = torch.float64
    red = all_reduce or (lambda t, op: t)
    n = int(red(torch.tensor(float(inputs.shape[0]), device=dev), "sum").item())
    m, L = grelu.width, grelu.depth
    interpolate = n <= m
    if interpolate and all_reduce is not None and n != inputs.shape[0]:
        raise ValueError("the exact GReLU->ReLU solve (n <= m) needs the whole training set on every rank")
    target = target if interpolate else "relu"  # n > m: least squares of eq. 48's targets (see above)
    report = ConversionReport(n=n, width=m, target=target, solve="interpolation" if interpolate else "normal_equations",
                              ridge=ridge, rtol=default_rtol(dt) if rtol is None else float(rtol))
    gates = gates or (lambda rows: grelu.gates(inputs[rows]))

    with init_on(dev):  # its random draw is overwritten below; never hold all its layers on the host
        relu = ReLUMLP(grelu.d_in, grelu.d_out, m, L, train_io=grelu.C.requires_grad).to(dev, dt)
    relu.C.copy_(grelu.C)
    relu.B.copy_(grelu.B)
    v = positive_null_vector(grelu.B)

    def layer_io(rows: slice, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(ReLU net's input to layer k, target for layer k's output), float64, for ``rows``."""
        x = inputs[rows]
        h = grelu.hidden(x, gates(rows))[k].to(f64)
        a = a0 = torch.relu(x @ relu.C.T)
        for W in relu.W[: k - 1]:
            a = torch.relu(a @ W.T)
        if k == L:  # shift along the null space of B so the target is reachable by a ReLU
            h = h + (torch.relu(-h) / v).amax(dim=1, keepdim=True) * v
        elif target != "relu":  # carry a_0 along, so that the next layer's input keeps rank n
            rms, a0 = _rms(h), a0.to(f64)
            shift = torch.relu(-h.amin(dim=1, keepdim=True)) + LIFT_MARGIN * rms if target == "lift" else 0.0
            h = h + shift + CARRY * rms / _rms(a0).clamp_min(1e-300) * a0
        return a.to(f64), h

    for k in range(1, L + 1):
        if interpolate:
            A, T = map(torch.cat, zip(*(layer_io(r, k) for r in _batches(n, batch_size))))
            Wt, rank = _interpolate(A, T, ridge)  # (m_in, m_out)
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
            Wt, rank = _solve_normal(G, R, ridge)
            # ||A Wt - T||^2 = tr(Wt' G Wt) - 2 tr(Wt' R) + ||T||^2, without a second pass
            sq = ((Wt * (G @ Wt)).sum() - 2 * (Wt * R).sum() + tt).clamp_min(0)
            resid = sq.sqrt() / tt.sqrt().clamp_min(1e-300)
        relu.W[k - 1].copy_(Wt.T.to(dt))
        report.rel_residual.append(float(resid))
        report.input_rank.append(rank)

    # One last pass, on the net as stored (its dtype): how well do the predictions match?
    max_diff = torch.zeros((), dtype=f64, device=dev)
    sq_norm = torch.zeros((), dtype=f64, device=dev)
    for r in _batches(inputs.shape[0], batch_size):
        x = inputs[r]
        f_relu = relu(x).to(f64)
        f_grelu = grelu(x, gates(r)).to(f64)
        max_diff = torch.maximum(max_diff, torch.linalg.norm(f_relu - f_grelu, dim=1).max())
        sq_norm += (f_grelu * f_grelu).sum()
    max_diff, sq_norm = red(max_diff, "max"), red(sq_norm, "sum")
    report.max_rel_pred_diff = float(max_diff / (sq_norm / n).sqrt().clamp_min(1e-300))
    report.exact = bool(report.max_rel_pred_diff <= report.rtol)  # NaN (a broken solve) is never exact
    report.seconds = time.perf_counter() - t0
    return relu, report
