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
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
from optuna.trial import TrialState

from lightning_grelu import faults
from lightning_grelu.errors import EXIT_PRUNED, ConfigError, MachineError, interruption, kind_of_exit
from lightning_grelu.signals import SIGNALS, Interrupted
from lightning_grelu.sweeps import binding, launch
from lightning_grelu.sweeps.sampling import make_sampler  # a trial's draw: (sweep.seed, trial.number)
from lightning_grelu.sweeps.spec import SweepSpec
from lightning_grelu.sweeps.storage import Keeper, Watch, beat, lost, make_storage, retrying, storage_cause

optuna.logging.set_verbosity(optuna.logging.WARNING)
WORKER = f"{socket.gethostname()}:{os.getpid()}"
MAX_ATTEMPTS = 3  # a trial whose worker dies this often (e.g. it takes the machine down) is failed


def grid_points(spec: SweepSpec) -> list[dict]:
    names = [p.name for p in spec.space]
    points = [dict(zip(names, values)) for values in itertools.product(*(p.grid_values() for p in spec.space))]
    random.Random(spec.seed).shuffle(points)
    return points[: spec.n_trials]


def open_study(spec: SweepSpec, placeholders: bool = True) -> tuple[optuna.Study, object]:
    url = spec.storage_url()
    bound = binding.read(Path(spec.out_dir))
    # out_dir holds a study's trials: only that study may go on here (a lost storage file is not re-made)
    storage = make_storage(url, retry_dead=url.startswith("postgresql"), timeout_s=spec.db_timeout_s,
                           create=bound is None, fsync_each=spec.fsync_each)
    sampler = make_sampler(spec)
    pruner = optuna.pruners.MedianPruner() if spec.pruner == "median" else optuna.pruners.NopPruner()
    if bound is not None:
        binding.check_before_open(bound, spec, storage)
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
        binding.check_spec(study, spec)  # one protocol per study: a changed base is refused before anything
        binding.bind(Path(spec.out_dir), spec, study)
        if placeholders:
            grow(study, storage, spec)
        return study, storage
    study.set_user_attr("uid", uuid.uuid4().hex)  # names this study, not just any study of this name
    study.set_metric_names([metric for metric, _ in spec.objectives])  # optuna-dashboard shows "train/sse"
    if placeholders and spec.sampler == "grid":
        for point in grid_points(spec):
            study.enqueue_trial(point, skip_if_exists=False)
    elif placeholders:
        for _ in range(spec.n_trials):
            study.enqueue_trial({}, skip_if_exists=False)
    study.set_user_attr("spec", {"base": spec.base, "objectives": spec.objectives, "sampler": spec.sampler})
    study.set_user_attr("n_trials", spec.n_trials)  # ready
    binding.bind(Path(spec.out_dir), spec, study)
    return study, storage


def grow(study: optuna.Study, storage, spec: SweepSpec, progress=print) -> None:
    """A larger ``sweep.n_trials`` on an existing study adds the difference (the next grid points, or more
    placeholders); a smaller one removes nothing (trials are never deleted) and says so.

    Exactly one worker grows a study to a given size, on any storage: the one that creates the transient
    marker study ``<name>:grow-to-<n>`` (Optuna lets exactly one create succeed, as for the study itself).
    It re-reads the size after winning, enqueues, publishes the new size, then deletes the marker; a worker
    that loses waits for the new size."""
    have = int(study.user_attrs["n_trials"])
    if spec.n_trials < have:
        progress(f"{spec.name}: the study has {have} trials; sweep.n_trials={spec.n_trials} removes none "
                 f"(trials are never deleted): this worker runs what is waiting of the {have}")
        return
    if spec.n_trials == have:
        return
    if spec.sampler == "grid" and len(grid_points(spec)) < spec.n_trials:
        raise ConfigError(f"sweep.n_trials={spec.n_trials} is more than the grid's {len(grid_points(spec))} points; "
                          "add grid values or lower sweep.n_trials")
    marker = f"{spec.name}:grow-to-{spec.n_trials}"
    try:
        optuna.create_study(study_name=marker, storage=storage)
    except optuna.exceptions.DuplicatedStudyError:  # another worker grows it: wait for the new size
        for _ in range(600):
            if int(optuna.load_study(study_name=spec.name, storage=storage).user_attrs["n_trials"]) >= spec.n_trials:
                return
            time.sleep(0.1)
        raise ConfigError(f"study {spec.name!r} was being grown to {spec.n_trials} trials by a worker that died; "
                          f"delete the study {marker!r} (optuna delete-study) and start again") from None
    try:
        have = int(optuna.load_study(study_name=spec.name, storage=storage).user_attrs["n_trials"])
        if have < spec.n_trials:  # not grown meanwhile by a worker that had won and deleted its marker
            new = grid_points(spec)[have:] if spec.sampler == "grid" else [{}] * (spec.n_trials - have)
            for point in new:
                study.enqueue_trial(point, skip_if_exists=False)
            study.set_user_attr("n_trials", spec.n_trials)
            progress(f"{spec.name}: grown from {have} to {spec.n_trials} trials")
    finally:
        optuna.delete_study(study_name=marker, storage=storage)


def fail_dead_trials(study: optuna.Study, storage, spec: SweepSpec | None = None) -> None:
    """RUNNING trials whose worker is gone. On this host a dead worker PID is noticed at once: an attempt that
    had finished is told from its run record; otherwise the trial goes back to WAITING (its folder keeps the
    checkpoint the next attempt resumes), up to MAX_ATTEMPTS. Other hosts' workers are noticed by missing
    heartbeats on RDB storages (PostgreSQL then retries the trial as a new one)."""
    host = socket.gethostname()
    suspects = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        who = t.user_attrs.get("worker", "")
        if who.startswith(host + ":") and not _alive(int(who.split(":")[1])):
            suspects.append((t._trial_id, who))
    if suspects:  # a claim sets RUNNING a moment before it names its worker: look again after that moment
        time.sleep(1.0)
    for trial_id, who in suspects:
        t = storage.get_trial(trial_id)
        if t.state != TrialState.RUNNING or t.user_attrs.get("worker", "") != who:
            continue  # claimed meanwhile by a live worker (or already handled)
        if _alive(int(t.user_attrs.get("trial_pid", 0) or 0)):
            continue  # its trial process still runs (it stops at an epoch's end: it had SIGTERM with its worker)
        try:
            summary = _finished_summary(Path(t.user_attrs.get("run_dir", "")))
            if summary is not None and spec is not None:
                tell(spec, study, storage, optuna.Trial(study, t._trial_id), 3 if summary["status"] == "diverged"
                     else 0, "finished; its worker died before telling the study", summary,
                     diverged_answers="fixed_params" in t.system_attrs)  # a scan's trial: diverging is an answer
            elif t.user_attrs.get("attempts", 1) >= MAX_ATTEMPTS:
                storage.set_trial_user_attr(t._trial_id, "fail_reason", f"worker died {MAX_ATTEMPTS} times (last: {who})")
                storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            else:
                storage.set_trial_user_attr(t._trial_id, "requeued_because", f"worker {who} died")
                storage.set_trial_state_values(t._trial_id, TrialState.WAITING)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker handled it first
    # after this host's own: a dead local worker is known for certain, and its trial goes back to the queue under
    # its own number (its next attempt resumes the checkpoint); a missing heartbeat would FAIL it for a new trial
    # that starts over, once the kill took longer than the grace period to be noticed
    if isinstance(storage, optuna.storages.RDBStorage):
        optuna.storages.fail_stale_trials(study)


def _finished_summary(run_dir: Path) -> dict | None:
    try:
        s = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return s if isinstance(s, dict) and s.get("status") in ("completed", "diverged") else None


def _alive(pid: int) -> bool:
    """Whether a process of this host runs (a zombie, dead but not yet reaped, does not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def claim(study: optuna.Study, storage) -> optuna.Trial | None:
    """Take one WAITING trial (atomically), or None when none is left."""
    for t in storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,)):
        if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
            storage.set_trial_user_attr(t._trial_id, "worker", WORKER)
            storage.set_trial_user_attr(t._trial_id, "attempts", t.user_attrs.get("attempts", 0) + 1)
            beat(storage, [t._trial_id])
            return optuna.Trial(study, t._trial_id)
    return None


def release(storage, trial: optuna.Trial, why: str) -> None:
    """Back to WAITING: another worker (or this one, restarted) claims it and resumes its checkpoint."""
    storage.set_trial_user_attr(trial._trial_id, "requeued_because", why)
    storage.set_trial_state_values(trial._trial_id, TrialState.WAITING)


def run_trial(spec: SweepSpec, study: optuna.Study, storage, trial: optuna.Trial, fixed: bool = False,
              distributions: dict | None = None, watch: Watch | None = None) -> str:
    if fixed:  # frontier mode: the parameters the trial was enqueued with, recorded as Optuna parameters over
        # the frontier's ranges (``distributions``), so that optuna-dashboard and the CLI can plot them
        params = storage.get_trial(trial._trial_id).system_attrs["fixed_params"]
        for name, dist in (distributions or {}).items():
            if name in params:
                if isinstance(dist, optuna.distributions.IntDistribution):
                    trial.suggest_int(name, dist.low, dist.high, log=dist.log)
                else:
                    trial.suggest_categorical(name, dist.choices)
    else:
        params = {p.name: p.suggest(trial) for p in spec.space}
    trial.set_user_attr("params", params)
    run_dir = (Path(spec.out_dir) / "trials" / f"{trial.number:05d}").resolve()
    trial.set_user_attr("run_dir", str(run_dir))
    overrides = [*spec.base, *(f"{k}={v}" for k, v in params.items()), f"experiment_name={spec.name}",
                 f"sweep_trial={{study: {spec.name}, number: {trial.number}}}"]  # in the config W&B tables show
    env = {**os.environ}
    if spec.pruner != "none":  # the trial process reports intermediate losses to this trial
        env.update(GRELU_SWEEP_STORAGE=spec.storage_url(), GRELU_SWEEP_STUDY=spec.name,
                   GRELU_SWEEP_TRIAL_ID=str(trial._trial_id))
    fork = launch.forking()
    if fork:  # once per worker: what every trial imports (a signal meanwhile gives the claimed trial back)
        try:
            launch.preload()
        except BaseException as e:
            stop = interruption(e)
            if stop is not None:
                release(storage, trial, f"stopped by {signal.Signals(stop.signum).name}")
            raise
    beat(storage, [trial._trial_id])
    # its own session: Ctrl-C reaches the worker only, which passes each signal on exactly once
    argv = [str(run_dir), *overrides]
    proc = launch.ForkedTrial(argv, env) if fork else subprocess.Popen(
        [sys.executable, "-m", launch.MODULE, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env, start_new_session=True)
    trial.set_user_attr("trial_pid", proc.pid)
    got: list[int] = []

    def forward(signum, frame):
        got.append(signum)
        proc.send_signal(signum)

    # the storage failing meanwhile stops the trial at an epoch's end, with its checkpoint
    keeper = Keeper(storage, watch or Watch(spec.storage_url()), [trial._trial_id],
                    on_failure=lambda: proc.poll() is None and proc.send_signal(signal.SIGTERM))
    previous = {s: signal.signal(s, forward) for s in SIGNALS}
    try:
        with keeper:
            try:
                _, err = proc.communicate(timeout=spec.trial_timeout_s)
                code = proc.returncode
                reason = (err.strip().splitlines() or [f"exit code {code}"])[-1].removeprefix("trial: error: ")
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                code, reason = None, f"timed out after {spec.trial_timeout_s} s"
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if keeper.failure is not None:
        raise keeper.failure
    kind = kind_of_exit(code) if code is not None else "crash"
    if got or kind == "signal":  # stopped by a signal: the trial is not done, nor failed
        release(storage, trial, f"stopped by {signal.Signals(got[0] if got else code - 128).name}")
        raise Interrupted(got[0] if got else code - 128)
    if kind == "machine":  # not the trial's fault: leave it for a machine that can run it
        release(storage, trial, f"machine problem on {WORKER}: {reason}")
        raise MachineError(f"trial {trial.number} cannot run on this machine: {reason} "
                           "(the trial is back in the queue; fix this and start the worker again)")
    if kind == "crash" and code is not None and code < 0:
        reason = f"crash: killed by {signal.Signals(-code).name}"
    (watch or Watch(spec.storage_url())).check()  # the study is still the one this worker claimed from
    summary = _finished_summary(run_dir) or _read_summary(run_dir)
    faults.point("tell")  # the trial has finished; the study does not know yet
    beat(storage, [trial._trial_id])  # it is this worker's until told (the keeper stopped with the process)
    return tell(spec, study, storage, trial, code, reason, summary, diverged_answers=fixed)


def _read_summary(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


def tell(spec: SweepSpec, study: optuna.Study, storage, trial: optuna.Trial, code: int | None, reason: str,
         summary: dict, diverged_answers: bool = False) -> str:
    """Record a finished attempt in the study: completed with its objectives, pruned, or failed with why."""
    # every finished trial says whether it reached eps (frontier mode reads it; pruned: no)
    trial.set_user_attr("converged", summary.get("steps_to_eps") is not None)
    if code == EXIT_PRUNED:
        trial.set_user_attr("prune_reason", reason)
        study.tell(trial, state=TrialState.PRUNED)
        return "pruned"
    values = [summary.get(metric) for metric, _ in spec.objectives]
    if code == 0 and all(_finite(v) for v in values):
        study.tell(trial, values)
        return "completed"
    if code == 0:
        missing = [m for (m, _), v in zip(spec.objectives, values) if not _finite(v)]
        reason = f"objective {', '.join(missing)} not produced by the run (null in summary.json)"
    elif summary.get("status") == "diverged":
        if diverged_answers:  # a width scan's trial: diverging is its answer at this width, not a fault
            trial.set_user_attr("verdict", "diverged")
            study.tell(trial, [float("inf")] * len(spec.objectives))
            return "completed"
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
    watch = Watch(spec.storage_url())
    done = {"completed": 0, "failed": 0, "pruned": 0}
    trial = None
    try:
        while True:
            watch.check()
            trial = None
            fail_dead_trials(study, storage, spec)  # also while running: another worker may have died meanwhile
            trial = claim(study, storage)
            if trial is None:
                if not any(done.values()):
                    c = counts(study)
                    progress(f"{spec.name}: nothing is waiting: {c['complete']} completed, {c['fail']} failed, "
                             f"{c['pruned']} pruned, {c['running']} running of {study.user_attrs['n_trials']} trials "
                             "(a larger sweep.n_trials adds trials)")
                break
            outcome = run_trial(spec, study, storage, trial, watch=watch)
            done[outcome] += 1
            c = counts(study)
            best = ""
            if c["complete"] and len(spec.objectives) == 1:
                best = f", best {spec.objectives[0][0]} {study.best_value:.4g} (trial {study.best_trial.number})"
            progress(f"{spec.name}: trial {trial.number} {outcome}; done {c['complete']}, failed {c['fail']}, "
                     f"running {c['running']}, waiting {c['waiting']} of {study.user_attrs['n_trials']}{best}")
    except Exception as e:  # the storage failing under this worker: one line, naming it and the trial in hand
        cause = storage_cause(e, watch)
        if cause is not None:
            raise lost(spec.storage_url(), cause, in_hand(spec, trial)) from None
        raise
    return done


def in_hand(spec: SweepSpec, trial: optuna.Trial | None) -> str:
    """What became of the trial a worker held when its storage failed (told in its one line)."""
    if trial is None:
        return "no trial was in hand"
    run_dir = (Path(spec.out_dir) / "trials" / f"{trial.number:05d}").resolve()
    if _finished_summary(run_dir) is not None:
        return f"trial {trial.number} had finished (its record in {run_dir} is told to the study when it is back)"
    if (run_dir / "checkpoints" / "last.ckpt").exists():
        return f"trial {trial.number} stopped with its checkpoint in {run_dir} (it resumes from there)"
    return f"trial {trial.number} had not begun training"
