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
    sqlite = url.startswith("sqlite")
    # SQLite: pysqlite's own transaction handling is switched off (isolation_level None) so that
    # _serialize_sqlite can open every transaction itself.
    kwargs = {"connect_args": {"timeout": 60, "isolation_level": None}} if sqlite else {"pool_pre_ping": True}
    storage = retrying(lambda: optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S,
                                                          grace_period=3 * HEARTBEAT_S,
                                                          heartbeat_stale_trial_callback=callback,
                                                          engine_kwargs=kwargs), f"sweep.storage {url!r}")
    if sqlite:
        _serialize_sqlite(storage.engine)
    return storage


def _serialize_sqlite(engine) -> None:
    """Claiming a trial is read-check-write (WAITING -> RUNNING). SQLite ignores SELECT ... FOR UPDATE
    and pysqlite only begins a transaction at the first write, so two workers could both read WAITING
    and both claim the trial (measured: 233 claims of 200 trials with 4 workers). BEGIN IMMEDIATE takes
    the write lock before the read, so each transaction sees what the one before it committed."""
    from sqlalchemy import event

    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    engine.dispose()  # connections pooled while the storage was built began transactions the old way


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
