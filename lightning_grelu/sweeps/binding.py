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
