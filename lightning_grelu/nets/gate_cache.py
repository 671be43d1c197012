"""Bit-packed cache of GReLU gate patterns, one row per training sample.

On a fixed (unaugmented) training set a sample's gates never change, so they are computed once
and stored as bits: n * L * m / 8 bytes (CIFAR-10, d6 w10k: 375 MB instead of 3 GB as bool).
Batches carry their sample indices; :meth:`lookup` gathers and unpacks the rows of a batch.
"""

from __future__ import annotations

import torch

_SHIFTS = torch.arange(8, dtype=torch.uint8)


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """(..., m) bool -> (..., ceil(m/8)) uint8, little-endian within each byte."""
    m = mask.shape[-1]
    pad = (-m) % 8
    if pad:
        mask = torch.nn.functional.pad(mask, (0, pad))
    bits = mask.reshape(*mask.shape[:-1], -1, 8).to(torch.uint8)
    return (bits << _SHIFTS.to(mask.device)).sum(-1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, m: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: (..., ceil(m/8)) uint8 -> (..., m) bool."""
    bits = (packed.unsqueeze(-1) >> _SHIFTS.to(packed.device)) & 1
    return bits.reshape(*packed.shape[:-1], -1)[..., :m].bool()


class GateCache:
    """Gates D_1..D_L of every training sample of a GReLU net, bit-packed, on one device."""

    def __init__(self, packed: torch.Tensor, width: int):
        self.packed = packed  # (n, L, ceil(m/8)) uint8
        self.width = width

    @classmethod
    @torch.no_grad()
    def build(cls, net, inputs: torch.Tensor, batch_size: int = 4096) -> "GateCache":
        rows = []
        for start in range(0, inputs.shape[0], batch_size):
            masks = net.gates(inputs[start:start + batch_size])
            rows.append(pack_bits(torch.stack(masks, dim=1)))
        return cls(torch.cat(rows), net.width)

    def __len__(self) -> int:
        return self.packed.shape[0]

    @property
    def nbytes(self) -> int:
        return self.packed.numel()

    def lookup(self, index: torch.Tensor, dtype: torch.dtype | None = None) -> list[torch.Tensor]:
        """Gates of the samples ``index`` as a list of L (batch, m) tensors: bool, or 0/1 in ``dtype``
        (the dtype the values are multiplied in: a bool mask is converted in every multiply, forward and
        backward, 2 L times a step; converted here it is converted once a batch)."""
        masks = unpack_bits(self.packed[index], self.width)
        return list((masks if dtype is None else masks.to(dtype)).unbind(dim=1))
