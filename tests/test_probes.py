"""Training-dynamics probes: each value checked against a direct computation."""

import csv
import math

import pytest
import torch

from conftest import TINY, compose_cfg
from measure import StepFlops
from lightning_grelu.data import AckleyDataModule
from lightning_grelu.nets import GReLUMLP, ReLUMLP
from lightning_grelu.train import train

DYN = "callbacks=[default,probes,dynamics]"


def rows(run_dir):
    return list(csv.DictReader(open(run_dir / "metrics.csv")))


def test_grelu_patterns_never_move_and_relu_patterns_do(tmp_path):
    g = train(compose_cfg(tmp_path / "g", *TINY, "model=grelu", DYN, "data.n_val=16", "model.lr=3e-4",
                          "trainer.max_epochs=10"))
    r = train(compose_cfg(tmp_path / "r", *TINY, "model=relu", DYN, "data.n_val=16", "model.lr=3e-4",
                          "trainer.max_epochs=10"))
    assert all(float(row["probe/hamming"]) == 0.0 for row in rows(tmp_path / "g"))
    assert g["probe/hamming"] == 0.0
    assert sum(float(row["probe/hamming"]) for row in rows(tmp_path / "r")) > 0  # a high lr moves ReLU patterns
    assert r["status"] == "completed"


def test_hamming_dead_and_pre_mean_match_a_direct_computation(tmp_path):
    run = tmp_path / "run"
    train(compose_cfg(run, *TINY, "model=relu", DYN, "data.n_val=16", "model.lr=3e-4", "trainer.max_epochs=6",
                      "callbacks.model_checkpoint.every_n_epochs=1", "callbacks.model_checkpoint.save_top_k=-1"))
    dm = AckleyDataModule(n=10, d=10, n_val=16)
    dm.setup()
    x = dm.splits["val"].x

    def net_at(epoch):
        sd = torch.load(run / "checkpoints" / f"epoch{epoch:04d}.ckpt", weights_only=False)["state_dict"]
        net = ReLUMLP(10, 1, 200, 2)
        net.load_state_dict({k[4:]: v for k, v in sd.items() if k.startswith("net.")})
        return net

    row = rows(run)[4]
    assert int(row["epoch"]) == 4
    before, after = net_at(3).trace(x), net_at(4).trace(x)
    for k in (1, 2):
        (_, p0), (pre, p1) = before[k - 1], after[k - 1]
        assert float(row[f"probe/hamming_l{k}"]) == pytest.approx((p0 != p1).float().mean().item(), abs=1e-7)
        assert float(row[f"probe/dead_l{k}"]) == pytest.approx((~p1.any(dim=0)).float().mean().item(), abs=1e-7)
        assert float(row[f"probe/pre_mean_l{k}"]) == pytest.approx(pre.mean().item(), rel=1e-5, abs=1e-7)


def test_gradient_temporal_difference_by_hand(tmp_path):
    lr = 3e-5
    train(compose_cfg(tmp_path / "run", *TINY, "model=relu", DYN, f"model.lr={lr}", "trainer.max_epochs=3"))
    dm = AckleyDataModule(n=10, d=10)
    dm.setup()
    x, y = dm.splits["train"].x, dm.splits["train"].y
    net = ReLUMLP(10, 1, 200, 2, seed=0)

    def grads():
        net.zero_grad()
        (0.5 * ((net(x) - y) ** 2).sum()).backward()
        return [W.grad.clone() for W in net.W]

    g0 = grads()
    with torch.no_grad():
        for W, g in zip(net.W, g0):
            W -= lr * g
    g1 = grads()
    want = math.sqrt(sum(((a - b) ** 2).sum().item() for a, b in zip(g1, g0)))
    r = rows(tmp_path / "run")
    assert r[0]["probe/grad_diff"] in ("", None)  # step 0 has no predecessor
    assert float(r[1]["probe/grad_diff"]) == pytest.approx(want, rel=1e-4)  # full batch: epoch 1 = step 1


def test_time_to_target_fires_at_the_right_step_and_can_stop_there(tmp_path):
    train(compose_cfg(tmp_path / "free", *TINY, "trainer.max_epochs=60", "eps=null"))
    sse = [float(r["train/sse"]) for r in rows(tmp_path / "free")]
    k = 25
    eps = (sse[k] + sse[k - 1]) / 2  # reached first after k steps
    s = train(compose_cfg(tmp_path / "t", *TINY, "trainer.max_epochs=60", f"eps={eps}"))
    assert s["steps_to_eps"] == k and s["epochs_to_eps"] == k and s["seconds_to_eps"] > 0
    assert s["steps"] == 60
    stopped = train(compose_cfg(tmp_path / "s", *TINY, "trainer.max_epochs=60", f"eps={eps}", "stop_at_eps=true"))
    assert stopped["steps_to_eps"] == k and stopped["steps"] == k + 1  # that epoch's step was already taken
    rel = train(compose_cfg(tmp_path / "rel", *TINY, "trainer.max_epochs=60", f"eps={eps / sse[0]}",
                            "eps_relative=true"))
    assert rel["steps_to_eps"] == k


def test_probes_off_add_no_forward_passes(tmp_path, monkeypatch):
    calls = {"forward": 0, "trace": 0, "gates": 0}
    for name in calls:
        original = getattr(GReLUMLP, name)

        def counted(self, *a, _orig=original, _name=name, **k):
            calls[_name] += 1
            return _orig(self, *a, **k)
        monkeypatch.setattr(GReLUMLP, name, counted)
    s = train(compose_cfg(tmp_path / "off", *TINY, "model=grelu", "callbacks=none", "trainer.max_epochs=12"))
    # one forward per step, plus the initial and the final evaluation of the training set; the gate path
    # runs twice in all: the initial evaluation (before the cache exists) and the cache's one batch (10 rows):
    # every step and the final evaluation read the cache
    assert s["steps"] == 12 and calls == {"forward": 12 + 2, "trace": 0, "gates": 2}
    calls.update(forward=0, trace=0, gates=0)
    train(compose_cfg(tmp_path / "on", *TINY, "model=grelu", "callbacks=[dynamics]", "trainer.max_epochs=12"))
    # the pattern probe traces the probe set at the start and after each epoch, each trace one gate pass
    assert calls == {"forward": 12 + 2, "trace": 12 + 1, "gates": 2 + 12 + 1}


@pytest.mark.parametrize("args,gates", [
    (["model=relu"], False),
    (["model=grelu"], False),  # cached gates: the step computes none
    (["model=grelu", "model.cache_gates=false"], True),  # recomputed gates: the step computes them too
    (["model=grelu", "model.train_io=true", "data.batch_size=4"], False),  # C and B train: their gradients
    (["model=grelu_to_relu", "trainer.max_epochs=2"], False),
    (["model=relu", "model.inner_steps=3"], False),  # three GD steps on the batch per Lightning step
])
def test_throughput_counts_samples_and_model_flops(tmp_path, args, gates):
    """The net's FLOPs per sample against torch's own count of one real training step, and the probe's model
    TFLOP/s against samples per second times that count."""
    from lightning_grelu.nets.spec import spec_of

    step = StepFlops()
    cfg = compose_cfg(tmp_path / "run", *TINY, "callbacks=[probes]", "trainer.max_epochs=3", *args)
    s = train(cfg, callbacks=[step])
    assert s["status"] == "completed"
    spec, k = spec_of(cfg.model, 10, 1), cfg.model.inner_steps
    model_flops = step.counted - (k * spec.gate_flops_per_sample * step.batch if gates else 0)
    assert model_flops == k * spec.flops_per_sample * step.batch and s["net/flops_per_sample"] == spec.flops_per_sample
    for r in rows(tmp_path / "run"):
        sps = float(r["probe/samples_per_s"])
        assert sps == pytest.approx(k * 10 / float(r["probe/epoch_seconds"]), rel=1e-4)  # 10 samples a GD step
        assert float(r["probe/model_tflops"]) == pytest.approx(sps * model_flops / (k * step.batch) / 1e12, rel=1e-4)


def test_switch_report_and_probes_follow_the_relu_net(tmp_path):
    s = train(compose_cfg(tmp_path / "run", *TINY, "model=grelu_to_relu", DYN, "data.n_val=16", "model.lr=1e-4",
                          "trainer.max_epochs=12", "model.switch_epoch=6"))
    assert s["status"] == "completed"
    r = rows(tmp_path / "run")
    ham = [float(row["probe/hamming"]) for row in r]
    assert all(h == 0 for h in ham[:6])  # GReLU: fixed
    assert sum(ham[6:]) > 0  # after the switch, ReLU patterns (and the gate->ReLU change itself)
    for key in ("switch/sse_before", "switch/sse_after", "switch/rel_jump", "switch/rel_residual_l1",
                "switch/rel_residual_l2", "switch/input_rank_l1", "switch/input_rank_deficit", "switch/exact"):
        assert key in s
    assert s["switch/sse_after"] == pytest.approx(s["switch/sse_before"], rel=1e-3)
