"""W&B: readable run names, tags, no summary column that repeats a config column, and the Optuna trial
number in a sweep trial's config."""

from conftest import compose_cfg

from lightning_grelu.loggers import publish_summary


def test_wandb_run_names_are_readable_and_runs_are_tagged(tmp_path):
    cfg = compose_cfg(tmp_path / "run", "logger=wandb", "model.lr=1.2296071107325715e-05", "experiment=ackley_small")
    assert cfg.logger.wandb.name == "grelu-w200-d2-lr1.23e-05-s0"
    assert list(cfg.logger.wandb.tags) == ["grelu", "ackley", "ackley_small"]


def test_the_summary_does_not_repeat_config_columns():
    class WandbLogger:  # the part of Lightning's WandbLogger publish_summary uses
        def __init__(self):
            self.experiment = type("Run", (), {"summary": {}})()

    lg = WandbLogger()
    publish_summary([lg], {"status": "completed", "width": 200, "depth": 2, "seed": 0, "eps": 1e-3, "lr": 3e-5,
                           "train/sse": 0.5, "steps": 10})
    assert set(lg.experiment.summary) == {"status", "lr", "train/sse", "steps"}  # width lives in model.width


def test_a_sweep_trial_config_names_its_study_and_trial_number(tmp_path):
    cfg = compose_cfg(tmp_path / "run", "sweep_trial={study: ackley_grid, number: 7}")
    assert cfg.sweep_trial.study == "ackley_grid" and cfg.sweep_trial.number == 7
