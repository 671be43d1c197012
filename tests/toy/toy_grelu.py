"""A net variant and a data set added from outside the package (the README's "Adding a net" and "Adding a data
set", done by tests/test_extending.py): nothing here is imported by lightning_grelu, which finds the options in
conf/ through GRELU_CONF_PATH and these classes through PYTHONPATH.

ToyResidualNet: a residual GReLU block, h_k = h_{k-1} + U_k (D_k * (W_k h_{k-1})), with the gates D_k of the
GReLU's frozen gate path (inherited, and cached by the inherited module) and two trained matrices per block.
ToyBlobsDataModule: Gaussian blobs on the unit sphere, one class each, as one-hot regression.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn

from lightning_grelu.data.base import Split, TensorDataModule
from lightning_grelu.modules import GReLUModule
from lightning_grelu.nets import GReLUMLP
from lightning_grelu.nets.spec import NetSpec


class ToyResidualNet(GReLUMLP):
    def __init__(self, d_in, d_out, width, depth, seed=0, train_io=False):
        super().__init__(d_in, d_out, width, depth, seed=seed, train_io=train_io)
        gen = torch.Generator().manual_seed(int(seed) + 7)
        self.U = nn.ParameterList(nn.Parameter(torch.randn(width, width, generator=gen) / math.sqrt(4 * width))
                                  for _ in range(depth))

    @classmethod
    def describe(cls, d_in, d_out, width, depth, train_io=False, cache_gates=True) -> NetSpec:
        m, L = width, depth
        gated = GReLUMLP.describe(d_in, d_out, width, depth, train_io, cache_gates)  # C, W, B and the gate path
        flops = 2 * d_in * m + 4 * L * m * m + 2 * m * d_out  # forward: C, W_k and U_k, B
        flops += 2 * m * d_out + 4 * L * m * m + 4 * L * m * m - 2 * m * m  # data gradients (none below W_1), weights
        return replace(gated, params=gated.params + L * m * m, trained=gated.trained + L * m * m,
                       flops_per_sample=flops, activations_per_sample=6 * m * (L + 1), layout=None)

    def forward(self, x, masks=None):
        masks = self.gates(x) if masks is None else masks
        h = torch.relu(x @ self.C.T)
        for W, U, D in zip(self.W, self.U, masks):
            h = h + ((h @ W.T) * D) @ U.T
        return h @ self.B.T


class ToyResidualModule(GReLUModule):
    @classmethod
    def describe_net(cls, hp, d_in, d_out):
        return ToyResidualNet.describe(d_in, d_out, hp["width"], hp["depth"], bool(hp.get("train_io", False)),
                                       bool(hp.get("cache_gates", True)))

    def build_net(self):
        hp = self.hparams
        return ToyResidualNet(hp.d_in, hp.d_out, hp.width, hp.depth, seed=hp.init_seed, train_io=hp.train_io)


class ToyBlobsDataModule(TensorDataModule):
    def __init__(self, n: int = 48, d_in: int = 6, d_out: int = 3, data_seed: int = 0, **base):
        super().__init__(**base)
        self.n, self.dims, self.data_seed = n, (d_in, d_out), data_seed
        self.num_classes = d_out  # one-hot targets: accuracy is logged too

    def load(self) -> dict[str, Split]:
        (d_in, d_out), gen = self.dims, torch.Generator().manual_seed(self.data_seed)
        centers = torch.randn(d_out, d_in, generator=gen)
        label = torch.arange(self.n) % d_out
        x = centers[label] + 0.3 * torch.randn(self.n, d_in, generator=gen)
        return {"train": Split(x / x.norm(dim=1, keepdim=True), nn.functional.one_hot(label, d_out).float())}
