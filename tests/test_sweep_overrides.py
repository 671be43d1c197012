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


GRELU_SWEEP_FORMS = [  # (sweep, override, the spec key it sets): the README's forms and the issue's
    ("ackley_width_lr", "sweep.space={model.lr: {type: float, low: 1.0e-6, high: 1.0e-3, log: true}}", "space"),
    ("ackley_width_lr", "sweep.space={model.depth: {type: int, low: 1, high: 3}}", "space"),
    ("ackley_frontier", "sweep.frontier.cells={data.n: [8, 16, 32]}", "frontier.cells"),
    ("ackley_frontier", "sweep.frontier.cells={model.depth: [1, 2]}", "frontier.cells"),
    ("ackley_width_lr", "sweep.base=['experiment=ackley_small','model=relu']", "base"),
]


@pytest.mark.parametrize("name,override,key", GRELU_SWEEP_FORMS)
def test_a_whole_space_or_set_of_cells_given_on_the_command_line_replaces_the_specs(tmp_path, name, override, key):
    import yaml
    from hydra.core.override_parser.overrides_parser import OverridesParser

    shown = sweep(f"sweep={name}", override, "--cfg", "job", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-2000:]
    node = yaml.safe_load(shown.stdout)["sweep"]
    for part in key.split("."):
        node = node[part]
    assert node == OverridesParser.create().parse_override(override).value()  # exactly what was given


@pytest.mark.slow
def test_a_replaced_space_and_replaced_cells_are_what_the_trials_run(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    space = sweep("sweep=ackley_width_lr", "sweep.n_trials=2", f"sweep.storage={url}", f"sweep.out_dir={tmp_path}/a",
                  BASE, "sweep.space={model.depth: {type: int, low: 1, high: 3}}", cwd=tmp_path)
    assert space.returncode == 0, space.stderr[-2000:]
    trials = optuna.load_study(study_name="ackley_width_lr", storage=url).get_trials()
    assert len(trials) == 2 and all(set(t.params) == {"model.depth"} for t in trials)  # not merged into the old space
    cells = sweep("sweep=ackley_frontier", "sweep.frontier.cells={model.depth: [1, 2]}", "sweep.frontier.seeds=[0]",
                  "sweep.frontier.width={low: 4, high: 6}", f"sweep.out_dir={tmp_path}/f",
                  "sweep.base=['data=ackley','data.d=8','data.n=4','model=grelu','model.lr_policy=ntk',"
                  "'trainer.max_epochs=20','callbacks=none','eps=1.0e-3','eps_relative=true']", cwd=tmp_path)
    assert cells.returncode == 0, cells.stderr[-2000:]
    rows = (tmp_path / "f" / "frontier.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert "model.depth" in header and "data.n" not in header
    assert sorted(r.split(",")[header.index("model.depth")] for r in rows[1:]) == ["1", "2"]
