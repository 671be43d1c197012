"""Every experiment preset composes with the values it promises; the CPU ones run, shortened."""

import csv

import pytest

from conftest import compose_cfg
from lightning_grelu.config_check import group_options, validate
from lightning_grelu.train import train
from fixtures import write_fashion_mnist


@pytest.mark.parametrize("name", group_options("experiment"))
def test_every_experiment_composes_and_validates(tmp_path, name):
    cfg = compose_cfg(tmp_path / "run", f"experiment={name}")
    validate(cfg)
    assert cfg.experiment_name == name


def test_paper_sized_presets_hold_the_paper_settings(tmp_path):
    f2b = compose_cfg(tmp_path / "a", "experiment=fig2b_sgemm")
    assert (f2b.data.name, f2b.model.width, f2b.model.depth, f2b.model.lr) == ("sgemm", 4096, 10, 1e-4)
    assert "grad_diff" in f2b.callbacks and "activation_patterns" in f2b.callbacks
    f3 = compose_cfg(tmp_path / "b", "experiment=fig3_cifar10")
    switch = f3.model.switch_epoch if f3.model.switch_epoch is not None else f3.trainer.max_epochs // 2  # null: half
    assert (f3.model.name, switch, f3.trainer.max_epochs) == ("grelu_to_relu", 40, 80)
    assert f3.data.augment and f3.data.test_every_epoch
    twin = compose_cfg(tmp_path / "b", "experiment=fig3_cifar10", "model=relu")  # the ReLU baseline, as fig3 runs it
    assert twin.model.name == "relu" and "switch_epoch" not in twin.model and twin.model.width == 10000
    theory = compose_cfg(tmp_path / "c", "experiment=ackley_theory_width")
    assert theory.model.width == theory.data.n ** 2 * theory.model.depth == 40000


@pytest.mark.parametrize("name,model", [("fig2b_ackley_small", "grelu"), ("fig2c_ackley_small", "relu")])
def test_small_dynamics_presets_run(tmp_path, name, model):
    s = train(compose_cfg(tmp_path / "run", f"experiment={name}", f"model={model}", "trainer.max_epochs=20"))
    assert s["status"] == "completed" and "probe/hamming" in s and "probe/grad_diff" in s
    if model == "grelu":
        assert s["probe/hamming"] == 0.0


def test_small_fig3_preset_logs_test_loss_every_epoch(tmp_path):
    root = write_fashion_mnist(tmp_path / "fm", n=80, n_test=20)
    s = train(compose_cfg(tmp_path / "run", "experiment=fig3_fmnist_small", f"data.data_dir={root}",
                          "data.limit_train=64", "data.batch_size=32", "model.width=128", "trainer.max_epochs=4"))
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert len(rows) == 4 and all(r["test/sse"] not in ("", None) for r in rows)
    assert s["switch/epoch"] == 2 and s["test/acc"] is not None
