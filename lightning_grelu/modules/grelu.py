"""The GReLU network: activation patterns fixed by a frozen gate path.

On a fixed training set the gates of every training sample are computed once (at the start of
fit) and kept bit-packed on the device, looked up by the sample index each batch carries; with
augmentation, or for validation/test samples, they are recomputed. Both give identical gates.

When the cache will be built, the gate path (Psi, C_0) leaves the module at ``setup``, before Lightning
moves the module to the training device: it stays on the host (pinned for a GPU) and is streamed to the
device for the cache, for uncached data and for probes, so the device holds W and its gradients, not
Psi (the theory width m = 40,000, L = 4: 25.6 GB less). The GReLU->ReLU switch reads the cache.
"""

from __future__ import annotations

import torch

from lightning_grelu.modules.base import RegressionModule
from lightning_grelu.config_schema import GATE_INITS
from lightning_grelu.errors import ConfigError
from lightning_grelu.nets import GateCache, GReLUMLP, ReLUMLP
from lightning_grelu.nets.spec import param_dtype


class GReLUModule(RegressionModule):
    def __init__(self, *args, gate_init: str = "independent", relu_checkpoint: str | None = None,
                 cache_gates: bool = True, **kwargs):
        if gate_init not in GATE_INITS:
            raise ConfigError(f"model.gate_init must be 'independent', 'copy' or 'from_relu', got {gate_init!r}")
        if gate_init == "from_relu" and not relu_checkpoint:
            raise ConfigError("model.gate_init=from_relu needs model.relu_checkpoint=<path to a ReLU run's .ckpt>")
        self._gate_init, self._relu_checkpoint = gate_init, relu_checkpoint
        super().__init__(*args, **kwargs)
        self.save_hyperparameters()
        self.cache_gates = cache_gates
        self.gate_cache: GateCache | None = None
        self._last_index, self._last_masks = None, None

    @classmethod
    def describe_net(cls, hp, d_in, d_out):
        return GReLUMLP.describe(d_in, d_out, hp["width"], hp["depth"], train_io=bool(hp.get("train_io", False)),
                                 cache_gates=bool(hp.get("cache_gates", True)))

    def build_net(self):
        hp = self.hparams
        if self._gate_init == "from_relu":
            return GReLUMLP.from_relu(load_relu_net(self._relu_checkpoint))
        return GReLUMLP(hp.d_in, hp.d_out, hp.width, hp.depth, seed=hp.init_seed, train_io=hp.train_io,
                        gate_init=self._gate_init)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        dm = self.trainer.datamodule
        if stage == "fit" and self.cache_gates and dm is not None and not dm.augmented:
            self.net.offload_gate_path(pin=self.trainer.strategy.root_device.type == "cuda")

    def on_train_start(self):
        dm = self.trainer.datamodule
        if self.cache_gates and dm is not None and not dm.augmented:
            self.gate_cache = GateCache.build(self.net, dm.train_inputs())
        super().on_train_start()  # after the cache: the step-size policy may use the gates

    def ntk_spec(self, index):
        if self.gate_cache is None:
            return None, None  # the net recomputes its (fixed) gates
        return (lambda net, x, masks: net(x, masks)), (lambda rows: self.gate_cache.lookup(index[rows]))

    def cached_gates(self, index: torch.Tensor):
        """``gates(rows)`` over training rows ``index`` from the cache (None without one)."""
        if self.gate_cache is None:
            return None
        return lambda rows: self.gate_cache.lookup(index[rows])

    def predict_batch(self, x, index, stage):
        if stage == "train" and index is not None and self.gate_cache is not None:
            # inner steps, and full-batch epochs (the same index tensor every epoch), unpack a batch's gates once
            if index is not self._last_index:
                self._last_index, self._last_masks = index, self.gate_cache.lookup(index, mask_dtype(self.net, x))
            return self.net(x, self._last_masks)
        return self.net(x)


def mask_dtype(net, x: torch.Tensor) -> torch.dtype:
    """The dtype the net's values will have: autocast's where it is on (bf16-mixed), else the weights'."""
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else param_dtype(net)


def load_relu_net(path: str) -> ReLUMLP:
    """The ReLU net inside a ReLU run's Lightning checkpoint."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise ConfigError(f"model.relu_checkpoint: no such file {path!r}") from None
    hp = ckpt.get("hyper_parameters", {})
    try:
        net = ReLUMLP(hp["d_in"], hp["d_out"], hp["width"], hp["depth"], train_io=hp.get("train_io", False))
        net.load_state_dict({k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")})
    except (KeyError, RuntimeError) as e:
        raise ConfigError(f"model.relu_checkpoint {path!r} does not hold a ReLU run of this suite ({e})") from None
    return net
