"""The Ackley-like target, checked on hand-computed values for both readings of the typos."""

import math

import pytest
import torch

from lightning_grelu.data import AckleyDataModule, ackley_targets
from lightning_grelu.errors import MachineError, ParameterError


def term(p, x, c):
    return p * (math.log(abs(x)) * (math.cos(x) + c ** 3 * math.sin(x)) + math.sqrt(abs(x)))


X = [0.5, -0.3, 0.2]  # d = 3, 1-based x1, x2, x3


def test_cyclic_partner_by_hand():
    # d'=1 -> x_{3-1}=x2 ; d'=2 -> x1 ; d'=3 -> x_0 wrapped to x3
    want = term(X[1], X[0], X[0]) + term(X[0], X[1], X[1]) + term(X[2], X[2], X[2])
    got = ackley_targets(torch.tensor([X], dtype=torch.float64), partner="cyclic", cube="self").item()
    assert got == pytest.approx(want, rel=1e-12)


def test_mirror_partner_and_cube_of_partner_by_hand():
    # mirror: d'=1 -> x3, d'=2 -> x2, d'=3 -> x1 ; cube taken of the partner
    want = term(X[2], X[0], X[2]) + term(X[1], X[1], X[1]) + term(X[0], X[2], X[0])
    got = ackley_targets(torch.tensor([X], dtype=torch.float64), partner="mirror", cube="partner").item()
    assert got == pytest.approx(want, rel=1e-12)


def test_datamodule_splits_sphere_and_batches_carry_indices():
    dm = AckleyDataModule(n=12, d=5, n_val=3, n_test=2, data_seed=4, batch_size=5)
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 12, "val": 3, "test": 2}
    assert torch.allclose(dm.splits["train"].x.norm(dim=1), torch.ones(12))
    assert (dm.d_in, dm.d_out) == (5, 1)
    seen = []
    for x, y, idx in dm.train_dataloader():
        assert torch.equal(x, dm.splits["train"].x[idx]) and torch.equal(y, dm.splits["train"].y[idx])
        seen += idx.tolist()
    assert sorted(seen) == list(range(12))
    again = AckleyDataModule(n=12, d=5, data_seed=4)
    again.setup()
    assert torch.equal(again.splits["train"].x, dm.splits["train"].x)  # the data are fixed by data_seed


@pytest.mark.parametrize("kwargs,match", [({"n": 0}, "data.n"), ({"d": -1}, "data.d"),
                                          ({"partner": "left"}, "partner"), ({"cube": "x"}, "cube"),
                                          ({"batch_size": 0}, "batch_size")])
def test_bad_settings(kwargs, match):
    """A bad data setting is the job's parameter, never the machine's (a sweep fails that trial and goes on)."""
    with pytest.raises(ParameterError, match=match) as err:
        AckleyDataModule(**kwargs)
    assert not isinstance(err.value, MachineError)
