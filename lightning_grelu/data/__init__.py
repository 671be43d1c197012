"""LightningDataModules: one per dataset, on a shared in-memory base."""

from lightning_grelu.data.ackley import AckleyDataModule, ackley_targets
from lightning_grelu.data.base import DataError, Split, TensorDataModule
from lightning_grelu.data.batches import TensorBatches
from lightning_grelu.data.cifar10 import CIFAR10DataModule
from lightning_grelu.data.fashion_mnist import FashionMNISTDataModule
from lightning_grelu.data.images import ImageDataModule
from lightning_grelu.data.sgemm import SGEMMDataModule

__all__ = ["TensorDataModule", "Split", "DataError", "TensorBatches", "AckleyDataModule", "ackley_targets",
           "ImageDataModule", "CIFAR10DataModule", "FashionMNISTDataModule", "SGEMMDataModule"]
