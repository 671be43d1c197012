"""Read the records of an offline W&B run file (``run-*.wandb``), to check what was logged.

The file is W&B's transaction log: a 7-byte header (":W&B", magic 0xBEE1, version), then LevelDB
log blocks of 32 KiB, each record chunk prefixed by crc32 (4 bytes), length (2, little-endian) and
type (1: full, 2: first, 3: middle, 4: last); each whole record is a protobuf ``Record``.
"""

from __future__ import annotations

import struct

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
HEADER = 7


def records(path) -> list:
    data = open(path, "rb").read()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
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
