"""What grelu-sweep's overrides do: a study stays bound to the protocol its trials ran with, and the
README's forms of overriding the search space and the frontier's cells work (a whole space replaces the
old one)."""

import optuna
import pytest

from test_sweeps import sweep

BASE = "sweep.base=['experiment=ackley_small','callbacks=none','trainer.max_epochs=2','data.n=6']"


@pytest.mark.slow
def test_a_changed_base_on_an_existing_study_is_refused_naming_the_key_and_harmless_keys_are_accepted(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    args = ["sweep=ackley_width_lr", "sweep.n_trials=1", f"sweep.storage={url}", f"sweep.out_dir={tmp_path}/out"]
    first = sweep(*args, BASE, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    longer = BASE.replace("trainer.max_epochs=2", "trainer.max_epochs=3")
    refused = sweep(*args[:1], "sweep.n_trials=2", *args[2:], longer, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr[-2000:]
    line, = refused.stderr.strip().splitlines()
    assert "trainer.max_epochs" in line and "2 -> 3" in line and "sweep.name=ackley_width_lr_2" in line
    study = optuna.load_study(study_name="ackley_width_lr", storage=url)
    assert len(study.get_trials()) == 1 and study.user_attrs["n_trials"] == 1  # nothing added
    # where the records go and what is logged do not change the science: the study goes on
    same = sweep(*args, BASE.replace("]", ",'logger=csv']"), "sweep.trial_overrides=['trainer.devices=1']", cwd=tmp_path)
    assert same.returncode == 0 and "nothing is waiting" in same.stdout, same.stderr[-2000:]
    other = sweep(*args, BASE, "sweep.objectives=[{metric: train/mse, direction: minimize}]", cwd=tmp_path)
    assert other.returncode == 2 and "train/mse" in other.stderr and len(other.stderr.strip().splitlines()) == 1
