"""A budget of T steps is T GD steps, checked at every step: steps_to_eps and steps_to/<target> are exact
under model.inner_steps=K (against a plain loop of the same net and data), and the final iterate counts."""

import json

import torch

from conftest import compose_cfg
from lightning_grelu.train import build_data, train

BASE = ["data=synthetic", "data.n=10", "data.d_in=6", "data.d_out=1", "model=grelu", "model.width=30",
        "model.depth=2", "model.lr_policy=ntk", "callbacks=none", "trainer.precision=64-true",
        "eps=1e-3", "eps_relative=true", "targets=[1e-1,1e-2]"]


def plain_first_steps(cfg, steps, targets, lr):
    """First step reaching each relative target, by full-batch GD in a plain loop (autograd)."""
    from lightning_grelu.nets.mlp import GReLUMLP

    dm = build_data(cfg)
    x, y = dm.splits["train"].x.double(), dm.splits["train"].y.double()
    net = GReLUMLP(x.shape[1], y.shape[1], 30, 2, seed=cfg.seed).double()
    gates = net.gates(x)
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=lr)
    first, sse0 = {}, None
    for t in range(steps + 1):
        loss = 0.5 * ((net(x, gates) - y) ** 2).sum()
        sse0 = float(loss) if sse0 is None else sse0
        for eps in targets:
            if eps not in first and float(loss) <= eps * sse0:
                first[eps] = t
        if t == steps:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    return first


def test_steps_to_targets_are_exact_under_inner_steps(tmp_path):
    cfg = compose_cfg(tmp_path / "run", *BASE, "model.inner_steps=10", "trainer.max_epochs=30")
    summary = train(cfg)
    first = plain_first_steps(cfg, 300, [1e-1, 1e-2, 1e-3], summary["lr"])
    assert first[1e-3] % 10 != 0 or first[1e-2] % 10 != 0  # the test means something: not on an epoch edge
    assert summary["steps_to_eps"] == first[1e-3]
    assert summary["steps_to/1e-01"] == first[1e-1] and summary["steps_to/1e-02"] == first[1e-2]
    assert summary["verdict"] == "converged" and summary["budget_steps"] == 300


def test_the_final_iterate_of_the_budget_is_checked(tmp_path):
    """With T = first step reaching eps, the run reaches it exactly at its last iterate (after the last step)."""
    lr = train(compose_cfg(tmp_path / "lr", *BASE, "trainer.max_epochs=1"))["lr"]  # the ntk step of this net
    T = plain_first_steps(compose_cfg(tmp_path / "p", *BASE), 300, [1e-3], lr)[1e-3]
    summary = train(compose_cfg(tmp_path / "run", *BASE, "model.inner_steps=1", f"trainer.max_epochs={T}"))
    assert summary["steps"] == T and summary["steps_to_eps"] == T
    short = train(compose_cfg(tmp_path / "short", *BASE, f"trainer.max_epochs={T - 1}"))
    assert short["steps_to_eps"] is None and short["verdict"] in ("unfinished", "stalled")
    assert json.loads((tmp_path / "short" / "summary.json").read_text())["steps_to_eps"] is None
