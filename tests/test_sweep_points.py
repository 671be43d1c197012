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
