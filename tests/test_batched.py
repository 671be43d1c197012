"""Many small nets trained together equal each net trained alone: against a plain autograd loop (padding, mixed
ReLU and GReLU, per-net stopping) and against grelu-train itself, in float64."""

import csv
import math

import pytest
import torch

from conftest import compose_cfg
from lightning_grelu.nets.mlp import GReLUMLP, ReLUMLP
from lightning_grelu.scan import runner
from lightning_grelu.scan.batched import Net, train_together


def problem(kind, n, m, depth=2, d=5, dy=2, seed=0, lr=None, stop=None):
    """A net and its data; lr None: 1 / lambda_max of its NTK at init (stable)."""
    gen = torch.Generator().manual_seed(100 + seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    x /= x.norm(dim=1, keepdim=True)
    y = torch.randn(n, dy, generator=gen, dtype=torch.float64)
    net = (GReLUMLP if kind == "grelu" else ReLUMLP)(d, dy, m, depth, seed=seed).double()
    gates = net.gates(x) if kind == "grelu" else None
    if lr is None:
        from lightning_grelu.nets.ntk import mlp_gram

        lr = 1 / float(torch.linalg.eigvalsh(mlp_gram(x, net.C.detach(), [w.detach() for w in net.W], net.B.detach(), gates))[-1])
    return net, Net(x, y, net.C.detach(), [w.detach().clone() for w in net.W], net.B.detach(), lr, gates,
                    stop_below=stop)


def same(a: list[float], b: list[float]) -> bool:
    """Two loss curves equal to float64 round-off (1e-10 of the initial loss; float32 would differ by ~1e-7)."""
    return len(a) >= len(b) and max(abs(x - y) for x, y in zip(a, b)) <= 1e-10 * b[0]


def alone(net, x, y, lr, steps):
    """Plain full-batch GD with autograd: SSE of every iterate and the final weights."""
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=lr)
    losses = []
    for t in range(steps + 1):
        loss = 0.5 * ((net(x) - y) ** 2).sum()
        losses.append(loss.item())
        if t == steps:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    return losses, [w.detach() for w in net.W]


def test_a_batch_of_different_sizes_and_kinds_equals_each_net_alone():
    specs = [("relu", 12, 7, 0, None), ("grelu", 9, 11, 1, None), ("grelu", 12, 4, 2, None), ("relu", 5, 11, 3, None)]
    pairs = [problem(kind, n, m, seed=s, lr=lr) for kind, n, m, s, lr in specs]
    outs = train_together([p for _, p in pairs], 40, dtype=torch.float64, keep_weights=True)
    for (net, p), out in zip(pairs, outs):
        losses, W = alone(net, p.x, p.y, p.lr, 40)
        assert out.steps == 40 and out.stopped == "budget"
        assert same(out.sse, losses)
        assert all(torch.allclose(a, b, rtol=0, atol=1e-10) for a, b in zip(out.W, W))


def test_a_nets_iterates_are_bitwise_the_same_whatever_else_is_in_its_batch():
    """Float32, as the scans train: a ReLU net's SSE at every step and its final weights do not depend on its
    batch-mates (wider, with more samples, GReLU, ones that stop early and leave the batch) or on the number
    of threads, bit for bit. Padding to the batch's widest net changed the 5th digit after 3,000 steps, and
    with it a borderline verdict, so a scan's table depended on which worker claimed what."""
    def net(kind, n, m, seed, stop=None):
        p = problem(kind, n, m, depth=4, d=2, dy=1, seed=seed, lr=0.02, stop=stop)[1]
        return Net(p.x.float(), p.y.float(), p.C.float(), [w.float() for w in p.W], p.B.float(), p.lr,
                   p.gates, stop_below=stop)

    mates = {"alone": [], "wider": [net("relu", 8, 27, 1)], "near": [net("relu", 8, 12, 2)],
             "more samples": [net("relu", 16, 10, 3)],
             "leave early": [net("relu", 8, 11, 4, stop=0.5), net("grelu", 8, 14, 5, stop=0.5)]}
    threads = torch.get_num_threads()
    got = {}
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            for name, others in mates.items():
                out = train_together([net("relu", 8, 10, 0), *others], 300, keep_weights=True)[0]
                got[(t, name)] = (out.sse, out.W)
    finally:
        torch.set_num_threads(threads)
    sse, W = got[(1, "alone")]
    assert sse[-1] < 0.9 * sse[0]  # it trained
    for key, (s, w) in got.items():
        assert s == sse and all(torch.equal(a, b) for a, b in zip(w, W)), key


def test_a_net_that_reaches_its_target_stops_there_and_the_others_go_on():
    net, p = problem("grelu", 8, 30, seed=1)
    full, _ = alone(net, p.x, p.y, p.lr, 60)
    assert all(b < a for a, b in zip(full, full[1:]))  # a decreasing loss: step 25 is the first below full[25]
    fast, slow = problem("grelu", 8, 30, seed=1, stop=(full[24] + full[25]) / 2), problem("relu", 8, 12, seed=2)
    outs = train_together([fast[1], slow[1]], 60, dtype=torch.float64, keep_weights=True)
    assert outs[0].stopped == "target" and outs[0].steps == 25 and len(outs[0].sse) == 26
    _, W25 = alone(fast[0], fast[1].x, fast[1].y, fast[1].lr, 25)
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(outs[0].W, W25))  # frozen where it stopped
    losses, W = alone(slow[0], slow[1].x, slow[1].y, slow[1].lr, 60)
    assert outs[1].steps == 60 and same(outs[1].sse, losses)


def test_a_diverging_net_is_stopped_without_touching_the_others():
    bad, good = problem("relu", 8, 12, seed=3, lr=5.0), problem("grelu", 8, 12, seed=4)
    bad[1].diverge_above = 10 * 0.5 * float(((bad[0](bad[1].x) - bad[1].y) ** 2).sum())
    outs = train_together([bad[1], good[1]], 30, dtype=torch.float64)
    assert outs[0].stopped == "diverged" and outs[0].steps < 30
    losses, _ = alone(good[0], good[1].x, good[1].y, good[1].lr, 30)
    assert same(outs[1].sse, losses)


BASE = ["data=synthetic", "data.n=12", "data.d_in=6", "data.d_out=2", "model.width=9", "model.depth=2",
        "model.lr_policy=ntk", "trainer.max_epochs=40", "trainer.precision=64-true", "callbacks=[default]",
        "eps=1e-3", "eps_relative=true", "targets=[1e-2,1e-4]"]


@pytest.mark.parametrize("model", ["relu", "grelu"])
def test_batched_iterates_equal_grelu_trains_in_float64(tmp_path, model):
    from lightning_grelu.train import train

    cfg = compose_cfg(tmp_path / "run", *BASE, f"model={model}")
    summary = train(cfg)
    sse = [float(r["train/sse"]) for r in csv.DictReader(open(tmp_path / "run" / "metrics.csv"))]
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    p = runner.prepare(compose_cfg(tmp_path / "b", *BASE, f"model={model}"), tmp_path / "b", runner.DataCache())
    assert p.net.lr == pytest.approx(summary["lr"], rel=1e-12)  # the same ntk step (exact eigenvalue either way)
    out = train_together([p.net], 40, dtype=torch.float64, keep_weights=True)[0]
    assert len(sse) == 40 and same(out.sse, sse)  # every iterate
    assert out.sse[-1] == pytest.approx(summary["train/sse"], rel=1e-12)
    for k in range(2):
        assert torch.allclose(out.W[k], ckpt[f"net.W.{k}"], rtol=0, atol=1e-12)


def test_a_diverged_ntk_run_is_retried_once_at_half_the_step_and_says_so(tmp_path):
    """A one-layer GReLU's loss is quadratic in W: 3 / lambda_max (beyond 2 / lambda_max) diverges, 1.5 / lambda_max
    does not."""
    cfg = compose_cfg(tmp_path / "r", "data=synthetic", "data.n=10", "data.d_in=6", "data.d_out=1", "model=grelu",
                      "model.width=6", "model.depth=1", "model.lr_policy=ntk", "model.lr_scale=3.0", "trainer.max_epochs=200",
                      "callbacks=none", "eps=1e-4", "eps_relative=true")
    p = runner.prepare(cfg, tmp_path / "r", runner.DataCache())
    first = p.net.lr
    out = runner.run([p])[0]
    summary = runner.summary_of(p, out, [200])
    assert summary["lr_retries"] == 1 and summary["lr_diverged"] == [first]
    assert summary["lr"] == pytest.approx(first / 2) and summary["lr_scale"] == 1.5 and summary["status"] == "completed"


def test_float32_resolves_the_smallest_target_as_float64_does(tmp_path):
    """The atlas runs in float32 and reports 1e-8 x the initial SSE: the steps to it agree with float64's."""
    got = {}
    for precision in ("32-true", "64-true"):
        cfg = compose_cfg(tmp_path / precision, "data=synthetic", "data.n=16", "data.d_in=8", "data.d_out=1",
                          "model=grelu", "model.width=40", "model.lr_policy=ntk", "trainer.max_epochs=3000",
                          f"trainer.precision={precision}", "callbacks=none", "eps=1e-4", "eps_relative=true",
                          "targets=[1e-8]", "stop_at_eps=true")
        p = runner.prepare(cfg, tmp_path / precision, runner.DataCache())
        got[precision] = runner.summary_of(p, runner.run([p])[0], [3000])["steps_to/1e-08"]
    assert got["64-true"] is not None and got["32-true"] is not None
    assert abs(got["32-true"] - got["64-true"]) <= 0.02 * got["64-true"]


def test_the_engine_reports_the_model_flops_torch_counts_in_a_real_step_of_each_net():
    """Each net's model FLOPs (``Outcome.flops``, the scan records' ``model_flops``): its GD steps times what
    FlopCounterMode counts in one real autograd step of that net (the engine's own kernels skip the frozen C)."""
    from torch.utils.flop_counter import FlopCounterMode

    nets = [problem("relu", 7, 12), problem("grelu", 9, 16, seed=1)]
    outcomes = train_together([p for _, p in nets], 4)
    for (net, p), out in zip(nets, outcomes):
        opt = torch.optim.SGD([w for w in net.parameters() if w.requires_grad], lr=p.lr)
        with FlopCounterMode(display=False) as counter:
            pred = net(p.x, p.gates) if p.gates is not None else net(p.x)
            (0.5 * ((pred - p.y) ** 2).sum()).backward()
            opt.step()
        assert out.steps == 4 and out.flops == 4 * counter.get_total_flops()


def test_a_claim_takes_one_batch_and_leaves_the_rest_to_other_workers():
    """The engine claims what one batch can hold (runner.first_batch): nets padded to at most 4x their own flops,
    at most max_nets, within the byte cap; the wider rest waits for another worker."""
    from lightning_grelu.scan.runner import first_batch

    widths = [200, 200, 400, 577, 577, 1665, 1665]
    sizes = [(4, 100, w) for w in widths]
    assert first_batch(sizes, 64) == 3  # 577^2 > 4 x 200^2: the 577s start the next batch
    assert first_batch(sizes[3:], 64) == 2 and first_batch(sizes[5:], 64) == 2
    assert first_batch(sizes[:2], 1) == 1  # max_nets
    assert first_batch([(4, 100, 1665)] * 10, 64, max_bytes=3 * 3 * 4 * 1665 ** 2 * 8) == 2  # the byte cap
    assert first_batch([(2, 10, 8)], 64) == 1
