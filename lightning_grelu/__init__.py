"""lightning_grelu: ReLU, GReLU and GReLU->ReLU networks on PyTorch Lightning (Noy et al.)."""

__version__ = "0.1.0"
