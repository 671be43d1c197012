"""The paper's synthetic regression problem (section 6.1): an "Ackley-like" target on the sphere.

Printed formula, with i the sample and d' = 1..d:

    y_i = sum_{d'} x_{i,d-d'} ( log|x_{i,d'}| ( cos x_{i,d'} + x^3 sin x_{i,d'} ) + sqrt|x_{i,d'}| )

It has two typos, and both readings are config choices (``partner`` and ``cube``):
  * x_{i,d-d'} reaches index 0 at d' = d. ``partner=cyclic`` (default) keeps the printed index and
    wraps it, x_{i,0} := x_{i,d}; ``partner=mirror`` reads it as x_{i,d+1-d'} (reversal).
  * the bare x^3: ``cube=self`` (default) reads x_{i,d'}^3, the coordinate the bracket is about;
    ``cube=partner`` reads x_{i,d-d'}^3.
Inputs are uniform on the unit sphere (||x_i|| = 1, as the theory assumes); targets are scalars.
"""

from __future__ import annotations

import torch

from lightning_grelu.data.base import Split, TensorDataModule
from lightning_grelu.errors import ConfigError


def partner_index(d: int, partner: str) -> torch.Tensor:
    """0-based index of the partner coordinate of each d' (0-based k = d'-1)."""
    k = torch.arange(d)
    if partner == "cyclic":  # 1-based d-d', with 0 wrapped to d
        return (d - k - 2) % d
    if partner == "mirror":  # 1-based d+1-d'
        return d - 1 - k
    raise ConfigError(f"data.partner must be 'cyclic' or 'mirror', got {partner!r}")


def ackley_targets(x: torch.Tensor, partner: str = "cyclic", cube: str = "self") -> torch.Tensor:
    """(n, d) -> (n, 1) targets, in float64 for reproducibility across devices."""
    x = x.to(torch.float64)
    p = x[:, partner_index(x.shape[1], partner)]
    if cube not in ("self", "partner"):
        raise ConfigError(f"data.cube must be 'self' or 'partner', got {cube!r}")
    c = x if cube == "self" else p
    ax = x.abs()
    terms = p * (torch.log(ax) * (torch.cos(x) + c ** 3 * torch.sin(x)) + torch.sqrt(ax))
    return terms.sum(dim=1, keepdim=True)


def sphere(n: int, d: int, gen: torch.Generator) -> torch.Tensor:
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


class AckleyDataModule(TensorDataModule):
    def __init__(self, n: int = 100, d: int = 200, n_val: int = 0, n_test: int = 0, data_seed: int = 0,
                 partner: str = "cyclic", cube: str = "self", **base):
        for name, v in (("n", n), ("d", d)):
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"data.{name} must be an integer >= 1, got {v!r}")
        for name, v in (("n_val", n_val), ("n_test", n_test)):
            if not isinstance(v, int) or v < 0:
                raise ConfigError(f"data.{name} must be an integer >= 0, got {v!r}")
        partner_index(1, partner)  # validate early
        if cube not in ("self", "partner"):
            raise ConfigError(f"data.cube must be 'self' or 'partner', got {cube!r}")
        super().__init__(**base)
        self.n, self.d, self.n_val, self.n_test = n, d, n_val, n_test
        self.data_seed, self.partner, self.cube = data_seed, partner, cube

    def load(self) -> dict[str, Split]:
        # Each split has its own stream, so the training set depends only on (n, d, data_seed).
        sizes = {"train": self.n, "val": self.n_val, "test": self.n_test}
        splits = {}
        for offset, (name, size) in enumerate(sizes.items()):
            if size:
                x = sphere(size, self.d, torch.Generator().manual_seed(int(self.data_seed) * 3 + offset))
                splits[name] = Split(x, ackley_targets(x, self.partner, self.cube))  # float64; the base casts
        return splits
