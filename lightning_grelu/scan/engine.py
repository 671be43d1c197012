"""The one width-search engine: width scans of many series, as trials of one Optuna study, shared by any
number of workers.

Every evaluated (series, width, seed) is an ordinary trial of the study, with its parameters (the series'
overrides, ``model.width``, ``seed``) and its run record, so workers on one storage (a journal file or
SQLite on one machine, PostgreSQL across hosts) share the scan and a restarted one resumes it. Each worker
loops: look at every trial; under the study's enqueue lock, enqueue the widths each series needs next
(:func:`lightning_grelu.scan.grid.needed`) that no trial holds yet; claim a batch of waiting trials of one
shape (the storage's atomic WAITING -> RUNNING) and train them together
(:mod:`lightning_grelu.scan.runner`), or run one as a grelu-train trial when it cannot be batched; write
each record and tell the study. Until every series is finished: then every worker stops.

Nothing is run twice: a trial is enqueued only under the lock and only when no trial of those parameters
exists; a claim is atomic. Nothing is lost: a worker stopped by a signal puts its claimed trials back in the
queue; a worker that dies leaves them RUNNING under its pid, and the next worker to look puts them back
(:func:`lightning_grelu.sweeps.worker.fail_dead_trials`); other hosts' dead workers are noticed by missing
heartbeats (RDB storages). A finished batched trial keeps its record in the storage too (user attribute
``record``), so the report can be written on any host.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from omegaconf import OmegaConf
from optuna.trial import TrialState

from lightning_grelu import faults
from lightning_grelu.errors import ConfigError
from lightning_grelu.scan import grid, runner
from lightning_grelu.scan.spec import Scan, key
from lightning_grelu.signals import SIGNALS, Interrupted
from lightning_grelu.sweeps.storage import Keeper, StudyLock, Watch, beat, lost, storage_cause, sync
from lightning_grelu.sweeps.worker import WORKER, fail_dead_trials, open_study, release, run_trial

POLL_S = 0.5  # how often an idle worker looks again


@dataclass
class _Series:
    overrides: dict
    cfg: object  # composed at the first width and seed: shapes, budget, targets, batchable
    widths: list[int]
    start: int
    why_not_batched: str | None
    headline: tuple[int, float]
    protocols: list[tuple[int, float]]


class Engine:
    def __init__(self, scan: Scan, progress=print):
        self.scan, self.progress = scan, progress
        self.spec = scan.sweep_spec()
        Path(scan.out_dir).mkdir(parents=True, exist_ok=True)
        self.series = [self._describe(s) for s in scan.series]
        self.study, self.storage = open_study(self.spec, placeholders=False)
        self.watch = Watch(self.spec.storage_url())
        self.data = runner.DataCache()
        self._cfgs: dict = {}  # (series, seed) -> (config, resolved config)
        self._finished: dict[int, tuple | None] = {}  # trial number -> (params key, answer) of finished trials
        self._seen = -1  # the highest trial number seen
        self._signal: int | None = None
        self.ran = {"trials": 0, "batches": 0}

    # -- what each series is ----------------------------------------------------------------------
    def compose(self, params: dict):
        from lightning_grelu.config_check import composition_error
        from lightning_grelu.sweeps.run_trial import compose_trial

        try:
            return compose_trial("/tmp/unused", [*self.scan.base, *(f"{k}={v}" for k, v in params.items())])
        except Exception as e:
            raise ConfigError(f"{self.scan.name}: a trial's config does not compose: "
                              f"{composition_error(e, [*self.scan.base, *(f'{k}={v}' for k, v in params.items())])}") from None

    def _describe(self, overrides: dict) -> _Series:
        from lightning_grelu.config_check import check_constructors, validate
        from lightning_grelu.errors import MachineError
        from lightning_grelu.memory import check_devices

        cfg = self.compose({**overrides, "model.width": self.scan.rule.low or 1, "seed": self.scan.seeds[0]})
        validate(cfg)
        check_devices(cfg.trainer)  # a GPU preset on a machine without one: one line, before the study is opened
        check_constructors(cfg)  # a series whose config cannot be built: one line, before the study is opened
        if self.scan.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise MachineError(f"{self.scan.name}: the scan trains on a CUDA GPU and none is visible here; use "
                                   "a CPU profile (e.g. --profile smoke)")
        rule = self.scan.rule
        widths = sorted(rule.fixed) if rule.fixed is not None else grid.grid(rule.ratio, rule.high)
        n, d_y, depth = int(cfg.data.get("n") or 1), int(cfg.data.get("d_out", 1) or 1), int(cfg.model.depth)
        budget, targets = runner.budget_of(cfg), runner.targets_of(cfg)
        if cfg.get("eps") is None:
            raise ConfigError(f"{self.scan.name}: a width scan needs eps (what converged means)")
        headline = (budget, float(cfg.eps))
        protocols = [p for p in self.scan.stop_on if p[0] <= budget] or [headline]
        return _Series(overrides, cfg, widths, grid.start_width(self.scan.rule, widths, n, d_y, depth),
                       runner.batchable(cfg), headline, protocols)

    def params(self, s: _Series, width: int, seed: int) -> dict:
        return {**s.overrides, "model.width": width, "seed": seed}

    # -- what the study holds -----------------------------------------------------------------------
    def states(self) -> tuple[dict, set]:
        """(answered: params key -> answer, pending: params keys WAITING or RUNNING somewhere). Finished trials
        never change, so each is read once (``self._finished``); every call reads the unfinished ones and the
        trials created since the last call."""
        sid = self.study._study_id
        unfinished = self.storage.get_all_trials(sid, deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
        open_numbers = {t.number for t in unfinished}
        if not self._finished:
            fresh = self.storage.get_all_trials(sid, deepcopy=False)  # the first look: one read of everything
            self._seen = max((t.number for t in fresh), default=-1)
        else:  # trials numbered beyond the last seen (an RDB storage counts trials by reading them all), and
            # trials that were unfinished at the last look
            while True:
                try:
                    self.storage.get_trial_id_from_study_id_trial_number(sid, self._seen + 1)
                except KeyError:
                    break
                self._seen += 1
            fresh = [self.storage.get_trial(self.storage.get_trial_id_from_study_id_trial_number(sid, number))
                     for number in range(self._seen + 1) if number not in self._finished and number not in open_numbers]
        for t in fresh:
            if t.state.is_finished():
                params = t.user_attrs.get("params") or t.system_attrs.get("fixed_params")
                if params is not None:
                    answer = (t.user_attrs.get("record") or {}).get("answer") or _answer_from_record(
                        t.user_attrs.get("run_dir"))
                    self._finished[t.number] = (key(params), answer if answer is not None else {})  # crashed: {}
                else:
                    self._finished[t.number] = None
        answered = dict(v for v in self._finished.values() if v is not None)
        pending = set()
        for t in unfinished:
            params = t.user_attrs.get("params") or t.system_attrs.get("fixed_params")
            if params is not None:
                pending.add(key(params))
        return answered, pending - set(answered)

    def done(self, s: _Series, answered: dict) -> dict[int, list[dict]]:
        """width -> every seed's answer, for the widths every seed has answered."""
        out = {}
        for w in s.widths:
            answers = [answered.get(key(self.params(s, w, seed))) for seed in self.scan.seeds]
            if all(a is not None for a in answers):
                out[w] = [{float(t): v for t, v in a.items()} for a in answers]
        return out

    def _needed(self, answered: dict, pending: set) -> list[dict]:
        out = []
        for s in self.series:
            done = self.done(s, answered)
            waiting = {w for w in s.widths if any(key(self.params(s, w, seed)) in pending for seed in self.scan.seeds)}
            if waiting:  # decide a series' next widths only on complete answers: the same scan for any number of
                continue  # workers and any timing (a worker never guesses ahead of what is running elsewhere)
            for w in grid.needed(self.scan.rule, s.widths, s.start, done, waiting, s.protocols, s.headline):
                out += [p for seed in self.scan.seeds
                        if (k := key(p := self.params(s, w, seed))) not in answered and k not in pending]
        return out

    def finished(self, answered: dict) -> bool:
        return all(grid.finished(self.scan.rule, s.widths, s.start, self.done(s, answered), s.protocols, s.headline)
                   for s in self.series)

    # -- the worker loop ----------------------------------------------------------------------------
    def run(self) -> dict:
        """Work until every series is finished; returns what this worker ran."""
        import torch

        if self.scan.threads:
            torch.set_num_threads(self.scan.threads)
        previous = {s: signal.signal(s, self._on_signal) for s in SIGNALS}
        try:
            return self._loop()
        except Exception as e:  # the storage failing under this worker: one line (the trials in hand, RUNNING
            cause = storage_cause(e, self.watch)  # under a dead pid, go back to the queue when it is back)
            if cause is not None:
                raise lost(self.spec.storage_url(), cause, "the trials in hand go back to the queue when it is back"
                           ) from None
            raise
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _loop(self) -> dict:
        while True:
            self.watch.check()
            self._check_signal()
            fail_dead_trials(self.study, self.storage, self.spec)
            answered, pending = self.states()
            if self._needed(answered, pending):
                with self._enqueue_lock():
                    answered, pending = self.states()  # again, under the lock: what another worker enqueued
                    for params in self._needed(answered, pending):
                        self.study.enqueue_trial(params, skip_if_exists=False, user_attrs={
                            "params": params, "run_dir": str(self.scan.run_dir(params))})
                answered, pending = self.states()
            claimed = self._claim()
            if claimed:
                self._execute(claimed)
                continue
            if self.finished(answered):
                self.progress(f"{self.scan.name}: every series is finished ({len(answered)} trials answered); "
                              f"this worker ran {self.ran['trials']} trials in {self.ran['batches']} batches")
                return self.ran
            time.sleep(POLL_S)

    def _on_signal(self, signum, frame):
        if self._signal is not None:  # a second signal: stop at once
            raise Interrupted(signum)
        self._signal = signum

    def _check_signal(self):
        if self._signal is not None:
            raise Interrupted(self._signal)

    def _enqueue_lock(self):
        return StudyLock(self.storage, f"{self.scan.name}:enqueue-lock", WORKER)

    def _series_of(self, params: dict) -> _Series | None:
        rest = {k: v for k, v in params.items() if k not in ("model.width", "seed")}
        for s in self.series:
            if key(s.overrides) == key(rest):
                return s
        return None

    def _claim(self) -> list[tuple[optuna.Trial, dict, _Series]]:
        """Claim waiting trials: a batch of one shape (any series, as many as ``max_nets``), or one trial that
        grelu-train must run."""
        waiting = []
        # through the study's own storage: on RDB its caching wrapper must know a trial a grelu-train trial writes to
        for t in self.study._storage.get_all_trials(self.study._study_id, deepcopy=False, states=(TrialState.WAITING,)):
            params = t.system_attrs.get("fixed_params")
            s = self._series_of(params) if params else None
            if s is not None:
                waiting.append((t, params, s))
        if not waiting:
            return []
        first = waiting[0][2]
        if first.why_not_batched:
            pick = [waiting[0]]
        else:
            shape = _shape(first.cfg)
            pick = [w for w in waiting if not w[2].why_not_batched and _shape(w[2].cfg) == shape]
            pick.sort(key=lambda w: int(w[1]["model.width"]))
            # one batch's worth (the cut runner.batches makes): the rest stays for the other workers
            sizes = [(int(s.cfg.model.depth), int(s.cfg.data.get("n") or 1), int(params["model.width"]))
                     for _, params, s in pick]
            pick = pick[:runner.first_batch(sizes, self.scan.max_nets)]
        out = []
        for t, params, s in pick:
            if self.storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                self.storage.set_trial_user_attr(t._trial_id, "worker", WORKER)
                self.storage.set_trial_user_attr(t._trial_id, "trial_pid", os.getpid())
                self.storage.set_trial_user_attr(t._trial_id, "attempts", t.user_attrs.get("attempts", 0) + 1)
                out.append((optuna.Trial(self.study, t._trial_id), params, s))
        beat(self.storage, [c[0]._trial_id for c in out])
        return out

    def _execute(self, claimed) -> None:
        trial, params, s = claimed[0]
        if s.why_not_batched:  # grelu-train in its own process, as a sweep trial
            run_trial(self.spec, self.study, self.storage, trial, fixed=True, distributions=self.distributions(),
                      watch=self.watch)
            self.ran["trials"] += 1
            return
        # heartbeats (other hosts must not think these are dead) and the storage file; a failure stops the batch
        keeper = Keeper(self.storage, self.watch, [c[0]._trial_id for c in claimed]).__enter__()
        try:
            prepared = []
            for trial, params, s in claimed:
                run_dir = self.scan.run_dir(params)
                cfg, config = self._trial_cfg(s, params, run_dir)
                prepared.append(runner.prepare(cfg, run_dir, self.data, width=int(params["model.width"]),
                                               config=config))
            t0 = time.perf_counter()
            outcomes = runner.run(prepared, self.scan.device, max_nets=self.scan.max_nets,
                                  should_stop=lambda: self._signal is not None or keeper.failure is not None)
            seconds = time.perf_counter() - t0
        except BaseException as e:
            keeper.__exit__()
            if keeper.failure is not None:  # the storage failed: it cannot take the trials back now
                raise keeper.failure from None
            for trial, _, _ in claimed:  # nothing of the batch is final: back to the queue
                release(self.storage, trial, f"stopped: {type(e).__name__}: {e}")
            if isinstance(e, runner_stopped()):
                raise Interrupted(self._signal or signal.SIGTERM) from None
            raise
        if keeper.failure is not None:
            keeper.__exit__()
            raise keeper.failure
        told = 0
        try:  # the heartbeats go on until the last trial is told: a large batch's records take a while to write
            for (trial, params, s), p, out in zip(claimed, prepared, outcomes):
                summary = runner.write_record(p, out, self.scan.budgets)
                self._tell(trial, params, summary, runner.curve(out.sse))
                told += 1
        except BaseException as e:  # those not told go back to the queue (a written record is told from)
            for trial, _, _ in claimed[told:]:
                try:
                    release(self.storage, trial, f"stopped while telling: {type(e).__name__}: {e}")
                except Exception:
                    pass  # the storage itself failed: the next worker to look puts them back (dead pid)
            raise
        finally:
            keeper.__exit__()
        if keeper.failure is not None:  # the storage went wrong while the batch was told: told in one line
            raise keeper.failure
        sync(self.storage)  # the batch's answers are durable (the journal is synced per batch, not per write)
        self.ran["trials"] += len(claimed)
        self.ran["batches"] += 1
        widths = sorted({int(c[1]["model.width"]) for c in claimed})
        self.progress(f"{self.scan.name}: {len(claimed)} nets (L={s.cfg.model.depth}, widths {widths[0]}-{widths[-1]}) "
                      f"in {seconds:.3g} s; {self._status()}")

    def _trial_cfg(self, s: _Series, params: dict, run_dir: Path):
        """(config, resolved config) of a trial: the series' config composed once per seed (what composing all
        of its overrides gives), its width and run directory set in the resolved copy (no key reads
        model.width through an interpolation in a batchable config: it has no logger)."""
        seed = int(params["seed"])
        cached = self._cfgs.get((id(s), seed))
        if cached is None:
            cfg = OmegaConf.create(OmegaConf.to_container(s.cfg, resolve=False))
            OmegaConf.update(cfg, "seed", seed)
            OmegaConf.update(cfg, "experiment_name", self.scan.name)
            cached = self._cfgs[(id(s), seed)] = (cfg, OmegaConf.to_container(cfg, resolve=True))
        cfg, resolved = cached
        config = copy.deepcopy(resolved)
        config["model"]["width"] = int(params["model.width"])
        config["paths"]["run_dir"] = str(run_dir)
        return cfg, config

    def _tell(self, trial: optuna.Trial, params: dict, summary: dict, points) -> None:
        """Parameters (as Optuna parameters over the scan's distributions: optuna-dashboard plots them), the
        record, and COMPLETE with the final train SSE (a diverged run: inf; an answer, not a fault). Written
        through the storage itself: the study's caching wrapper knows only the trials it read."""
        tid = trial._trial_id
        for name, dist in self.distributions().items():
            if name in params:
                value = int(params[name]) if isinstance(dist, optuna.distributions.IntDistribution) else params[name]
                self.storage.set_trial_param(tid, name, dist.to_internal_repr(value), dist)
        answer = {f"{float(k.split('/')[1]):.0e}": v for k, v in summary.items() if k.startswith("steps_to/")}
        self.storage.set_trial_user_attr(tid, "record", {
            "answer": answer, "summary": summary, "curve": points,
            "overrides": [*self.scan.base, *(f"{k}={v}" for k, v in params.items())]})
        faults.point("tell")
        value = summary.get("train/sse")
        self.storage.set_trial_state_values(tid, TrialState.COMPLETE, [value if value is not None else float("inf")])

    def distributions(self) -> dict:
        """The scan's parameters as Optuna distributions (optuna-dashboard plots them)."""
        from optuna.distributions import CategoricalDistribution, IntDistribution

        out = {}
        space = self.scan.space if self.scan.space is not None else self.scan.series
        for name in {k for s in space for k in s}:
            values = sorted({s.get(name) for s in space}, key=str)
            out[name] = CategoricalDistribution(values)
        # fixed ranges: a study's parameters keep one distribution whatever part, seeds or range a worker runs
        out["model.width"] = IntDistribution(1, 2**20, log=True)
        out["seed"] = IntDistribution(0, 2**32 - 1)
        return out

    def _status(self) -> str:
        answered, pending = self.states()
        left = sum(not grid.finished(self.scan.rule, s.widths, s.start, self.done(s, answered), s.protocols,
                                     s.headline) for s in self.series)
        return f"{len(answered)} trials done, {len(pending)} waiting or running; {left} of {len(self.series)} series to go"


def _shape(cfg) -> tuple:
    return (int(cfg.model.depth), str(cfg.data.get("name")), int(cfg.data.get("d", cfg.data.get("d_in", 0)) or 0),
            int(cfg.data.get("d_out", 1) or 1), str(cfg.trainer.get("precision")), runner.budget_of(cfg))


def runner_stopped():
    from lightning_grelu.scan.batched import Stopped

    return Stopped


def _answer_from_record(run_dir: str | None) -> dict | None:
    """A trial told by grelu-sweep's worker (or after its worker died): its answer is in its summary."""
    if not run_dir:
        return None
    try:
        s = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    out = {f"{float(k.split('/')[1]):.0e}": v for k, v in s.items() if k.startswith("steps_to/")}
    if s.get("eps") is not None:
        out.setdefault(f"{float(s['eps']):.0e}", s.get("steps_to_eps"))
    return out
