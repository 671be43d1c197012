"""LightningModules: ReLU, GReLU and GReLU->ReLU on one base that owns loss, metrics and optimizer."""

from lightning_grelu.modules.base import RegressionModule
from lightning_grelu.modules.grelu import GReLUModule
from lightning_grelu.modules.grelu_to_relu import GReLUToReLUModule
from lightning_grelu.modules.relu import ReLUModule

__all__ = ["RegressionModule", "ReLUModule", "GReLUModule", "GReLUToReLUModule"]
