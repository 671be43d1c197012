"""Random regression data of any shape, for benchmarks and smoke tests: inputs uniform on the unit
sphere, Gaussian targets. No files, no structure: only the sizes matter."""

from __future__ import annotations

import torch

from lightning_grelu.data.ackley import sphere
from lightning_grelu.data.base import Split, TensorDataModule
from lightning_grelu.errors import ConfigError


class SyntheticDataModule(TensorDataModule):
    def __init__(self, n: int = 1024, d_in: int = 3072, d_out: int = 10, data_seed: int = 0, **base):
        for name, v in (("n", n), ("d_in", d_in), ("d_out", d_out)):
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"data.{name} must be an integer >= 1, got {v!r}")
        super().__init__(**base)
        self.n, self.dims, self.data_seed = n, (d_in, d_out), data_seed

    def load(self) -> dict[str, Split]:
        gen = torch.Generator().manual_seed(int(self.data_seed))
        x = sphere(self.n, self.dims[0], gen)  # float64; the base casts
        y = torch.randn(self.n, self.dims[1], generator=gen)
        return {"train": Split(x, y)}
