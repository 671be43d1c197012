"""Optuna storages from one URL: ``sqlite:///file.db`` (one machine), ``journal:///path/to/file.log``
(many workers on a shared filesystem), ``postgresql://user@host/db`` (a cluster). RDB storages get
heartbeats, so a trial whose worker died is noticed (and retried on PostgreSQL)."""

from __future__ import annotations

import json
import os
import random
import threading
import time
import warnings
from pathlib import Path

import optuna

from lightning_grelu import errors
from lightning_grelu.errors import ConfigError, MachineError, storage_failure

HEARTBEAT_S = 10
WATCH_S = 1.0  # how often a worker looks at its storage file while a trial runs (one stat)
DB_TIMEOUT_S = float(os.environ.get("GRELU_DB_TIMEOUT_S", 30))  # default bound on connecting to and each statement of a database (sweep.db_timeout_s)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental"


SCHEMES = ("sqlite:///", "journal://", "postgresql://", "postgresql+psycopg2://", "postgresql+psycopg://", "mysql")


def check_url(url: str) -> None:
    """A storage URL of a kind this suite opens (checked when the spec is read, before anything is made)."""
    if not str(url).startswith(SCHEMES):
        raise ConfigError(f"sweep.storage {url!r}: use sqlite:///file.db, journal:///file.log or postgresql://...")



class _Journal(optuna.storages.journal.JournalFileBackend):
    """Optuna's journal file, with appends that are all or nothing: a write that fails midway (a full disk) is cut
    back, so the file never holds a torn line (Optuna's reader stops at one for good: the study could not be read
    again), and a deleted journal is not re-made by the next append (it would hold only what follows).

    ``fsync_each=False`` (a width scan, some 13 operations per trial at 3 ms each here): appends still take the
    file lock and reach the file at once, so a killed worker loses nothing; :func:`sync` makes them durable,
    which a width scan does after every batch (a power cut loses at most the batch in hand, which is run again)."""

    def __init__(self, path: str, lock_obj, fsync_each: bool = True):
        super().__init__(path, lock_obj=lock_obj)
        self.fsync_each = fsync_each

    def append_logs(self, logs):
        from optuna.storages.journal._file import get_lock_file

        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode("utf-8")
        with get_lock_file(self._lock):
            fd = os.open(self._file_path, os.O_WRONLY | os.O_APPEND)
            try:
                start = os.lseek(fd, 0, os.SEEK_END)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    if self.fsync_each:
                        os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, start)
                    raise
            finally:
                os.close(fd)

    def sync(self) -> None:
        with open(self._file_path, "ab") as f:
            os.fsync(f.fileno())


def sync(storage) -> None:
    """Make a storage's writes durable where they are not at once (a width scan's journal)."""
    backend = getattr(storage, "_backend", None)
    if isinstance(backend, _Journal) and not backend.fsync_each:
        backend.sync()


def make_storage(url: str, retry_dead: bool, timeout_s: float = DB_TIMEOUT_S, create: bool = True,
                 fsync_each: bool = True):
    """``timeout_s`` bounds connecting and each statement on PostgreSQL (a server that accepts a connection
    and never answers cannot hang a worker or a report) and waiting for SQLite's write lock. ``create=False``
    (readers: grelu-report) refuses a file storage that does not exist instead of making one."""
    if url.startswith("journal://"):
        path = Path(url[len("journal://"):])
        _check_parent(path, url, create)
        lock = optuna.storages.journal.JournalFileOpenLock(str(path))
        try:
            return optuna.storages.JournalStorage(_Journal(str(path), lock_obj=lock, fsync_each=fsync_each))
        except OSError as e:
            raise MachineError(f"sweep.storage {url!r} cannot be opened: {e.strerror or e}") from None
    if url.startswith("postgresql://"):  # the driver this suite installs: psycopg 3
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("sqlite:///"):
        _check_parent(Path(url[len("sqlite:///"):]), url, create)
    elif not url.startswith(("postgresql+psycopg2://", "postgresql+psycopg://", "mysql")):
        raise ConfigError(f"sweep.storage {url!r}: use sqlite:///file.db, journal:///file.log or postgresql://...")
    callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3) if retry_dead else None
    sqlite = url.startswith("sqlite")
    # SQLite: pysqlite's own transaction handling is switched off (isolation_level None) so that
    # _serialize_sqlite can open every transaction itself.
    if sqlite:
        kwargs = {"connect_args": {"timeout": max(timeout_s, 60), "isolation_level": None}}
    elif url.startswith("postgresql+psycopg"):
        kwargs = {"pool_pre_ping": True, "connect_args": {
            "connect_timeout": max(1, round(timeout_s)),
            "options": f"-c statement_timeout={int(timeout_s * 1000)}",
            # a server that goes silent mid-session: the kernel gives up on the connection
            "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
            "tcp_user_timeout": int(timeout_s * 1000)}}
    else:
        kwargs = {"pool_pre_ping": True}
    storage = retrying(lambda: optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S,
                                                          grace_period=3 * HEARTBEAT_S,
                                                          heartbeat_stale_trial_callback=callback,
                                                          engine_kwargs=kwargs), f"sweep.storage {url!r}", timeout_s)
    if sqlite:
        _serialize_sqlite(storage.engine)
    return storage


def _check_parent(path: Path, url: str, create: bool) -> None:
    """The storage file's folder exists (or can be made) and is writable: one line now, not a traceback later."""
    parent = path.parent
    if not create and not path.exists():
        raise ConfigError(f"sweep.storage {url!r}: {path} does not exist (check the path; a sweep's out_dir/study.json "
                          "names the storage its trials belong to)")
    try:
        if create:
            parent.mkdir(parents=True, exist_ok=True)
        elif not parent.is_dir():
            raise ConfigError(f"sweep.storage {url!r}: the folder {parent} does not exist (check the path)")
    except OSError as e:
        raise MachineError(f"sweep.storage {url!r}: cannot make {parent}: {e.strerror or e}") from None
    if create and (not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK))):
        raise MachineError(f"sweep.storage {url!r}: {path if path.exists() else parent} is not writable "
                           "(a read-only filesystem?); put the storage where this worker can write")


def _serialize_sqlite(engine) -> None:
    """Claiming a trial is read-check-write (WAITING -> RUNNING). SQLite ignores SELECT ... FOR UPDATE
    and pysqlite only begins a transaction at the first write, so two workers could both read WAITING
    and both claim the trial (measured: 233 claims of 200 trials with 4 workers). BEGIN IMMEDIATE takes
    the write lock before the read, so each transaction sees what the one before it committed."""
    from sqlalchemy import event

    def wal(dbapi_conn, record):  # write-ahead log: a commit is an append, synced at checkpoints, not each time
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    event.listen(engine, "connect", wal)
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    engine.dispose()  # connections pooled while the storage was built began transactions the old way


# PostgreSQL SQLSTATEs worth another try: serialization failure, deadlock, too many connections, the
# server starting or shutting down, and the schema races of workers that start together.
TRANSIENT_SQLSTATES = {"40001", "40P01", "53300", "57P01", "57P02", "57P03", "42710", "42P07", "23505"}


def classify(e: BaseException) -> str:
    """``transient`` (retry), ``timeout`` or ``permanent``, from the driver's own error classes and codes."""
    orig = getattr(e, "orig", None) or e
    try:
        import psycopg
    except ImportError:  # no PostgreSQL driver: only SQLite can have raised
        psycopg = None
    if psycopg is not None and isinstance(orig, psycopg.Error):
        state = getattr(orig, "sqlstate", None)
        if state in TRANSIENT_SQLSTATES:
            return "transient"
        if state == "57014" or isinstance(orig, psycopg.errors.ConnectionTimeout):  # statement/connect timeout
            return "timeout"
        if state is None and "timeout" in str(orig).lower():  # libpq's connect_timeout has no SQLSTATE
            return "timeout"
        return "permanent"  # a refused port, an unknown database or user, a bad password: retrying cannot help
    import sqlite3

    if isinstance(orig, sqlite3.IntegrityError):  # workers starting together create the schema twice
        return "transient"
    if isinstance(orig, sqlite3.OperationalError) and any(
            w in str(orig) for w in ("locked", "busy", "locking protocol", "already exists")):
        return "transient"  # another worker holds the write lock or is setting up the write-ahead log
    return "permanent"


def retrying(make, what: str, timeout_s: float = DB_TIMEOUT_S, tries: int = 8):
    """Workers started together race to create the same tables and study: transient database errors are
    retried with jittered exponential back-off, within ``timeout_s`` in all; anything else fails at once,
    in one line that says which kind it was."""
    from sqlalchemy.exc import SQLAlchemyError

    t0 = time.monotonic()
    for attempt in range(tries):
        try:
            return make()
        except optuna.exceptions.DuplicatedStudyError:
            raise
        except (SQLAlchemyError, OSError, optuna.exceptions.StorageInternalError) as e:
            if isinstance(e, optuna.exceptions.StorageInternalError) and e.__cause__ is not None:
                e = e.__cause__  # Optuna's wrapper of the database's own error ("An exception is raised during the commit")
            kind = classify(e)
            first = (str(getattr(e, "orig", None) or e).strip().splitlines() or [type(e).__name__])[0]
            late = time.monotonic() - t0 > timeout_s or attempt == tries - 1
            if kind != "transient" or late:
                label = {"transient": f"still failing after {attempt + 1} tries", "timeout":
                         f"no answer within {timeout_s:g} s (sweep.db_timeout_s)", "permanent": "permanent error"}[kind]
                raise StorageError(f"{what} cannot be opened ({label}): {first}") from None
            time.sleep(min(2.0, 0.05 * 2 ** attempt) * (0.5 + random.random()))
        except Exception as e:
            raise StorageError(f"{what} cannot be opened: {type(e).__name__}: {str(e).splitlines()[0]}") from None


class StorageError(MachineError):
    """The study's storage cannot be reached or used: the machine's (or the server's) problem, not the sweep's."""


def storage_file(url: str) -> Path | None:
    """The file of a file storage (SQLite, journal), or None (a database server)."""
    for scheme in ("sqlite:///", "journal://"):
        if url.startswith(scheme):
            return Path(url[len(scheme):]).absolute()
    return None


class Watch:
    """A file storage that is deleted, replaced or truncated under a running worker: SQLite goes on writing to
    the deleted file (every result then lost, exit 0) or fails later with a "malformed" traceback, and a journal
    is re-made by the next append holding only what follows. :meth:`check` (one stat) says so instead."""

    def __init__(self, url: str):
        self.url, self.path = url, storage_file(url)
        self.ident = self.size = None
        if self.path is not None:
            try:
                st = os.stat(self.path)
            except OSError:
                self.path = None  # not made yet by this process (a database server, or nothing to watch)
            else:
                self.ident, self.size = (st.st_dev, st.st_ino), st.st_size

    def check(self) -> None:
        if self.path is None:
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self.url.startswith("sqlite"):  # the deleted database's write-ahead log would be replayed into a
                for suffix in ("-wal", "-shm"):  # restored copy and damage it: SQLite removes it only if the
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)  # database is still there at its close
            raise StorageError(f"{self.path} was deleted") from None
        if (st.st_dev, st.st_ino) != self.ident:
            raise StorageError(f"{self.path} was replaced by another file")
        if st.st_size < self.size:
            raise StorageError(f"{self.path} was truncated ({self.size} -> {st.st_size} bytes)")
        self.size = st.st_size


def beat(storage, trial_ids: list[int]) -> None:
    """A heartbeat for trials this worker holds (RDB storages). Taken at a claim too: a trial put back in the
    queue keeps its last heartbeat, which other workers would otherwise find stale the moment it runs again."""
    if isinstance(storage, optuna.storages.RDBStorage):
        for tid in trial_ids:
            storage.record_heartbeat(tid)


class Keeper:
    """While a worker holds trials: their heartbeats (RDB storages) and the storage :class:`Watch`, in a thread
    that never prints a traceback. The first failure is kept in ``failure`` and ``on_failure`` is called once
    (a worker stops its trial process, which keeps its checkpoint)."""

    def __init__(self, storage, watch: Watch, trial_ids: list[int], on_failure=None):
        self.storage, self.watch, self.trial_ids, self.on_failure = storage, watch, trial_ids, on_failure
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Keeper":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        beat = time.monotonic()
        rdb = isinstance(self.storage, optuna.storages.RDBStorage)
        while not self._stop.wait(WATCH_S):
            try:
                self.watch.check()
                if rdb and time.monotonic() - beat >= HEARTBEAT_S / 2:
                    for tid in self.trial_ids:
                        self.storage.record_heartbeat(tid)
                    beat = time.monotonic()
            except Exception as e:  # noqa: BLE001 - kept and told by the worker, in one line
                self.failure = e
                if self.on_failure is not None:
                    self.on_failure()
                return


def storage_cause(e: BaseException, watch: Watch) -> BaseException | None:
    """The storage's part in a worker's failure, or None: its file went away or was cut (whatever failed first,
    that is the cause), a database error, or a journal's own write failing for the machine's reason (its disk
    full or read-only: journals fail as OSError)."""
    try:
        watch.check()
    except StorageError as gone:
        return gone
    if isinstance(e, StorageError) or storage_failure(e):
        return e
    if isinstance(e, OSError) and watch.url.startswith("journal") and errors.classify(e) == "machine":
        return e
    return None


def lost(url: str, e: BaseException, in_hand: str) -> StorageError:
    """The one line for a storage that failed under a running worker: what happened, what became of the trial
    in hand, what to do."""
    cause = e if isinstance(e, StorageError) else (e.__cause__ or e)
    what = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    return StorageError(f"the study's storage {url} failed while this worker ran ({what}); {in_hand}; finished "
                        "trials keep their records. Restore the storage (e.g. from a backup) or fix its disk (space, "
                        "permissions) and start the worker again, or start a new sweep in another sweep.out_dir")


LOCK_STALE_S = 120.0  # an enqueue lock older than this was left by a dead worker


class StudyLock:
    """A lock over one study's enqueueing, on any storage: the marker study ``<name>:enqueue-lock`` (Optuna
    lets exactly one create succeed). A marker older than LOCK_STALE_S was left by a dead worker; ``holder``
    names the worker that holds it."""

    def __init__(self, storage, name: str, holder: str):
        self.storage, self.name, self.holder = storage, name, holder

    def __enter__(self):
        while True:
            try:
                marker = optuna.create_study(study_name=self.name, storage=self.storage)
                marker.set_user_attr("since", time.time())
                marker.set_user_attr("holder", self.holder)
                return self
            except optuna.exceptions.DuplicatedStudyError:
                try:
                    since = optuna.load_study(study_name=self.name, storage=self.storage).user_attrs.get("since")
                    if since is not None and time.time() - since > LOCK_STALE_S:
                        optuna.delete_study(study_name=self.name, storage=self.storage)
                except KeyError:
                    pass  # released meanwhile
                time.sleep(0.05)

    def __exit__(self, *exc):
        try:
            optuna.delete_study(study_name=self.name, storage=self.storage)
        except KeyError:
            pass
        return False
