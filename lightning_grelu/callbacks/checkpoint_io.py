"""Checkpoints written atomically, without a second copy in memory, and verifiable.

``torch.save`` streams into a temp file beside the destination (hashing the bytes as they go), fsync,
rename. A crash at any moment leaves the previous checkpoint (and ``last.ckpt``) whole. Lightning's
default first serializes into a BytesIO, which doubles host memory for the theory-width nets (a
4 x 40,000^2 net is 6.4 GB of weights).

Beside each checkpoint, ``<name>.sha256`` holds the SHA-256 of its bytes, so a resume can tell a
checkpoint this suite wrote from one that was truncated or had bytes flipped since. While a checkpoint
is being replaced the file lists the old and the new digest (either file is then genuine); after the
rename only the new one.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from lightning_grelu import faults
from lightning_grelu.errors import ConfigError


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_small(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def digests(path: Path) -> list[str] | None:
    """The digests recorded for ``path``; None when it has no sidecar (a checkpoint from elsewhere)."""
    try:
        return _sidecar(Path(path)).read_text().split()
    except FileNotFoundError:
        return None


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


class _Hashing:
    """A write-only file that hashes what passes through it (torch.save needs only write and flush)."""

    def __init__(self, f):
        self.f, self.h = f, hashlib.sha256()

    def write(self, b):
        self.h.update(b)
        return self.f.write(b)

    def flush(self):
        self.f.flush()


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if "://" in str(path):  # remote storage: Lightning's own transactional write
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                out = _Hashing(f)
                torch.save(checkpoint, out)
                f.flush()
                os.fsync(f.fileno())
            new = out.h.hexdigest()
            old = (digests(path) or [])[-1:] if path.exists() else []
            _write_small(_sidecar(path), "\n".join([*old, new]) + "\n")  # old or new file: either verifies
            faults.point("checkpoint")
            os.replace(tmp, path)
            _write_small(_sidecar(path), new + "\n")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def remove_checkpoint(self, path) -> None:
        super().remove_checkpoint(path)
        if "://" not in str(path):
            _sidecar(Path(path)).unlink(missing_ok=True)


def epochs_done(ckpt: dict) -> int:
    """Epochs a checkpoint holds: its fit loop's processed epochs (a checkpoint taken at an epoch's end says
    ``epoch`` = that epoch's index; the one Lightning takes when training ends says the count)."""
    try:
        return int(ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        return int(ckpt.get("epoch", -1)) + 1


def verify(path: str | Path, model, max_epochs: int) -> None:
    """Before a resume writes anything: the checkpoint is the one this suite wrote (its checksum, where it
    has one), holds this net (same weights and shapes) and does not lie beyond ``trainer.max_epochs``."""
    path = Path(path)
    recorded = digests(path)
    if recorded is not None and sha256(path) not in recorded:
        raise ConfigError(f"checkpoint {path} does not match its checksum ({path.name}.sha256): it was truncated or "
                          "changed since it was written; resume from another checkpoint (ckpt_path=...) or start over "
                          "in a new paths.run_dir")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as e:
        raise ConfigError(f"checkpoint {path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0]}); "
                          "resume from another checkpoint or start over in a new paths.run_dir") from None
    theirs = {k: tuple(v.shape) for k, v in ckpt.get("state_dict", {}).items()}
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if theirs != ours:
        diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        k = diff[0]
        raise ConfigError(f"checkpoint {path} holds another net ({k}: {theirs.get(k, 'missing')} in the checkpoint, "
                          f"{ours.get(k, 'missing')} here); resume with the run's own model settings")
    done = epochs_done(ckpt)
    if done > max_epochs:
        raise ConfigError(f"checkpoint {path} is at epoch {done}, beyond trainer.max_epochs={max_epochs}; "
                          f"resume with trainer.max_epochs >= {done}")
