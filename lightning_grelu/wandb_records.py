"""Read the records of a W&B run file (``run-*.wandb``): what a run logged, and whether W&B has closed it.

The file is W&B's transaction log: a 7-byte header (":W&B", magic 0xBEE1, version), then LevelDB
log blocks of 32 KiB, each record chunk prefixed by crc32 (4 bytes), length (2, little-endian) and
type (1: full, 2: first, 3: middle, 4: last); each whole record is a protobuf ``Record``.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
HEADER = 7


def records(path) -> list:
    data = open(path, "rb").read()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    out, pos, pending = [], HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0 and length == 0:
            pos += left
            continue
        if pos + HEADER + length > len(data):  # a record W&B is still writing
            break
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            r = pb.Record()
            r.ParseFromString(pending)
            out.append(r)
            pending = b""
    return out


def _keys(path, record_type: str, field: str) -> set[str]:
    keys = set()
    for r in records(path):
        if r.WhichOneof("record_type") == record_type:
            items = getattr(getattr(r, record_type), field)
            keys.update(i.key or "/".join(i.nested_key) for i in items)
    return keys


def history_keys(path) -> set[str]:
    return _keys(path, "history", "item")


def config_keys(path) -> set[str]:
    return _keys(path, "config", "update")


def is_closed(path) -> bool:
    """The run's exit record is on disk: W&B writes it at the end of the run, and the records before it are
    on disk too (the file is written in order)."""
    try:
        return any(r.WhichOneof("record_type") == "exit" for r in records(path))
    except (OSError, ValueError):  # not there yet, or not even the header written
        return False


def wait_until_closed(path, timeout_s: float = 60.0) -> bool:
    """``wandb.finish()`` returns before the W&B service has flushed the run file (it only informs the service);
    wait until the file holds the exit record, so whoever reads or syncs the run next sees all of it. The file
    is parsed again only when it has grown (a long run's file is large)."""
    deadline, parsed_size = time.monotonic() + timeout_s, None
    while True:
        size = Path(path).stat().st_size if Path(path).exists() else None
        if size != parsed_size:
            if is_closed(path):
                return True
            parsed_size = size
        if time.monotonic() > deadline or not Path(path).parent.exists():
            return False
        time.sleep(0.05)
