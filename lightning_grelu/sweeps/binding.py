"""A sweep's out_dir belongs to one study: ``<out_dir>/study.json`` names it (study name, storage, and the uid
the study was created with). Trial folders ``<out_dir>/trials/NNNNN`` are numbered by the study, so two studies
in one out_dir would share folders, and a study re-created after its storage was lost would run its trials
into the old ones: both are refused before anything is written.

The file is created once, atomically (``os.link`` of a complete temp file), so of two workers binding at
the same moment one wins and the other checks against it."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import optuna

from lightning_grelu.errors import ConfigError
from lightning_grelu.run_dir import RESUMABLE, changed_keys

NAME = "study.json"


def read(out_dir: Path) -> dict | None:
    try:
        return json.loads((Path(out_dir) / NAME).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{Path(out_dir) / NAME} is unreadable ({e}); it names the study whose trials are in "
                          "sweep.out_dir: restore it, or choose another sweep.out_dir") from None


def _describe(b: dict) -> str:
    return f"study {b.get('name')!r} (uid {str(b.get('uid'))[:8]}) in {b.get('storage')}"


def check_before_open(bound: dict, spec, storage) -> None:
    """Before a worker creates or opens a study: out_dir's study must be this sweep's, and still exist."""
    if bound.get("name") != spec.name:
        raise ConfigError(f"sweep.out_dir {spec.out_dir} holds the trials of {_describe(bound)}, not of "
                          f"{spec.name!r}: choose another sweep.out_dir")
    try:
        study = optuna.load_study(study_name=spec.name, storage=storage)
    except KeyError:
        raise ConfigError(f"sweep.out_dir {spec.out_dir} holds the trials of {_describe(bound)}, but the storage "
                          f"{spec.storage_url()} has no such study (was it deleted, truncated or replaced?): restore "
                          "the storage, or choose another sweep.out_dir for a new study") from None
    uid = study.user_attrs.get("uid")
    if uid is not None and bound.get("uid") not in (None, uid):
        raise ConfigError(f"sweep.out_dir {spec.out_dir} holds the trials of {_describe(bound)}, but the storage's "
                          f"study {spec.name!r} is another one (uid {uid[:8]}; was it re-created?): restore the "
                          "storage, or choose another sweep.out_dir")


def bind(out_dir: Path, spec, study: optuna.Study) -> None:
    out_dir = Path(out_dir)
    want = {"name": spec.name, "storage": spec.storage_url(), "uid": study.user_attrs.get("uid")}
    bound = read(out_dir)
    if bound is None:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{NAME}.", dir=out_dir)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(want, indent=2) + "\n")
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, out_dir / NAME)  # fails if another worker bound first
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        bound = read(out_dir)
    if bound.get("name") != want["name"] or (want["uid"] and bound.get("uid") not in (None, want["uid"])):
        raise ConfigError(f"sweep.out_dir {out_dir} holds the trials of {_describe(bound)}, not of "
                          f"{_describe(want)}: choose another sweep.out_dir")


# What a study's trials may differ in: where things go, what is logged or probed, and the hardware (as a
# resume may: run_dir.RESUMABLE) but not the step budget, which a resume may extend and a study may not.
STUDY_FREE = tuple(k for k in RESUMABLE if k != "trainer.max_epochs")


def _protocol(spec, base: list[str]) -> dict:
    """The config a trial composes to from ``base`` at one fixed point of the space."""
    from omegaconf import OmegaConf

    from lightning_grelu.sweeps.run_trial import compose_trial

    return OmegaConf.to_container(compose_trial("/tmp/unused", [*base, *spec.sample_overrides()]), resolve=True)


def check_spec(study: optuna.Study, spec) -> None:
    """An existing study is one protocol: this worker's ``sweep.base`` (and trial_overrides) must give its trials
    the config the study's trials had, up to keys that do not change the science (STUDY_FREE); its objectives
    must be the study's. Otherwise one line names the first changed key and how to start a new study."""
    recorded = study.user_attrs.get("spec") or {}
    own_dir = "" if spec.out_dir == f"sweeps_out/{spec.name}" else " and a sweep.out_dir of its own"
    new_study = f"start a new study with sweep.name={spec.name}_2{own_dir}, or run with the study's own settings"
    if "objectives" in recorded and [list(o) for o in recorded["objectives"]] != [list(o) for o in spec.objectives]:
        raise ConfigError(f"study {spec.name!r} optimizes {recorded['objectives']}, not {spec.objectives} "
                          f"(sweep.objectives); {new_study}")
    if "base" not in recorded or list(recorded["base"]) == list(spec.base):
        return
    diff = changed_keys(_protocol(spec, list(recorded["base"])), _protocol(spec, spec.base), free=STUDY_FREE)
    if diff:
        key, old, new = diff[0]
        more = f" (and {len(diff) - 1} more)" if len(diff) > 1 else ""
        raise ConfigError(f"sweep.base changes {key} of study {spec.name!r}: {old!r} -> {new!r}{more}, and its trials "
                          f"ran with {old!r}; {new_study}")
