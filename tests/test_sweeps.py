"""grelu-sweep: exact trial counts with concurrent workers, resume after a killed worker, failed
trials, and bad specs that fail before any trial."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

GRELU_SWEEP = str(Path(sys.executable).parent / "grelu-sweep")
FAST = "sweep.base=['experiment=ackley_small','callbacks=none','trainer.max_epochs=5']"


def sweep(*args, cwd, wait=True):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    cmd = [GRELU_SWEEP, *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def load(storage_url, name):
    if storage_url.startswith("journal://"):
        path = storage_url[len("journal://"):]
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    else:
        storage = storage_url
    return optuna.load_study(study_name=name, storage=storage)


def kill_mid_trial(worker: subprocess.Popen, running) -> bool:
    """SIGKILL a worker's process group (a lost node); its trial process stops on its parent-death signal.
    Returns whether that trial had finished its run before the kill reached it: then the study is told
    the finished result (attempts stays 1), otherwise the trial goes back to the queue (attempts 2).
    Which one happens is a race the worker cannot prevent (the summary is written a moment before
    the worker tells the study), so a test must not assume one."""
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    pid = running.user_attrs.get("trial_pid")
    t0 = time.monotonic()
    while pid and Path(f"/proc/{pid}").exists() and time.monotonic() - t0 < 120:
        time.sleep(0.1)
    try:
        status = json.loads((Path(running.user_attrs["run_dir"]) / "summary.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        status = None
    return status in ("completed", "diverged")


def four_workers_share_one_grid_exactly(url: str, tmp_path: Path, load_study) -> None:
    """4 workers, 8 grid points: each point runs once, the count is exact, and every trial's run record
    is whole and is that trial's own (its config holds the trial's parameters)."""
    import json

    import yaml

    args = ["sweep=ackley_grid", "sweep.n_trials=8", f"sweep.storage={url}", f"sweep.out_dir={tmp_path}/out", FAST]
    workers = [sweep(*args, cwd=tmp_path, wait=False) for _ in range(4)]
    outs = [w.communicate(timeout=600) for w in workers]
    assert all(w.returncode == 0 for w in workers), "\n".join(o[1][-2000:] for o in outs)
    trials = load_study().get_trials()
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 8  # no grid point twice, none lost
    ran = sum(int(o[0].split("ran ")[1].split(" completed")[0]) for o in outs)
    assert ran == 8  # nothing ran twice
    for t in trials:
        run_dir = Path(t.user_attrs["run_dir"])
        summary = json.loads((run_dir / "summary.json").read_text())
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert summary["status"] == "completed" and summary["train/sse"] == pytest.approx(t.values[0])
        assert (config["model"]["name"], config["model"]["width"], config["seed"]) == (
            t.params["model"], t.params["model.width"], t.params["seed"])
        assert (run_dir / "metrics.csv").read_text().count("\n") == 6  # header + 5 epochs


def claims_race(url: str, tmp_path: Path, n: int = 150, workers: int = 4) -> None:
    """Workers claiming as fast as they can (no training between claims) each get distinct trials and
    together get every one: the WAITING -> RUNNING step is atomic on this storage."""
    import json

    from lightning_grelu.sweeps.storage import make_storage

    study = optuna.create_study(study_name="race", storage=make_storage(url, retry_dead=False))
    for _ in range(n):
        study.enqueue_trial({}, skip_if_exists=False)
    script = Path(__file__).with_name("claim_race.py")
    outs = [tmp_path / f"claimed{i}.json" for i in range(workers)]
    procs = [subprocess.Popen([sys.executable, str(script), url, "race", str(o)], stderr=subprocess.PIPE, text=True)
             for o in outs]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(errs)
    claimed = [i for o in outs for i in json.loads(o.read_text())]
    assert len(claimed) == len(set(claimed)) == n, f"{len(claimed) - len(set(claimed))} trials claimed twice"


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_concurrent_claims_never_hand_one_trial_to_two_workers(tmp_path, kind):
    claims_race(f"sqlite:///{tmp_path}/s.db" if kind == "sqlite" else f"journal://{tmp_path}/s.log", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_four_concurrent_workers_run_each_grid_point_exactly_once(tmp_path, kind):
    url = f"sqlite:///{tmp_path}/s.db" if kind == "sqlite" else f"journal://{tmp_path}/s.log"
    four_workers_share_one_grid_exactly(url, tmp_path, lambda: load(url, "ackley_grid"))


@pytest.mark.slow
def test_killed_worker_loses_nothing_completed_and_a_restart_resumes(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    args = ["sweep=ackley_grid", "sweep.n_trials=3", f"sweep.storage={url}", f"sweep.out_dir={tmp_path}/out", FAST]
    first = sweep(*args, cwd=tmp_path, wait=False)
    deadline, running = time.time() + 300, []
    while time.time() < deadline and not running:  # one completed trial and a second one running
        try:
            trials = load(url, "ackley_grid").get_trials()
        except Exception:
            trials = []
        if any(t.state == TrialState.COMPLETE for t in trials):
            running = [t for t in trials if t.state == TrialState.RUNNING and "trial_pid" in t.user_attrs]
        time.sleep(0.3)
    assert running, "the worker never started a second trial"
    finished_first = kill_mid_trial(first, running[0])  # the worker and its trial process, as a lost node
    at_kill = load(url, "ackley_grid").get_trials()  # the dead worker changes nothing from here on
    done_before = [t for t in at_kill if t.state == TrialState.COMPLETE]
    # The trials in the dead worker's hands. Usually only running[0]; but when running[0] finished between the
    # last poll and the kill, the worker may already have claimed the next one, which is then in hand too.
    in_hand = {t.number for t in at_kill if t.state == TrialState.RUNNING}
    again = sweep(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    trials = load(url, "ackley_grid").get_trials()
    assert len(trials) == 3
    assert all(t.state == TrialState.COMPLETE for t in trials)  # the killed trial went back to the queue and ran
    killed = next(t for t in trials if t.number == running[0].number)
    if finished_first:  # its run had finished: told from its record, not run again
        assert killed.user_attrs["attempts"] == 1 and "requeued_because" not in killed.user_attrs
    else:
        assert "died" in killed.user_attrs["requeued_because"] and killed.user_attrs["attempts"] == 2
    requeued = {t.number for t in trials if "requeued_because" in t.user_attrs}
    assert requeued <= in_hand  # only a trial the dead worker held goes back to the queue
    assert all("died" in t.user_attrs["requeued_because"] for t in trials if t.number in requeued)
    for t in done_before:  # nothing completed was lost or changed
        now = next(u for u in trials if u.number == t.number)
        assert now.state == TrialState.COMPLETE and now.values == t.values


@pytest.mark.slow
def test_diverging_trial_is_failed_with_its_reason_and_the_study_goes_on(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    out = sweep("sweep=ackley_width_lr", "sweep.n_trials=2", f"sweep.storage={url}", f"sweep.out_dir={tmp_path}/o",
                FAST, "sweep.space={model.lr: {type: float, low: 10, high: 20}}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    trials = load(url, "ackley_width_lr").get_trials()
    assert len(trials) == 2 and all(t.state == TrialState.FAIL for t in trials)
    assert all("diverged" in t.user_attrs["fail_reason"] for t in trials)


@pytest.mark.slow
def test_median_pruner_prunes_hopeless_trials_from_their_reported_losses(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    # half the lrs are 1000x too small: their loss curves lag, and the median pruner stops them
    out = sweep("sweep=ackley_width_lr", "sweep.n_trials=8", "sweep.pruner=median", "sweep.sampler=random",
                f"sweep.storage={url}", f"sweep.out_dir={tmp_path}/o",
                "sweep.base=['experiment=ackley_small','callbacks=none','trainer.max_epochs=30','model=grelu']",
                "sweep.space={model.lr: {type: float, low: 1.0e-9, high: 3.0e-5, log: true}}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    trials = load(url, "ackley_width_lr").get_trials()
    assert len(trials) == 8
    assert all(t.intermediate_values for t in trials)  # every trial reported its losses
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all("pruned at epoch" in t.user_attrs["prune_reason"] for t in pruned)
    assert any(t.state == TrialState.COMPLETE for t in trials)


BAD = [
    (["sweep.base=['experiment=ackley_small','model.widht=3']"], "does not compose"),
    (["sweep.space={model.width: {type: int, low: 300, high: 4}}"], "empty range"),
    (["sweep.space={model.lr: {type: float, low: 0, high: 1, log: true}}"], "log range needs low > 0"),
    (["sweep.storage=mongodb://x"], "sweep.storage"),
    (["sweep.objectives=[{metric: accuracy_of_vibes, direction: minimize}]"], "not a metric a run produces"),
    (["sweep=nope"], "nope"),
    (["sweep.n_trials=0"], "sweep.n_trials"),
    (["sweep.sampler=grid"], "sweep.sampler=grid needs values"),
    (["sweep.trial_overrides=['trainer=tpu_pod']"], "does not compose"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[a[0] for a, _ in BAD])
def test_bad_sweep_specs_fail_before_any_trial(tmp_path, args, needle):
    out = sweep("sweep=ackley_width_lr", f"sweep.out_dir={tmp_path}/o", *args, cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("grelu-sweep: error:") and needle in lines[0], out.stderr
    assert not (tmp_path / "o" / "trials").exists()


def test_trial_overrides_follow_the_base_so_a_gpu_worker_keeps_the_sweeps_problem():
    from lightning_grelu.cli.sweep import load_spec

    spec = load_spec(["sweep=ackley_grid", "sweep.trial_overrides=['trainer.max_epochs=3']"])
    assert spec.base[0] == "experiment=ackley_small" and spec.base[-1] == "trainer.max_epochs=3"


@pytest.mark.slow
def test_frontier_matches_direct_runs_within_a_factor_2(tmp_path):
    from conftest import compose_cfg
    from lightning_grelu.train import train

    base = ["data.n=8", "data.d=8", "model=grelu", "model.depth=2", "model.lr_policy=ntk", "trainer.max_epochs=150",
            "callbacks=none", "eps=1e-3", "eps_relative=true"]
    direct = None
    for w in (4, 8, 16, 32, 64, 128):  # where direct runs show convergence begins
        s = train(compose_cfg(tmp_path / f"direct{w}", *base, f"model.width={w}"))
        if s["steps_to_eps"] is not None:
            direct = w
            break
    assert direct is not None
    out = sweep("sweep=ackley_frontier", "sweep.frontier.cells={data.n: [8]}", "sweep.frontier.seeds=[0]",
                "sweep.frontier.resolution=2", f"sweep.storage=sqlite:///{tmp_path}/f.db",
                f"sweep.out_dir={tmp_path}/out", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    import csv
    rows = list(csv.DictReader(open(tmp_path / "out" / "frontier.csv")))
    width = int(rows[0]["frontier_width"])
    assert direct / 2 <= width <= direct * 2
    assert (tmp_path / "out" / "frontier.png").stat().st_size > 0 and (tmp_path / "out" / "frontier.md").exists()
    # a second run reuses every finished trial: no new trial
    n_before = len(load(f"sqlite:///{tmp_path}/f.db", "ackley_frontier").get_trials())
    again = sweep("sweep=ackley_frontier", "sweep.frontier.cells={data.n: [8]}", "sweep.frontier.seeds=[0]",
                  "sweep.frontier.resolution=2", f"sweep.storage=sqlite:///{tmp_path}/f.db",
                  f"sweep.out_dir={tmp_path}/out", cwd=tmp_path)
    assert again.returncode == 0
    assert len(load(f"sqlite:///{tmp_path}/f.db", "ackley_frontier").get_trials()) == n_before


@pytest.mark.slow
def test_frontier_workers_share_one_study_and_a_killed_workers_trials_are_run_again(tmp_path):
    """Two frontier workers on one study: the second is SIGKILLed at its 3rd report to the study (GRELU_DIE_AT), with
    trials of its batch still RUNNING under its pid; the survivor puts them back, runs them again (or tells one whose
    record was written), and finishes every cell. A restart afterwards adds no trial and writes the same frontier."""
    import csv

    url = f"sqlite:///{tmp_path}/f.db"
    args = ["sweep=ackley_frontier", "sweep.frontier.cells={data.n: [4, 8]}", "sweep.frontier.seeds=[0, 1]",
            "sweep.frontier.resolution=2", f"sweep.storage={url}", f"sweep.out_dir={tmp_path}/out"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    victim = subprocess.Popen([GRELU_SWEEP, *args], cwd=tmp_path, env={**env, "GRELU_DIE_AT": "tell:3"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim.communicate(timeout=600)
    assert victim.returncode == -signal.SIGKILL
    held = [t for t in load(url, "ackley_frontier").get_trials() if t.state == TrialState.RUNNING]
    assert held and all(t.user_attrs["worker"].endswith(f":{victim.pid}") for t in held)
    out = sweep(*args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    trials = load(url, "ackley_frontier").get_trials()
    assert all(t.state == TrialState.COMPLETE for t in trials)
    again = [t for t in trials if t.number in {h.number for h in held}]
    assert any(t.user_attrs.get("attempts") == 2 and "died" in t.user_attrs.get("requeued_because", "") for t in again)
    keys = [tuple(sorted(t.user_attrs["params"].items())) for t in trials]
    assert len(keys) == len(set(keys))  # each (cell, width, seed) once
    rows = list(csv.DictReader(open(tmp_path / "out" / "frontier.csv")))
    assert [r["data.n"] for r in rows] == ["4", "8"] and all(r["frontier_width"] for r in rows)
    restart = sweep(*args, cwd=tmp_path)
    assert restart.returncode == 0, restart.stderr
    assert len(load(url, "ackley_frontier").get_trials()) == len(trials)
    assert list(csv.DictReader(open(tmp_path / "out" / "frontier.csv"))) == rows


@pytest.mark.slow
def test_two_objectives_give_a_pareto_front(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    out = sweep("sweep=ackley_width_lr", "sweep.n_trials=4", "sweep.sampler=random", f"sweep.storage={url}",
                f"sweep.out_dir={tmp_path}/o", FAST,
                "sweep.objectives=[{metric: width, direction: minimize},{metric: train/sse, direction: minimize}]",
                cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    study = load(url, "ackley_width_lr")
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    front = study.best_trials
    assert front and all(len(t.values) == 2 for t in front)
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    for t in done:  # no trial off the front dominates one on it
        assert not any(all(a <= b for a, b in zip(t.values, f.values)) and t.values != f.values for f in front)


@pytest.mark.slow
def test_a_larger_n_trials_grows_the_study_once_and_a_smaller_one_says_it_removes_none(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    base = ["sweep=ackley_grid", f"sweep.storage={url}", f"sweep.out_dir={tmp_path}/out", FAST]
    first = sweep(*base, "sweep.n_trials=2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = {t.number: (t.params, t.values) for t in load(url, "ackley_grid").get_trials()}
    assert len(before) == 2
    same = subprocess.run([sys.executable, "-X", "importtime", "-m", "lightning_grelu.cli.sweep", *base,
                           "sweep.n_trials=2"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "WANDB_MODE": "disabled"})  # nothing to add: says so, runs nothing ...
    assert same.returncode == 0 and "nothing is waiting: 2 completed" in same.stdout, same.stdout
    imported = {ln.split("|")[-1].strip() for ln in same.stderr.splitlines() if ln.startswith("import time:")}
    assert "optuna" in imported and "torch" not in imported  # ... and imports no torch: a second, not seven
    # two workers grow it to 5 at once: the difference is added exactly once
    workers = [sweep(*base, "sweep.n_trials=5", cwd=tmp_path, wait=False) for _ in range(2)]
    outs = [w.communicate(timeout=600) for w in workers]
    assert all(w.returncode == 0 for w in workers), "\n".join(o[1][-2000:] for o in outs)
    assert sum("grown from 2 to 5 trials" in o[0] for o in outs) == 1, outs
    trials = load(url, "ackley_grid").get_trials()
    assert len(trials) == 5 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 5  # new grid points, none repeated
    for number, (params, values) in before.items():  # the first trials are untouched
        assert trials[number].params == params and trials[number].values == values
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["ackley_grid"]  # no marker left
    import yaml

    for t in trials:  # each trial's config names its study and trial number (W&B tables show it)
        cfg = yaml.safe_load((Path(t.user_attrs["run_dir"]) / "config.yaml").read_text())
        assert cfg["sweep_trial"] == {"study": "ackley_grid", "number": t.number}
    smaller = sweep(*base, "sweep.n_trials=3", cwd=tmp_path)
    assert smaller.returncode == 0, smaller.stderr
    assert "the study has 5 trials; sweep.n_trials=3 removes none" in smaller.stdout
    assert len(load(url, "ackley_grid").get_trials()) == 5
