"""Computing only the open entries (section 4.4's "calculate only the values related to active ReLU
entries"): what the closed gates let a step skip, counted, and two ways to turn that into time.

A GReLU layer h_k = D_k W_k h_{k-1} needs W_k's entry (i, j) for sample s only where gate i of layer k
and unit j of layer k-1 are both open for s (h_{k-1} is zero where its own gate is closed): about 25%
of the dense multiply-adds, forward and backward. A ReLU layer needs every output to know its sign, but
its input is sparse too (h_{k-1} = relu(.)), so about 50% forward and 25% backward. :func:`open_flops`
counts both exactly from the patterns. Dense kernels skip none of it.

The attempts (plain torch, no custom kernels):

- :func:`open_matvec`: one sample's W h reading only the rows of W^T (a contiguous copy kept for it)
  where h is non-zero, with ``embedding_bag``: at batch 1 a matrix-vector product is memory-bound, so
  reading half of W can halve the time. It works for ReLU (h is post-ReLU) and GReLU alike.
- :func:`gathered_step`: one SGD step on the sub-network of units open for at least one sample of the
  batch: each W_k's rows (open units of layer k) and columns (open units of layer k-1) are gathered into
  a small dense matrix, trained there, and scattered back. At batch 1 it touches ~25% of W; with b
  independent patterns the union is 1 - 2^-b of the units, so it stops paying from a few samples on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lightning_grelu.nets.mlp import GReLUMLP, ReLUMLP


def open_flops(first: torch.Tensor, patterns: list[torch.Tensor], grelu: bool) -> list[dict]:
    """Per trained layer k: multiply-adds x2 (FLOPs) of the forward, the weight gradient and the input
    gradient over a batch, dense and when only the open entries are computed.

    ``first``: (n, m) bool, where h_0 = relu(C x) is non-zero; ``patterns``: (n, m) bool per layer, the
    GReLU gates or the ReLU activation patterns. Layer 1 needs no input gradient (C is frozen)."""
    rows = []
    prev = first.double()
    for k, D in enumerate(patterns, start=1):
        n, m_out = D.shape
        m_in = prev.shape[1]
        cur = D.double()
        both = float((cur.sum(1) * prev.sum(1)).sum())  # sum_s |open_k(s)| |open_{k-1}(s)|
        dense = 2.0 * n * m_out * m_in
        fwd = 2.0 * (both if grelu else m_out * float(prev.sum()))  # ReLU: every output, to learn its sign
        rows.append({"layer": k, "open_fraction": float(cur.mean()), "input_nonzero_fraction": float(prev.mean()),
                     "dense_fwd": dense, "dense_grad_w": dense, "dense_grad_h": dense if k > 1 else 0.0,
                     "open_fwd": fwd, "open_grad_w": 2.0 * both, "open_grad_h": 2.0 * both if k > 1 else 0.0})
        prev = cur
    return rows


def transposed(net: ReLUMLP) -> list[torch.Tensor]:
    """W_k^T as contiguous (in, out) matrices: row j is column j of W_k, what :func:`open_matvec` reads."""
    return [W.detach().T.contiguous() for W in net.W]


def open_matvec(Wt: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """W h for one sample (h: (m_in,)), reading only the rows of ``Wt`` = W^T where h is non-zero."""
    nz = h.nonzero().squeeze(1)
    return F.embedding_bag(nz.unsqueeze(0), Wt, per_sample_weights=h[nz].unsqueeze(0), mode="sum").squeeze(0)


@torch.no_grad()
def relu_open_forward(net: ReLUMLP, Wts: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The ReLU net on one sample (x: (d_in,)), each layer reading only the W rows its input needs."""
    h = torch.relu(net.C @ x)
    for Wt in Wts:
        h = torch.relu(open_matvec(Wt, h))
    return net.B @ h


@torch.no_grad()
def grelu_open_values(net: GReLUMLP, Wts: list[torch.Tensor], x: torch.Tensor, masks: list[torch.Tensor]):
    """The GReLU value path on one sample with known gates (masks: (m,) bool per layer)."""
    h = torch.relu(net.C @ x)
    for Wt, D in zip(Wts, masks):
        h = open_matvec(Wt, h) * D
    return net.B @ h


@torch.no_grad()
def open_gates(gate_C: torch.Tensor, Psis_t: list[torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
    """A full gate path on one sample, reading only the Psi^T rows its (post-ReLU) input needs."""
    z = torch.relu(gate_C @ x)
    masks = []
    for Pt in Psis_t:
        z = torch.relu(open_matvec(Pt, z))
        masks.append(z > 0)
    return masks


def gathered_step(net: GReLUMLP, x: torch.Tensor, y: torch.Tensor, masks: list[torch.Tensor], lr: float) -> float:
    """One SGD step of the sum loss 1/2 ||f(x) - y||^2 on the units open for some sample of the batch; the
    same update as the dense step (tested). Returns the loss before the step."""
    with torch.no_grad():
        h = torch.relu(x @ net.C.T)
        cols = h.ne(0).any(0).nonzero().squeeze(1)
        h = h[:, cols]
    subs = []
    for W, D in zip(net.W, masks):
        rows = D.any(0).nonzero().squeeze(1)
        sub = W.detach()[rows][:, cols].requires_grad_(True)  # (open out) x (open in), a dense copy
        h = (h @ sub.T) * D[:, rows]
        subs.append((W, rows, cols, sub))
        cols = rows
    loss = 0.5 * ((h @ net.B.detach()[:, cols].T - y) ** 2).sum()
    grads = torch.autograd.grad(loss, [s[3] for s in subs])
    with torch.no_grad():
        for (W, rows, cols, _), g in zip(subs, grads):
            W.index_put_((rows[:, None], cols[None, :]), g.mul_(-lr), accumulate=True)
    return float(loss.detach())
