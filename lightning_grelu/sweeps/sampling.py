"""Samplers whose draw for a trial depends on ``(sweep.seed, trial.number)`` only.

An Optuna sampler seeded once draws one stream per process: W workers started with the same
``sweep.seed`` (or one worker restarted) draw the same first points, so a sweep of W workers explores 1/W
of what it pays for. :class:`PerTrialSeed` reseeds the sampler's random states (TPE's own and that of the
random sampler inside it, which draws TPE's start-up trials) from the seed and the trial's number just
before the trial samples: distinct trials get distinct streams on any worker, and the same seed gives the
same point to the same trial number again. Draws that read the study's history (TPE after its start-up
trials) also depend on which trials had finished, which with several workers depends on timing.
"""

from __future__ import annotations

import numpy as np
import optuna
from optuna.samplers import BaseSampler
from optuna.samplers._lazy_random_state import LazyRandomState

from lightning_grelu.sweeps.spec import SweepSpec


def trial_seed(seed: int, number: int) -> int:
    """A 32-bit seed of its own for trial ``number`` of a sweep seeded ``seed`` (numpy's SeedSequence mixes
    the two, so neighbouring seeds or numbers give unrelated streams)."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def reseed(sampler: BaseSampler, seed: int) -> int:
    """Seed every random state the sampler holds (and those of samplers inside it); returns how many."""
    found = 0
    for value in vars(sampler).values():
        if isinstance(value, LazyRandomState):
            value.rng.seed(seed)
            found += 1
        elif isinstance(value, np.random.RandomState):
            value.seed(seed)
            found += 1
        elif isinstance(value, BaseSampler):
            found += reseed(value, seed)
    return found


class PerTrialSeed(BaseSampler):
    """``inner``, reseeded from ``(seed, trial.number)`` before each trial (``optuna.Trial`` calls
    ``before_trial`` when it is made, before any parameter is drawn)."""

    def __init__(self, inner: BaseSampler, seed: int):
        if reseed(inner, 0) == 0:  # an Optuna that keeps its random state elsewhere: say so, do not go on unseeded
            raise RuntimeError(f"{type(inner).__name__} holds no random state this suite knows how to seed")
        self.inner, self.seed = inner, seed

    def before_trial(self, study, trial) -> None:
        reseed(self.inner, trial_seed(self.seed, trial.number))
        self.inner.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self.inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:  # Optuna calls this on copies made for n_jobs > 1: the per-trial seed stays
        pass


def make_sampler(spec: SweepSpec) -> BaseSampler:
    if spec.sampler == "tpe":  # constant liar: parallel workers do not all sample around the same point
        inner = optuna.samplers.TPESampler(seed=spec.seed, constant_liar=True)
    else:  # grid points arrive as fixed params; the random sampler draws the rest
        inner = optuna.samplers.RandomSampler(seed=spec.seed)
    return PerTrialSeed(inner, spec.seed)
