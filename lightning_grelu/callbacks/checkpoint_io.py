"""Checkpoints written atomically and without a second copy in memory: ``torch.save`` into a temp file
beside the destination, fsync, rename. A crash at any moment leaves the previous checkpoint (and
``last.ckpt``) whole. Lightning's default first serializes into a BytesIO, which doubles host memory
for the theory-width nets (a 4 x 40,000^2 net is 6.4 GB of weights)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from lightning_grelu import faults


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if "://" in str(path):  # remote storage: Lightning's own transactional write
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            faults.point("checkpoint")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
