"""Shared base of the suite's DataModules: whole splits held as tensors (on the training device
when they fit), standardization fitted on the train split only, index-carrying batches.

A dataset subclass implements :meth:`load` and returns raw CPU tensors per split; nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch

from lightning_grelu.data.batches import TensorBatches
from lightning_grelu.errors import ConfigError, MachineError


@dataclass
class Split:
    x: torch.Tensor  # (n, d_in) float
    y: torch.Tensor  # (n, d_out) float

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, device) -> "Split":
        return Split(self.x.to(device, non_blocking=True), self.y.to(device, non_blocking=True))


class DataError(MachineError):
    """A data file is missing or damaged: the machine's data, not the job's parameters (a bad data setting is a
    ConfigError); the message names the file and says what to do."""


class TensorDataModule(L.LightningDataModule):
    def __init__(self, batch_size: int | None = None, shuffle: bool = True, seed: int = 0,
                 standardize_x: bool = False, standardize_y: bool = False, on_device: bool = True,
                 test_every_epoch: bool = False):
        super().__init__()
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ConfigError(f"data.batch_size must be an integer >= 1 or null (full batch), got {batch_size!r}")
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.standardize_x, self.standardize_y, self.on_device = standardize_x, standardize_y, on_device
        self.test_every_epoch = test_every_epoch  # evaluate the test split beside val every epoch (Fig. 3c)
        self.splits: dict[str, Split] = {}
        self._inputs_cache: dict[str, torch.Tensor] = {}

    # -- what a dataset implements -------------------------------------------------------------
    def load(self) -> dict[str, Split]:
        """Return {'train': Split, optionally 'val' and 'test'} as float CPU tensors."""
        raise NotImplementedError

    @property
    def augmented(self) -> bool:
        """True when training inputs change from epoch to epoch (gates must then be recomputed)."""
        return False

    num_classes: int | None = None  # set by classification data sets (one-hot targets): accuracy is logged

    raw_storage = False  # True: stored rows are not network inputs yet (e.g. uint8 images); see featurize

    # The floating dtype of inputs and targets; train() sets float64 under trainer.precision=64-true,
    # so that a float64 run is float64 end to end (data sets compute in float64 and are cast here).
    dtype: torch.dtype = torch.float32

    def featurize(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """Turn stored rows into network inputs, per batch. Image data sets keep uint8 images on
        the device and augment (train only), standardize and flatten here."""
        return x

    # -- shared machinery ----------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        splits = {k: Split(self._cast(s.x), self._cast(s.y)) for k, s in self.load().items()}
        train = splits["train"]
        if self.standardize_x:
            mu, sd = train.x.mean(0), train.x.std(0).clamp_min(1e-12)
            splits = {k: Split((s.x - mu) / sd, s.y) for k, s in splits.items()}
        if self.standardize_y:
            mu, sd = train.y.mean(0), train.y.std(0).clamp_min(1e-12)
            splits = {k: Split(s.x, (s.y - mu) / sd) for k, s in splits.items()}
        self.splits = splits

    def _cast(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.dtype) if t.is_floating_point() else t  # raw uint8 images stay as they are

    @property
    def d_in(self) -> int:
        return self.featurize(self.splits["train"].x[:1], train=False).shape[1]

    @property
    def d_out(self) -> int:
        return self.splits["train"].y.shape[1]

    def _device(self) -> torch.device:
        if self.on_device and self.trainer is not None:
            return self.trainer.strategy.root_device
        return torch.device("cpu")

    def split(self, name: str) -> Split:
        """A split, moved (once) to the training device."""
        s = self.splits[name]
        dev = self._device()
        if s.x.device != dev:
            s = self.splits[name] = s.to(dev)
        return s

    def inputs(self, name: str) -> torch.Tensor:
        """All (unaugmented) network inputs of a split, row i = sample index i."""
        x = self.split(name).x
        if not self.raw_storage:
            return x
        cached = self._inputs_cache.get(name)
        if cached is None or cached.device != x.device:
            cached = self._inputs_cache[name] = torch.cat(
                [self.featurize(x[i:i + 4096], train=False) for i in range(0, x.shape[0], 4096)])
        return cached

    def train_inputs(self) -> torch.Tensor:
        """The fixed (unaugmented) training inputs: what gate caches and the GReLU->ReLU solve use."""
        return self.inputs("train")

    def _batches(self, name: str, shuffle: bool) -> TensorBatches:
        s = self.split(name)
        t = self.trainer
        train = name == "train"
        return TensorBatches(s.x, s.y, self.batch_size, shuffle=shuffle, seed=self.seed,
                             rank=t.global_rank if t else 0, world_size=t.world_size if t else 1,
                             epoch=(lambda: t.current_epoch) if t else (lambda: 0),
                             featurize=(lambda x: self.featurize(x, train=train)) if self.raw_storage else None)

    def train_dataloader(self):
        return self._batches("train", self.shuffle)

    @property
    def eval_splits(self) -> list[str]:
        """The splits the validation loop runs, in dataloader order."""
        names = ["val"] if "val" in self.splits else []
        return names + (["test"] if self.test_every_epoch and "test" in self.splits else [])

    def val_dataloader(self):
        return [self._batches(name, False) for name in self.eval_splits]

    def test_dataloader(self):
        return self._batches("test", False) if "test" in self.splits else []
