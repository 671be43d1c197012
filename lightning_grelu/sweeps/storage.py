"""Optuna storages from one URL: ``sqlite:///file.db`` (one machine), ``journal:///path/to/file.log``
(many workers on a shared filesystem), ``postgresql://user@host/db`` (a cluster). RDB storages get
heartbeats, so a trial whose worker died is noticed (and retried on PostgreSQL)."""

from __future__ import annotations

import random
import time
import warnings
from pathlib import Path

import optuna

from lightning_grelu.errors import ConfigError

HEARTBEAT_S = 10
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental"


def make_storage(url: str, retry_dead: bool):
    if url.startswith("journal://"):
        path = Path(url[len("journal://"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = optuna.storages.journal.JournalFileOpenLock(str(path))
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path), lock_obj=lock))
    if url.startswith("postgresql://"):  # the driver this suite installs: psycopg 3
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    elif not url.startswith(("postgresql://", "postgresql+psycopg2://", "postgresql+psycopg://", "mysql")):
        raise ConfigError(f"sweep.storage {url!r}: use sqlite:///file.db, journal:///file.log or postgresql://...")
    callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3) if retry_dead else None
    kwargs = {"pool_pre_ping": True} if "sqlite" not in url else {"connect_args": {"timeout": 60}}
    return retrying(lambda: optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S,
                                                       grace_period=3 * HEARTBEAT_S,
                                                       heartbeat_stale_trial_callback=callback,
                                                       engine_kwargs=kwargs), f"sweep.storage {url!r}")


def retrying(make, what: str, tries: int = 20):
    """Workers started together race to create the same tables and study: retry transient database
    errors with jittered back-off; anything else (bad URL, server down, missing driver) fails at once."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(tries):
        try:
            return make()
        except (OperationalError, IntegrityError, ProgrammingError) as e:
            # PostgreSQL: two workers creating the schema at once -> "type ... already exists" (DuplicateObject)
            if isinstance(e, ProgrammingError) and "already exists" not in str(e):
                raise ConfigError(f"{what} cannot be opened: {type(e).__name__}: {str(e).splitlines()[0]}") from None
            if attempt == tries - 1 or "unable to open" in str(e) or "could not connect" in str(e):
                raise ConfigError(f"{what} cannot be opened: {type(e).__name__}: {str(e).splitlines()[0]}") from None
            time.sleep(0.05 + random.random() * 0.2 * (attempt + 1))
        except optuna.exceptions.DuplicatedStudyError:
            raise
        except Exception as e:
            raise ConfigError(f"{what} cannot be opened: {type(e).__name__}: {str(e).splitlines()[0]}") from None
