"""A low-rank gate path for inference (the paper's section 4.4): each Psi_k is replaced by factors
U_k (m x r) and V_k (r x m), so the gates cost 2 r m multiply-adds a layer instead of m^2:

    z_0 = relu(C_0 x),  z_k = relu(U_k (V_k z_{k-1})),  D_k = 1[z_k > 0];  values as GReLU's.

Methods (``METHODS``). NMF needs a non-negative matrix and Psi is signed (Gaussian), so:

- ``nma_shift`` (default): make it non-negative by a shift, Psi + s 1 1^T with s = -min(Psi), fit NMF
  of rank r - 1 (scikit-learn's solver) and subtract the shift back as one more rank:
  U = [A, -s 1], V = [B; 1^T] (m x r and r x m, the sizes the paper counts). The shift is exactly
  rank one, so it costs one rank of the budget and nothing else.
- ``nma_split``: Psi = P+ - P-, P+- = max(+-Psi, 0), each part by NMF of rank r/2:
  Psi ~ [A+, -A-] [B+; B-]. Every factor keeps a sign, but each part is a half-zero, high-rank matrix
  and their rank-one means cancel: measured on a Gaussian Psi (m = 1024) its error is well above the
  shift's (relative Frobenius error at r = 128: 0.91 against 0.81; SVD 0.79).
- ``svd``: truncated SVD, the best rank-r approximation in Frobenius and spectral norm (Eckart-Young):
  the baseline any other rank-r method is judged against.

``r >= m`` makes no approximation (U = Psi, no V): the low-rank net is then the GReLU itself. No
Lightning here; the approximation is computed on the host in float64, the factors take the net's dtype.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lightning_grelu.nets.mlp import GReLUMLP

METHODS = ("nma_shift", "nma_split", "svd")


def default_rank(m: int) -> int:
    """The paper's r = sqrt(m) / 2."""
    return max(1, round(math.sqrt(m) / 2))


def _nmf(P: torch.Tensor, k: int, seed: int, max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """P (non-negative) ~ A B with A (rows x k), B (k x cols) non-negative: scikit-learn's NMF."""
    import warnings

    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    model = NMF(n_components=k, init="nndsvda", solver="cd", max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():  # max_iter bounds the time; the error it reached is reported, not hidden
        warnings.simplefilter("ignore", ConvergenceWarning)
        A = model.fit_transform(P.numpy())
    return torch.from_numpy(A), torch.from_numpy(model.components_)


def factorize(psi: torch.Tensor, r: int, method: str = "nma_shift", seed: int = 0,
              max_iter: int = 200) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(U, V) with psi ~ U V, rank <= r, in float64 on the host; (psi, None) when r >= min(psi.shape)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(r, int) or r < 1:
        raise ValueError(f"the rank r must be an integer >= 1, got {r!r}")
    P = psi.detach().to("cpu", torch.float64)
    if r >= min(P.shape):
        return P, None
    if method == "svd":
        U, S, Vh = torch.linalg.svd(P, full_matrices=False)
        return U[:, :r] * S[:r], Vh[:r]
    if method == "nma_split":
        k_pos = max(1, r // 2)
        Ap, Bp = _nmf(P.clamp_min(0), k_pos, seed, max_iter)
        if r - k_pos < 1:  # r = 1: one non-negative part is all a rank-1 budget holds
            return Ap, Bp
        An, Bn = _nmf((-P).clamp_min(0), r - k_pos, seed, max_iter)
        return torch.cat([Ap, -An], dim=1), torch.cat([Bp, Bn], dim=0)
    s = float(max(0.0, -P.min()))  # nma_shift: Psi + s is non-negative
    if r == 1:
        ones = torch.ones(P.shape[0], 1, dtype=P.dtype)
        return -s * ones, torch.ones(1, P.shape[1], dtype=P.dtype)
    A, B = _nmf(P + s, r - 1, seed, max_iter)
    return (torch.cat([A, torch.full((P.shape[0], 1), -s, dtype=P.dtype)], dim=1),
            torch.cat([B, torch.ones(1, P.shape[1], dtype=P.dtype)], dim=0))


class LowRankGReLU(nn.Module):
    """A GReLU net whose gate path is rank-r: same C, W, B (the net's own tensors, not copies)."""

    def __init__(self, net: GReLUMLP, factors: list[tuple[torch.Tensor, torch.Tensor | None]]):
        super().__init__()
        if len(factors) != net.depth:
            raise ValueError(f"need one (U, V) pair per layer ({net.depth}), got {len(factors)}")
        self.net = net
        dev, dt = net.C.device, net.C.dtype
        self.register_buffer("gate_C", net.gate_C.detach().to(dev, dt).clone())
        for k, (U, V) in enumerate(factors):  # buffers: .to(device) moves them with the net
            self.register_buffer(f"U{k}", U.to(dev, dt))
            self.register_buffer(f"V{k}", None if V is None else V.to(dev, dt))
        self.width, self.depth = net.width, net.depth

    @property
    def U(self) -> list[torch.Tensor]:
        return [getattr(self, f"U{k}") for k in range(self.depth)]

    @property
    def V(self) -> list[torch.Tensor | None]:
        return [getattr(self, f"V{k}") for k in range(self.depth)]

    @property
    def rank(self) -> list[int]:
        return [U.shape[1] if V is not None else self.width for U, V in zip(self.U, self.V)]

    @torch.no_grad()
    def gates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Gates from the factored path, in float32 or wider (as the full net's)."""
        dtype = torch.promote_types(self.gate_C.dtype, torch.float32)
        z = torch.relu(x.to(dtype) @ self.gate_C.to(dtype).T)
        masks = []
        for U, V in zip(self.U, self.V):
            t = z if V is None else z @ V.to(dtype).T
            z = torch.relu(t @ U.to(dtype).T)
            masks.append(z > 0)
        return masks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.gates(x))


def low_rank(net: GReLUMLP, r: int | None = None, method: str = "nma_shift", seed: int = 0,
             max_iter: int = 200) -> LowRankGReLU:
    """``net`` with each Psi_k replaced by a rank-``r`` factorization (default r = sqrt(m) / 2)."""
    r = default_rank(net.width) if r is None else r
    return LowRankGReLU(net, [factorize(psi, r, method, seed=seed + k, max_iter=max_iter)
                              for k, psi in enumerate(net.psi)])


def relative_error(psi: torch.Tensor, U: torch.Tensor, V: torch.Tensor | None) -> float:
    """||Psi - U V||_F / ||Psi||_F."""
    P = psi.detach().to("cpu", torch.float64)
    approx = U.to("cpu", torch.float64) if V is None else U.to("cpu", torch.float64) @ V.to("cpu", torch.float64)
    return float(torch.linalg.norm(P - approx) / torch.linalg.norm(P))
