"""LightningDataModules: one per dataset, on a shared in-memory base."""

from lightning_grelu.data.ackley import AckleyDataModule, ackley_targets
from lightning_grelu.data.base import Split, TensorDataModule
from lightning_grelu.data.batches import TensorBatches

__all__ = ["TensorDataModule", "Split", "TensorBatches", "AckleyDataModule", "ackley_targets"]
