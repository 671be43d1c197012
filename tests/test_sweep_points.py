"""Every sweep trial is a new point: 3 workers started together on one study, then a worker started later
that grows it, draw distinct parameter sets (random and TPE samplers), and the same sweep.seed gives the
same set of points again, whatever the storage (SQLite, a real PostgreSQL server) and whichever worker
drew which trial."""

import optuna
import pytest
from optuna.trial import TrialState

from test_sweeps import sweep

TINY = "sweep.base=['experiment=ackley_small','callbacks=none','trainer.max_epochs=2','data.n=6']"


def points(url: str, storage, out, sampler: str) -> list[tuple]:
    """3 workers at once on 3 trials (each draws one, at the same moment), then one more worker with
    sweep.n_trials=5 (a restart that grows the study): the study's points."""
    args = ["sweep=ackley_width_lr", f"sweep.sampler={sampler}", f"sweep.storage={url}", f"sweep.out_dir={out}", TINY]
    workers = [sweep(*args, "sweep.n_trials=3", cwd=out.parent, wait=False) for _ in range(3)]
    outs = [w.communicate(timeout=600) for w in workers]
    assert all(w.returncode == 0 for w in workers), "\n".join(o[1][-2000:] for o in outs)
    later = sweep(*args, "sweep.n_trials=5", cwd=out.parent)
    assert later.returncode == 0, later.stderr[-2000:]
    trials = optuna.load_study(study_name="ackley_width_lr", storage=storage).get_trials()
    assert len(trials) == 5 and all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    return [(t.params["model"], t.params["model.width"], t.params["model.lr"]) for t in trials]


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_workers_and_a_restart_draw_distinct_points_reproducible_from_the_seed(tmp_path, postgres, sampler):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sqlite_url = f"sqlite:///{tmp_path}/a/s.db"
    on_sqlite = points(sqlite_url, sqlite_url, tmp_path / "a" / "out", sampler)
    on_postgres = points(postgres, postgres.replace("postgresql://", "postgresql+psycopg://"), tmp_path / "b" / "out",
                         sampler)
    assert len(set(on_sqlite)) == 5, f"repeated points on SQLite: {sorted(on_sqlite)}"
    assert len(set(on_postgres)) == 5, f"repeated points on PostgreSQL: {sorted(on_postgres)}"
    assert set(on_sqlite) == set(on_postgres)  # the same seed, run twice: the same points


def test_tpe_past_its_start_up_trials_draws_distinct_points_in_two_workers(tmp_path):
    """Beyond the random start-up phase (TPE's first 10 trials) TPE reads the study's history: two workers
    (two samplers built from the same sweep.seed, as two processes build them) asking in turn still get a new
    point per trial, and the same seed gives the same points again."""
    from lightning_grelu.sweeps.sampling import make_sampler
    from lightning_grelu.sweeps.spec import SweepSpec

    def run(name: str) -> list[tuple]:
        storage = f"sqlite:///{tmp_path}/{name}.db"
        spec = SweepSpec(name=name, base=[], space=[], objectives=[("train/sse", "minimize")], sampler="tpe",
                         n_trials=16, storage=storage, out_dir=str(tmp_path), seed=3)
        workers = [optuna.create_study(study_name=name, storage=storage, sampler=make_sampler(spec),
                                       load_if_exists=True) for _ in range(2)]
        got = []
        for i in range(16):
            trial = workers[i % 2].ask()
            lr = trial.suggest_float("model.lr", 1e-6, 1e-2, log=True)
            width = trial.suggest_int("model.width", 8, 512, log=True)
            workers[i % 2].tell(trial, (lr * 1e3 - 1) ** 2 + (width / 100 - 1) ** 2)
            got.append((width, lr))
        return got

    first, again = run("a"), run("b")
    assert len(set(first)) == 16, sorted(first)
    assert first == again
