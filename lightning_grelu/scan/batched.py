"""Many small nets trained together: full-batch gradient descent on stacked weights, one batched
matmul per layer for all of them.

A net of the suite (ReLU or GReLU, frozen C and B, SGD without momentum) computes, with masks M_k,

    h_0 = relu(C x),  p_k = W_k h_{k-1},  h_k = M_k * p_k,  y = B h_L,  SSE = 1/2 sum_i ||y_i - t_i||^2

where M_k = 1[p_k > 0] for ReLU and the fixed gates D_k for GReLU. In both cases d h_k / d p_k = M_k
(relu's derivative is its own mask), so one forward and one backward serve both kinds, and ReLU and
GReLU twins share a batch. The gradient is written out (no autograd): per layer one product forward
and two backward. Model FLOPs are the net's own count (``ReLUMLP.describe``, as every run record has them);
the engine itself skips the forward through the frozen C (relu(C x) is computed once), 2 n d_in m of them.

Nets of one depth, input and output size are trained in one call; their sample counts n and widths m
may differ. Each net is zero-padded to a shape that depends on its own n and m alone (:func:`padded`), and
the nets of one padded shape form a batch. Padding is exact in exact arithmetic: a padded sample has x = 0,
hence h_0 = 0, zero prediction and zero residual; a padded unit has zero weights in and out, hence p = 0,
h = 0 and a zero gradient, for ever. Float rounding, though, depends on the padded shape (the matmul
kernels block and sum by it): a ReLU net of width 10 trained alone and beside a width-27 net, padded to
27, differed in the 5th digit of its SSE after 3,000 steps, enough to flip a borderline verdict. So a
net's padding never depends on its batch-mates: its iterates are the same, bit for bit, whatever else
is in its batch and however many nets are left in it, and a width scan's table is the same for any
number of workers and any order of claims. Each net keeps its own data, step size and stopping step: a
net whose loss reaches its stop level, or diverges, stops counting steps at once (its step size becomes
0, its weights stay those of that step) and leaves the batch at the next compaction.

No Lightning here: this module only needs torch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from lightning_grelu.nets.mlp import ReLUMLP


@dataclass
class Net:
    """One net's problem as the batch sees it (all tensors on the host, any float dtype)."""

    x: torch.Tensor  # (n, d_in) training inputs
    y: torch.Tensor  # (n, d_out) targets
    C: torch.Tensor  # (m, d_in), frozen
    W: list[torch.Tensor]  # L x (m, m), trained
    B: torch.Tensor  # (d_out, m), frozen
    lr: float
    gates: list[torch.Tensor] | None = None  # GReLU: L x (n, m) bool, fixed; None: ReLU
    stop_below: float | None = None  # stop once the SSE is <= this (absolute)
    diverge_above: float = math.inf  # diverged once the SSE exceeds this (or is not finite)

    @property
    def width(self) -> int:
        return self.C.shape[0]

    @property
    def n(self) -> int:
        return self.x.shape[0]


@dataclass
class Outcome:
    sse: list[float]  # SSE of iterates 0..steps, float64 values (one per GD step, the last one at `steps`)
    steps: int  # GD steps taken
    stopped: str  # "target" (reached stop_below), "diverged", or "budget"
    W: list[torch.Tensor] | None = None  # final weights (keep_weights=True), on the host
    seconds: float = 0.0  # wall time of the batch this net was in (shared)
    flops: float = 0.0  # model flops this net's steps took (the net's own count per step, unpadded)
    extra: dict = field(default_factory=dict)


def step_flops(n: int, depth: int, width: int, d_in: int, d_out: int) -> float:
    """Model flops of one full-batch GD step of a net, as the net counts them (:meth:`ReLUMLP.describe`)."""
    return float(n * ReLUMLP.describe(d_in, d_out, width, depth).flops_per_sample)


def padded(size: int) -> int:
    """The size a net's n or m is zero-padded to: a multiple of 8, at most 25% more than ``size`` beyond 32
    (the buckets step by 2^(1/4)). A function of the size alone, so that a net's rounding never depends on
    which nets share its batch."""
    bucket = 8 * math.ceil(size / 8)
    if bucket <= 32:
        return bucket
    k = math.ceil(4 * math.log2(size))
    while True:
        bucket = 8 * math.ceil(2 ** (k / 4) / 8)
        if bucket >= size:
            return bucket
        k += 1


def train_together(nets: list[Net], steps: int, *, device: str | torch.device = "cpu",
                   dtype: torch.dtype = torch.float32, keep_weights: bool = False,
                   should_stop=lambda: False) -> list[Outcome]:
    """Train every net for at most ``steps`` GD steps (the loss is measured at every iterate 0..steps), one
    batch per padded shape. ``should_stop()`` is polled every step: when true, training stops where it is
    and raises :class:`Stopped` (nothing of the call is final)."""
    if not nets:
        return []
    depth, d_in, d_out = len(nets[0].W), nets[0].x.shape[1], nets[0].y.shape[1]
    for net in nets:
        if (len(net.W), net.x.shape[1], net.y.shape[1]) != (depth, d_in, d_out):
            raise ValueError("train_together: one call trains nets of one depth, input and output size")
    shapes: dict[tuple[int, int], list[int]] = {}
    for i, net in enumerate(nets):
        shapes.setdefault((padded(net.n), padded(net.width)), []).append(i)
    out: list[Outcome | None] = [None] * len(nets)
    for shape, ids in shapes.items():
        for i, o in zip(ids, _train_batch([nets[i] for i in ids], steps, shape, device, dtype, keep_weights,
                                          should_stop)):
            out[i] = o
    return out


def _train_batch(nets: list[Net], steps: int, shape: tuple[int, int], device, dtype, keep_weights,
                 should_stop) -> list[Outcome]:
    depth = len(nets[0].W)
    t0 = time.perf_counter()
    state = _Batch(nets, device, dtype, shape)
    K = len(nets)
    losses = torch.full((K, steps + 1), math.nan, dtype=torch.float64, device=state.device)
    stop_at = torch.full((K,), -1, dtype=torch.long, device=state.device)
    diverged = torch.zeros(K, dtype=torch.bool, device=state.device)
    for t in range(steps + 1):
        if should_stop():
            raise Stopped(t)
        loss, cache = state.forward()
        losses[state.ids, t] = loss.double()
        # who stops now: reached its stop level, or diverged (not finite, or above its divergence level)
        bad = ~torch.isfinite(loss) | (loss > state.diverge_above)
        done = state.active & (bad | (loss <= state.stop_below))
        if bool(done.any()):
            stop_at[state.ids[done]] = t
            diverged[state.ids[done & bad]] = True
            state.active &= ~done
            if not bool(state.active.any()):
                break
            cache = state.compact(cache)  # stopped nets leave the batch; their weights are kept aside
        if t == steps:
            break
        state.step(cache)
    seconds = time.perf_counter() - t0
    finals = state.final_weights() if keep_weights else None
    host = losses.cpu()
    out = []
    for i, net in enumerate(nets):
        taken = int(stop_at[i]) if int(stop_at[i]) >= 0 else steps
        stopped = "diverged" if bool(diverged[i]) else ("target" if int(stop_at[i]) >= 0 else "budget")
        out.append(Outcome(sse=host[i, :taken + 1].tolist(), steps=taken, stopped=stopped,
                           W=finals[i] if finals is not None else None, seconds=seconds,
                           flops=taken * step_flops(net.n, depth, net.width, net.x.shape[1], net.y.shape[1])))
    return out


class Stopped(Exception):
    """The batch was asked to stop (a signal) before it finished; nothing of it is final."""

    def __init__(self, step: int):
        super().__init__(f"stopped at step {step}")
        self.step = step


class _Batch:
    """The stacked, padded state of the nets still training."""

    def __init__(self, nets: list[Net], device, dtype, shape: tuple[int, int]):
        self.device = torch.device(device)
        self.dtype = dtype
        self.depth = len(nets[0].W)
        n, m = shape  # every net's own padded n and m (train_together batches nets of one padded shape)
        K, d_out = len(nets), nets[0].y.shape[1]
        kw = dict(dtype=dtype, device=self.device)
        self.a0 = torch.zeros(K, n, m, **kw)  # relu(C x): C is frozen, so the first layer's output is fixed
        self.y = torch.zeros(K, n, d_out, **kw)
        self.Wt = [torch.zeros(K, m, m, **kw) for _ in range(self.depth)]  # W_k transposed: h @ Wt = (W h)^T
        self.B = torch.zeros(K, d_out, m, **kw)
        # 0/1 in the values' dtype: a float mask multiplies without a conversion (a bool one is converted each time)
        self.gates = [torch.zeros(K, n, m, **kw) for _ in range(self.depth)]
        self.is_grelu = torch.tensor([net.gates is not None for net in nets], device=self.device)
        for i, net in enumerate(nets):
            ni, mi = net.n, net.width
            x = net.x.to(self.device, dtype)
            self.a0[i, :ni, :mi] = torch.relu(x @ net.C.to(self.device, dtype).T)
            self.y[i, :ni] = net.y.to(self.device, dtype)
            for k in range(self.depth):
                self.Wt[k][i, :mi, :mi] = net.W[k].to(self.device, dtype).T
                if net.gates is not None:
                    self.gates[k][i, :ni, :mi] = net.gates[k].to(self.device, dtype)
            self.B[i, :, :mi] = net.B.to(self.device, dtype)
        self.lr = torch.tensor([net.lr for net in nets], **kw)
        self.stop_below = torch.tensor([-math.inf if net.stop_below is None else net.stop_below for net in nets],
                                       **kw)
        self.diverge_above = torch.tensor([net.diverge_above for net in nets], **kw)
        self.widths = torch.tensor([net.width for net in nets], device=self.device)
        self.ids = torch.arange(K, device=self.device)  # original index of each row still in the batch
        self.active = torch.ones(K, dtype=torch.bool, device=self.device)
        self.all_grelu, self.all_relu = bool(self.is_grelu.all()), not bool(self.is_grelu.any())
        self.kept: dict[int, list[torch.Tensor]] = {}  # final weights of nets that left the batch

    def _mask(self, k: int, p: torch.Tensor) -> torch.Tensor:
        if self.all_grelu:
            return self.gates[k]
        relu = (p > 0).to(p.dtype)
        if self.all_relu:
            return relu
        return torch.where(self.is_grelu[:, None, None], self.gates[k], relu)

    def forward(self):
        """SSE per net, and what the backward pass needs (each layer's input and mask, the residual)."""
        h, hs, masks = self.a0, [], []
        for k in range(self.depth):
            hs.append(h)
            p = torch.bmm(h, self.Wt[k])
            mask = self._mask(k, p)
            h = p * mask
            masks.append(mask)
        r = torch.bmm(h, self.B.transpose(1, 2)) - self.y
        loss = 0.5 * (r * r).sum(dim=(1, 2))
        return loss, (hs, masks, r)

    def step(self, cache) -> None:
        """One GD step: W_k <- W_k - lr dSSE/dW_k for every net (0 for nets that stopped)."""
        hs, masks, r = cache
        lr = (self.lr * self.active)[:, None, None]
        g = torch.bmm(r, self.B) * masks[-1]  # dSSE/dp_L
        for k in range(self.depth - 1, -1, -1):
            g_prev = torch.bmm(g, self.Wt[k].transpose(1, 2)) * masks[k - 1] if k > 0 else None  # before W_k moves
            self.Wt[k].baddbmm_(hs[k].transpose(1, 2), g * lr, alpha=-1.0)  # Wt -= lr h^T g
            g = g_prev

    def compact(self, cache):
        """Drop the rows of nets that stopped (their weights are kept aside); returns the forward cache
        of the rows that remain."""
        keep = self.active.nonzero().squeeze(1)
        for row in (~self.active).nonzero().squeeze(1).tolist():
            self.kept[int(self.ids[row])] = self._weights(row)
        for name in ("a0", "y", "B", "lr", "stop_below", "diverge_above", "ids", "active", "is_grelu", "widths"):
            setattr(self, name, getattr(self, name)[keep])
        self.Wt = [Wt[keep] for Wt in self.Wt]
        self.gates = [G[keep] for G in self.gates]
        hs, masks, r = cache
        return [h[keep] for h in hs], [mk[keep] for mk in masks], r[keep]

    def _weights(self, row: int) -> list[torch.Tensor]:
        m = int(self.widths[row])
        return [Wt[row, :m, :m].T.clone() for Wt in self.Wt]

    def final_weights(self) -> dict[int, list[torch.Tensor]]:
        out = dict(self.kept)
        for row, i in enumerate(self.ids.tolist()):
            out[i] = self._weights(row)
        return {i: [w.cpu() for w in ws] for i, ws in out.items()}
