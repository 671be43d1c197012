"""The paper's fully connected networks (Noy et al., section 2.1), top to bottom.

    ReLU:  h_0 = relu(C x),  h_k = relu(W_k h_{k-1}),            y = B h_L
    GReLU: h_0 = relu(C x),  h_k = D_k(x) W_k h_{k-1},           y = B h_L
           with gates D_k(x) = 1[z_k > 0] from a frozen path z_0 = relu(C_0 x), z_k = relu(Psi_k z_{k-1}).

Only W_1..W_L are trained by default; C and B are frozen (``train_io=True`` trains them too).
The gate path (C_0, Psi) is a set of buffers and never trains: C_0 is a copy of C taken when the
gates are fixed, so the gates stay those of initialization even when C trains. Note
h_0 = D_0 C x = relu(C x): the first gate needs no cache.

Initialization (all independent Gaussians, variances 2/m, 2/m, 2/d_x, 2/d_y). The trained weights
C, W_1..W_L, B are drawn from one generator seeded with ``seed`` and Psi from a second one, so a
ReLU and a GReLU net built with the same seed start from identical C, W and B, as in the paper.
Every layer is drawn on the host (CPU generator: the same weights on every device) and, inside
``init_on(device)``, moved to that device before the next is drawn: host memory peaks at one layer
(the theory width m = 40,000 has 6.4 GB layers; all of them at once would be 52 GB).

Once every training sample's gates are cached the gate path is needed only now and then (uncached
data, probes, conversion), so :meth:`GReLUMLP.offload_gate_path` takes it off the training device: Psi
and C_0 stay on the host (pinned where CUDA exists) as plain attributes, out of reach of
``module.to(device)``, DDP's buffer broadcast and the optimizer, and reach the device in row blocks of
at most ``STREAM_BYTES`` when gates are computed. Checkpoints still hold them (``state_dict`` and
``load_state_dict`` see them as before), and dtype changes of the module still apply to them.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace

import torch
from torch import nn

from lightning_grelu.nets.spec import NetSpec

_INIT_DEVICE: ContextVar[torch.device | None] = ContextVar("init_device", default=None)


@contextmanager
def init_on(device):
    """Nets built inside this block put each layer on ``device`` as soon as it is drawn."""
    token = _INIT_DEVICE.set(torch.device(device) if device is not None else None)
    try:
        yield
    finally:
        _INIT_DEVICE.reset(token)

GATE_INITS = ("independent", "copy", "from_relu")
GATE_PATH = ("psi", "gate_C")  # the frozen path's tensors, buffers until offloaded
STREAM_BYTES = 256 * 2**20  # an offloaded gate matrix reaches the device in row blocks of at most this


def _pinned(t: torch.Tensor, pin: bool) -> torch.Tensor:
    """A host copy of ``t`` (the tensor itself when it already is one and need not be pinned)."""
    if not pin or t.is_pinned():
        return t.detach().to("cpu")
    try:
        host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    except RuntimeError:  # no CUDA driver, or page-locked memory refused: plain host memory still frees the device
        return t.detach().to("cpu")
    return host.copy_(t.detach())


def gate_matmul(z: torch.Tensor, A: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``z @ A.T`` in ``dtype`` on z's device; an A held elsewhere (the host) is streamed."""
    return z @ A.to(dtype).T if A.device == z.device else streamed_matmul(z, A, dtype)


def streamed_matmul(z: torch.Tensor, A: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``z @ A.T`` with A brought to z's device in row blocks of at most STREAM_BYTES: the device never
    holds more of A than one block."""
    rows = max(1, STREAM_BYTES // max(A.shape[1] * torch.empty((), dtype=dtype).element_size(), 1))
    out = torch.empty(z.shape[0], A.shape[0], dtype=dtype, device=z.device)
    for s in range(0, A.shape[0], rows):
        out[:, s:s + rows] = z @ A[s:s + rows].to(z.device, dtype, non_blocking=True).T
    return out


def _gaussian(gen: torch.Generator, rows: int, cols: int, var: float) -> torch.Tensor:
    """One layer, drawn on the host, scaled in place (no second copy), then moved to the init device."""
    w = torch.randn(rows, cols, generator=gen).mul_(math.sqrt(var))
    device = _INIT_DEVICE.get()
    return w if device is None or device.type == "cpu" else w.to(device)


def check_sizes(d_in: int, d_out: int, width: int, depth: int) -> None:
    for name, value in (("d_in", d_in), ("d_out", d_out), ("width", width), ("depth", depth)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


class ReLUMLP(nn.Module):
    """y = B relu(W_L ... relu(W_1 relu(C x))). Weights are stored as (out, in) like nn.Linear."""

    def __init__(self, d_in: int, d_out: int, width: int, depth: int, seed: int = 0, train_io: bool = False):
        super().__init__()
        check_sizes(d_in, d_out, width, depth)
        self.d_in, self.d_out, self.width, self.depth = d_in, d_out, width, depth
        gen = torch.Generator().manual_seed(int(seed))
        self.C = nn.Parameter(_gaussian(gen, width, d_in, 2.0 / d_in), requires_grad=train_io)
        self.W = nn.ParameterList(nn.Parameter(_gaussian(gen, width, width, 2.0 / width)) for _ in range(depth))
        self.B = nn.Parameter(_gaussian(gen, d_out, width, 2.0 / d_out), requires_grad=train_io)

    @classmethod
    def describe(cls, d_in: int, d_out: int, width: int, depth: int, train_io: bool = False) -> NetSpec:
        """Sizes and model FLOPs without drawing a weight. A training step's matmuls: forward through C,
        W_1..W_L and B; the data gradient through B and W_L..W_2 (below W_1 only when C trains, the input
        never needs one); the weight gradients of what trains."""
        m, L, io = width, depth, width * d_in + d_out * width
        flops = 2 * d_in * m + 2 * L * m * m + 2 * m * d_out  # forward
        flops += 2 * m * d_out + 2 * (L - 1) * m * m + 2 * L * m * m  # data gradients, weight gradients of W
        if train_io:
            flops += 2 * m * m + 2 * d_in * m + 2 * m * d_out  # data gradient below W_1, weight gradients of C and B
        return NetSpec(params=io + L * m * m, trained=L * m * m + (io if train_io else 0), flops_per_sample=flops,
                       activations_per_sample=4 * m * (L + 1), layout="mlp")

    def hidden(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Post-activation values [h_0, ..., h_L] (what each layer hands to the next)."""
        h = torch.relu(x @ self.C.T)
        out = [h]
        for W in self.W:
            h = torch.relu(h @ W.T)
            out.append(h)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(x @ self.C.T)
        for W in self.W:
            h = torch.relu(h @ W.T)
        return h @ self.B.T

    @torch.no_grad()
    def trace(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per trained layer: (pre-activation W_k h_{k-1}, activation pattern). For probes."""
        h = torch.relu(x @ self.C.T)
        out = []
        for W in self.W:
            pre = h @ W.T
            out.append((pre, pre > 0))
            h = torch.relu(pre)
        return out


class GReLUMLP(ReLUMLP):
    """A ReLU MLP whose activation pattern is fixed by a frozen gate path (Psi, C).

    gate_init: ``independent`` (the paper: Psi_k ~ N(0, 2/m) independent of W), ``copy``
    (Psi_k = W_k at init, so the net equals its ReLU twin at step 0). For gates taken from a
    given, possibly trained ReLU net use :meth:`from_relu`.
    """

    def __init__(self, d_in: int, d_out: int, width: int, depth: int, seed: int = 0, train_io: bool = False,
                 gate_init: str = "independent"):
        super().__init__(d_in, d_out, width, depth, seed=seed, train_io=train_io)
        if gate_init not in ("independent", "copy"):
            raise ValueError(f"gate_init must be 'independent' or 'copy' here (use GReLUMLP.from_relu), got {gate_init!r}")
        psi = torch.empty(depth, width, width, device=self.C.device)  # filled layer by layer: no stacked copy
        gen = torch.Generator().manual_seed(int(seed) + 1_000_003)
        for k in range(depth):
            # a separate stream (seed-derived) keeps C, W, B identical to the ReLU net of the same seed
            psi[k].copy_(self.W[k].detach() if gate_init == "copy" else _gaussian(gen, width, width, 2.0 / width))
        self.register_buffer("psi", psi)
        self.register_buffer("gate_C", self.C.detach().clone())  # the gate path's own, frozen C

    @classmethod
    def describe(cls, d_in: int, d_out: int, width: int, depth: int, train_io: bool = False,
                 cache_gates: bool = True) -> NetSpec:
        """The ReLU net's numbers, plus the frozen gate path (C_0, Psi_1..Psi_L) and, with ``cache_gates``, one
        bit per unit and layer per training sample (bytes: L ceil(m / 8), as :class:`GateCache` packs them)."""
        base = ReLUMLP.describe(d_in, d_out, width, depth, train_io)
        m, L = width, depth
        return replace(base, gate_path=L * m * m + m * d_in, gated=True,
                       gate_cache_bytes_per_sample=L * math.ceil(m / 8) if cache_gates else 0,
                       gate_flops_per_sample=2 * d_in * m + 2 * L * m * m)

    @property
    def gate_path_offloaded(self) -> bool:
        return "psi" not in self._buffers

    def offload_gate_path(self, pin: bool = False) -> None:
        """Move Psi and C_0 to the host (page-locked with ``pin``) and unregister them as buffers, so that
        no later ``.to(device)`` brings them back; :meth:`gates` streams them to the data's device."""
        if self.gate_path_offloaded:
            return
        for name in GATE_PATH:
            setattr(self, name, _pinned(self._buffers.pop(name), pin))

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        if self.gate_path_offloaded:  # follow the module's dtype changes (64-true, bf16-true), never its moves
            for name in GATE_PATH:
                t = getattr(self, name)
                dtype = fn(torch.empty(0, dtype=t.dtype)).dtype
                if dtype != t.dtype:
                    setattr(self, name, _pinned(t.to(dtype), t.is_pinned()))
        return out

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.gate_path_offloaded:  # checkpoints hold the gate path wherever it lives (same keys, same order)
            for name in GATE_PATH:
                t = getattr(self, name)
                destination[prefix + name] = t if keep_vars else t.detach()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # checkpoints written before the gate path had its own C: it was C, which did not train then
        if prefix + "gate_C" not in state_dict and prefix + "C" in state_dict:
            state_dict[prefix + "gate_C"] = state_dict[prefix + "C"]
        if self.gate_path_offloaded:  # not buffers now: fill the host copies here
            for name in GATE_PATH:
                key, mine = prefix + name, getattr(self, name)
                if key not in state_dict:
                    if strict:
                        missing_keys.append(key)
                    continue
                theirs = state_dict.pop(key)
                if theirs.shape != mine.shape:
                    error_msgs.append(f"size mismatch for {key}: copying a param with shape {tuple(theirs.shape)} "
                                      f"from checkpoint, the shape in current model is {tuple(mine.shape)}.")
                else:
                    with torch.no_grad():
                        mine.copy_(theirs)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    @classmethod
    def from_relu(cls, relu: ReLUMLP) -> "GReLUMLP":
        """Freeze a ReLU net's current activation pattern (Psi_k <- W_k, same C, W, B): the paper's
        "a ReLU network can also be trained as a GReLU network at any time"."""
        net = cls(relu.d_in, relu.d_out, relu.width, relu.depth, train_io=relu.C.requires_grad, gate_init="copy")
        net = net.to(relu.C.device, relu.C.dtype)
        net.load_state_dict(relu.state_dict(), strict=False)  # C, W, B; the gate path is set next
        with torch.no_grad():
            net.psi.copy_(torch.stack([W.detach() for W in relu.W]))
            net.gate_C.copy_(relu.C.detach())
        return net

    @torch.no_grad()
    def gates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Boolean gates [D_1, ..., D_L] for a batch from the frozen path (C_0, Psi), always computed
        in float32 or wider so that a sample's pattern does not depend on the training precision."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            dtype = torch.promote_types(self.psi.dtype, torch.float32)
            z = torch.relu(gate_matmul(x.to(dtype), self.gate_C, dtype))
            masks = []
            for psi in self.psi:
                z = torch.relu(gate_matmul(z, psi, dtype))
                masks.append(z > 0)
        return masks

    def hidden(self, x: torch.Tensor, masks: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Gated values [h_0, ..., h_L]; negative values pass where a gate is open."""
        masks = self.gates(x) if masks is None else masks
        h = torch.relu(x @ self.C.T)
        out = [h]
        for W, D in zip(self.W, masks):
            h = (h @ W.T) * D
            out.append(h)
        return out

    def forward(self, x: torch.Tensor, masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        masks = self.gates(x) if masks is None else masks
        h = torch.relu(x @ self.C.T)
        for W, D in zip(self.W, masks):
            h = (h @ W.T) * D
        return h @ self.B.T

    @torch.no_grad()
    def trace(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per trained layer: (value before the gate W_k h_{k-1}, the fixed gate D_k)."""
        out, h = [], torch.relu(x @ self.C.T)
        for W, D in zip(self.W, self.gates(x)):
            pre = h @ W.T
            out.append((pre, D))
            h = pre * D
        return out
