"""Shared base of the image classification data sets (CIFAR-10, Fashion-MNIST), posed as the paper
poses CIFAR-10: flattened pixels in, the one-hot label as a 10-d regression target, squared loss;
accuracy is logged beside it.

Images stay uint8 on the training device (CIFAR-10: 150 MB) and become inputs per batch: optional
RandAugment (train only, per sample: each image draws its own ops), then /255, per-channel
standardization with mean/std of the train split, flatten, and (``unit_norm``, default) scaling to
||x|| = 1 as the theory assumes. A validation split can be carved from
train with its own seed; test is the official test set.
"""

from __future__ import annotations

import torch

from lightning_grelu.data.base import DataError, Split, TensorDataModule
from lightning_grelu.data.randaugment import BatchRandAugment
from lightning_grelu.errors import ConfigError


class ImageDataModule(TensorDataModule):
    raw_storage = True
    num_classes = 10

    def __init__(self, data_dir: str | None = None, download: bool = False, augment: bool = False,
                 num_ops: int = 2, magnitude: int = 9, val_size: int = 0, split_seed: int = 0,
                 limit_train: int | None = None, unit_norm: bool = True, **base):
        base["standardize_x"] = False  # images are standardized per channel in featurize
        super().__init__(**base)
        if not isinstance(val_size, int) or val_size < 0:
            raise ConfigError(f"data.val_size must be an integer >= 0, got {val_size!r}")
        if limit_train is not None and (not isinstance(limit_train, int) or limit_train < 1):
            raise ConfigError(f"data.limit_train must be an integer >= 1 or null, got {limit_train!r}")
        self.data_dir, self.download, self.unit_norm = data_dir, download, unit_norm
        self.augment, self.val_size, self.split_seed, self.limit_train = augment, val_size, split_seed, limit_train
        self._randaugment = BatchRandAugment(num_ops=num_ops, magnitude=magnitude) if augment else None
        self._stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def load_images(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{'train': (uint8 (n, C, H, W), int64 labels (n,)), 'test': ...} from the official files."""
        raise NotImplementedError

    @property
    def augmented(self) -> bool:
        return self.augment

    def load(self) -> dict[str, Split]:
        raw = self.load_images()
        x, labels = raw["train"]
        gen = torch.Generator().manual_seed(int(self.split_seed))
        order = torch.randperm(x.shape[0], generator=gen)
        if self.val_size >= x.shape[0]:
            raise ConfigError(f"data.val_size={self.val_size} leaves no training images (the train set has {x.shape[0]})")
        parts = {"val": order[:self.val_size], "train": order[self.val_size:]}
        if self.limit_train is not None:
            parts["train"] = parts["train"][:self.limit_train]
        splits = {k: (x[idx], labels[idx]) for k, idx in parts.items() if len(idx)}
        splits["test"] = raw["test"]
        train = splits["train"][0].float() / 255  # float32 stats: float64 would need 1.2 GB on CIFAR-10
        self.mean = train.mean(dim=(0, 2, 3))
        self.std = train.std(dim=(0, 2, 3)).clamp_min(1e-6)
        eye = torch.eye(self.num_classes)
        return {k: Split(imgs, eye[lab]) for k, (imgs, lab) in splits.items()}

    def featurize(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        if train and self._randaugment is not None:
            x = self._randaugment(x)  # each image draws its own ops; same-op images run together
        if x.device not in self._stats:
            self._stats[x.device] = (self.mean.to(x.device, self.dtype)[:, None, None],
                                     self.std.to(x.device, self.dtype)[:, None, None])
        mean, std = self._stats[x.device]
        x = ((x.to(self.dtype) / 255 - mean) / std).flatten(1)
        # The theory assumes ||x_i|| = 1; it also keeps the output scale, and so the usable lr
        # (the paper's 1e-4 on CIFAR-10), independent of the image size.
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12) if self.unit_norm else x


def check_labels(labels: torch.Tensor, n: int, where: str, num_classes: int = 10) -> None:
    if labels.shape != (n,):
        raise DataError(f"{where}: {labels.shape[0]} labels for {n} images; the file is damaged, replace it")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{where}: labels outside 0..{num_classes - 1}; the file is damaged, replace it")
