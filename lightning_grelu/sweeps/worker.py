"""A sweep worker: start any number of them against one study; they share nothing but the storage.

Exact global cap: the worker that creates the study (Optuna lets exactly one succeed) enqueues
``n_trials`` WAITING trials (grid points for the grid sampler, empty placeholders otherwise) and
marks the study ready. Workers only ever claim WAITING trials through the storage's atomic
WAITING -> RUNNING transition and never create trials, so the study ends with exactly n_trials
trials (plus retries of trials whose worker died, on PostgreSQL) and none runs twice.
A re-started worker resumes the same study.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from lightning_grelu.errors import ConfigError
from lightning_grelu.sweeps.run_trial import EXIT_PRUNED
from lightning_grelu.sweeps.spec import SweepSpec
from lightning_grelu.sweeps.storage import HEARTBEAT_S, make_storage, retrying

optuna.logging.set_verbosity(optuna.logging.WARNING)
WORKER = f"{socket.gethostname()}:{os.getpid()}"


def make_sampler(spec: SweepSpec):
    if spec.sampler == "tpe":  # constant liar: parallel workers do not all sample the same point
        return optuna.samplers.TPESampler(seed=spec.seed, constant_liar=True)
    return optuna.samplers.RandomSampler(seed=spec.seed)  # grid points arrive as fixed params


def grid_points(spec: SweepSpec) -> list[dict]:
    names = [p.name for p in spec.space]
    points = [dict(zip(names, values)) for values in itertools.product(*(p.grid_values() for p in spec.space))]
    random.Random(spec.seed).shuffle(points)
    return points[: spec.n_trials]


def open_study(spec: SweepSpec, placeholders: bool = True) -> tuple[optuna.Study, object]:
    url = spec.storage_url()
    storage = make_storage(url, retry_dead=url.startswith("postgresql"))
    sampler = make_sampler(spec)
    pruner = optuna.pruners.MedianPruner() if spec.pruner == "median" else optuna.pruners.NopPruner()
    try:
        study = retrying(lambda: optuna.create_study(study_name=spec.name, storage=storage, directions=spec.directions,
                                                     sampler=sampler, pruner=pruner), f"study {spec.name!r}")
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler, pruner=pruner)
        for _ in range(600):  # the creating worker is still enqueuing
            if "n_trials" in study.user_attrs:
                break
            time.sleep(0.1)
        else:
            raise ConfigError(f"study {spec.name!r} exists but was never made ready (a worker died while "
                              "creating it); delete the study or pick another sweep.name") from None
        if [d.name.lower() for d in study.directions] != spec.directions:
            raise ConfigError(f"study {spec.name!r} exists with other objectives; pick another sweep.name") from None
        return study, storage
    if placeholders and spec.sampler == "grid":
        for point in grid_points(spec):
            study.enqueue_trial(point, skip_if_exists=False)
    elif placeholders:
        for _ in range(spec.n_trials):
            study.enqueue_trial({}, skip_if_exists=False)
    study.set_user_attr("n_trials", spec.n_trials)  # ready
    study.set_user_attr("spec", {"base": spec.base, "objectives": spec.objectives, "sampler": spec.sampler})
    return study, storage


def fail_dead_trials(study: optuna.Study, storage) -> None:
    """RUNNING trials whose worker is gone: RDB storages notice by missing heartbeats (PostgreSQL then
    retries them); on this host a dead worker PID is noticed at once, on every storage."""
    if isinstance(storage, optuna.storages.RDBStorage):
        optuna.storages.fail_stale_trials(study)  # other hosts: heartbeats (PostgreSQL retries them)
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        who = t.user_attrs.get("worker", "")
        if who.startswith(host + ":") and not _alive(int(who.split(":")[1])):
            try:
                storage.set_trial_user_attr(t._trial_id, "fail_reason", f"worker {who} died")
                failed = storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker handled it first
            retry = getattr(storage, "heartbeat_stale_trial_callback", None)  # PostgreSQL: run it again
            if failed and retry is not None:
                retry(study, storage.get_trial(t._trial_id))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def claim(study: optuna.Study, storage) -> optuna.Trial | None:
    """Take one WAITING trial (atomically), or None when none is left."""
    for t in storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,)):
        if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
            return optuna.Trial(study, t._trial_id)
    return None


def _heartbeat(storage, trial_id: int, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S / 2):
        storage.record_heartbeat(trial_id)


def run_trial(spec: SweepSpec, study: optuna.Study, storage, trial: optuna.Trial, fixed: bool = False) -> str:
    if fixed:  # frontier mode: the parameters the trial was enqueued with (no distributions to learn)
        params = storage.get_trial(trial._trial_id).system_attrs["fixed_params"]
    else:
        params = {p.name: p.suggest(trial) for p in spec.space}
    trial.set_user_attr("params", params)
    run_dir = (Path(spec.out_dir) / "trials" / f"{trial.number:05d}").resolve()
    trial.set_user_attr("run_dir", str(run_dir))
    trial.set_user_attr("worker", WORKER)
    overrides = [*spec.base, *(f"{k}={v}" for k, v in params.items()), f"experiment_name={spec.name}"]
    env = {**os.environ}
    if spec.pruner != "none":  # the trial process reports intermediate losses to this trial
        env.update(GRELU_SWEEP_STORAGE=spec.storage_url(), GRELU_SWEEP_STUDY=spec.name,
                   GRELU_SWEEP_TRIAL_ID=str(trial._trial_id))
    stop = threading.Event()
    if isinstance(storage, optuna.storages.RDBStorage):
        storage.record_heartbeat(trial._trial_id)
        threading.Thread(target=_heartbeat, args=(storage, trial._trial_id, stop), daemon=True).start()
    try:
        proc = subprocess.run([sys.executable, "-m", "lightning_grelu.sweeps.run_trial", str(run_dir), *overrides],
                              capture_output=True, text=True, timeout=spec.trial_timeout_s, env=env)
        reason = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    except subprocess.TimeoutExpired:
        proc, reason = None, f"timed out after {spec.trial_timeout_s} s"
    finally:
        stop.set()
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    # every finished trial says whether it reached eps (frontier mode reads it; pruned: no)
    trial.set_user_attr("converged", summary.get("steps_to_eps") is not None)
    if proc is not None and proc.returncode == EXIT_PRUNED:
        trial.set_user_attr("prune_reason", reason)
        study.tell(trial, state=TrialState.PRUNED)
        return "pruned"
    values = [summary.get(metric) for metric, _ in spec.objectives]
    if proc is not None and proc.returncode == 0 and all(_finite(v) for v in values):
        study.tell(trial, values)
        return "completed"
    if proc is not None and proc.returncode == 0:
        missing = [m for (m, _), v in zip(spec.objectives, values) if not _finite(v)]
        reason = f"objective {', '.join(missing)} not produced by the run (null in summary.json)"
    elif summary.get("status") == "diverged":
        reason = f"diverged: {summary.get('error')}"
    trial.set_user_attr("fail_reason", reason)
    study.tell(trial, state=TrialState.FAIL)
    return "failed"


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def counts(study: optuna.Study) -> dict[str, int]:
    out = {s.name.lower(): 0 for s in (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE,
                                       TrialState.FAIL, TrialState.PRUNED)}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name.lower()] += 1
    return out


def work(spec: SweepSpec, progress=print) -> dict[str, int]:
    """Run trials until none is waiting; returns what this worker did."""
    Path(spec.out_dir).mkdir(parents=True, exist_ok=True)
    study, storage = open_study(spec)
    done = {"completed": 0, "failed": 0, "pruned": 0}
    while True:
        fail_dead_trials(study, storage)  # also while running: another worker may have died meanwhile
        trial = claim(study, storage)
        if trial is None:
            break
        outcome = run_trial(spec, study, storage, trial)
        done[outcome] += 1
        c = counts(study)
        best = ""
        if c["complete"] and len(spec.objectives) == 1:
            best = f", best {spec.objectives[0][0]} {study.best_value:.4g} (trial {study.best_trial.number})"
        progress(f"{spec.name}: trial {trial.number} {outcome}; done {c['complete']}, failed {c['fail']}, "
                 f"running {c['running']}, waiting {c['waiting']} of {spec.n_trials}{best}")
    return done
