"""Atomic writes: a reader, or a writer killed at any moment, sees the old file (or directory) or the
new one, never half of one. Files: temp file + rename; directories: built beside, then swapped in."""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from lightning_grelu import faults


def write_atomic(path: Path, text: str, fault: str | None = None) -> None:
    """``fault``: a crash point (see faults.py) between writing the temp file and renaming it."""
    path = Path(path)
    # a temp name of this writer's own: two writers never share one (a fixed name let one rename the
    # other's file away, and the other die with FileNotFoundError)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; records are for reading
        if fault:
            faults.point(fault)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_csv_atomic(path: Path, rows: list[dict], fieldnames: list[str], fault: str | None = None) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fieldnames)
    w.writeheader()
    w.writerows(rows)
    write_atomic(path, buf.getvalue(), fault=fault)


def unwritable(path: Path) -> str | None:
    """Why nothing could be made at ``path`` (checked before a command does any work), or None: the deepest
    folder on the way that exists is not a directory, or not writable."""
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


@contextmanager
def atomic_dir(dest: Path):
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; results are for reading
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = dest.parent / f".{dest.name}.old-{os.getpid()}"
    if dest.exists():
        dest.rename(old)  # two renames: the window between them leaves dest missing, never half-written
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
