"""The ReLU baseline."""

from lightning_grelu.modules.base import RegressionModule
from lightning_grelu.nets import ReLUMLP


class ReLUModule(RegressionModule):
    @classmethod
    def describe_net(cls, hp, d_in, d_out):
        return ReLUMLP.describe(d_in, d_out, hp["width"], hp["depth"], train_io=bool(hp.get("train_io", False)))

    def build_net(self):
        hp = self.hparams
        return ReLUMLP(hp.d_in, hp.d_out, hp.width, hp.depth, seed=hp.init_seed, train_io=hp.train_io)
