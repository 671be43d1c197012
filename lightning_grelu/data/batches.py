"""Batches drawn by index from tensors that already sit on the training device.

No DataLoader workers and no per-sample Python: each step is one gather. Every batch is
(x, y, index), where ``index`` is the sample's row in its split, so that fixed GReLU gates can be
cached per sample. Under DDP the global batch is split across ranks (rank r takes rows r::world of
each global batch), so the number of steps and the data seen per step do not depend on the
number of devices.
"""

from __future__ import annotations

import math
from typing import Callable

import torch


class TensorBatches:
    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int | None, *, shuffle: bool, seed: int = 0,
                 rank: int = 0, world_size: int = 1, epoch: Callable[[], int] = lambda: 0,
                 featurize: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.x, self.y = x, y
        self.featurize = featurize  # e.g. uint8 images -> (augmented) standardized flat floats
        self.n = x.shape[0]
        self.batch_size = self.n if batch_size is None else min(int(batch_size), self.n)
        self.shuffle, self.seed = shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = epoch  # read at each pass, so a resumed run draws the same permutation
        self._fixed: list[torch.Tensor] | None = None

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        if self.shuffle and self.batch_size < self.n:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.epoch()))
            indices = self._split(torch.randperm(self.n, generator=gen).to(self.x.device))
        else:  # a fixed order: the same index tensors every epoch, so a GReLU keeps a batch's unpacked gates
            if self._fixed is None:
                self._fixed = self._split(torch.arange(self.n, device=self.x.device))
            indices = self._fixed
        for idx in indices:
            x = self.x[idx]
            yield (self.featurize(x) if self.featurize else x), self.y[idx], idx

    def _split(self, order: torch.Tensor) -> list[torch.Tensor]:
        return [order[start:start + self.batch_size][self.rank::self.world_size]
                for start in range(0, self.n, self.batch_size)]
