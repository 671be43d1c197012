"""Plain torch.nn networks (no Lightning here): ReLU MLP, GReLU MLP, gate cache, GReLU->ReLU solver."""

from lightning_grelu.nets.mlp import GReLUMLP, ReLUMLP
from lightning_grelu.nets.gate_cache import GateCache
from lightning_grelu.nets.grelu_to_relu import ConversionReport, grelu_to_relu

__all__ = ["ReLUMLP", "GReLUMLP", "GateCache", "grelu_to_relu", "ConversionReport"]
