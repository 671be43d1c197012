"""The schema of the ``model`` and ``data`` groups: Hydra structured configs (dataclasses in Hydra's ConfigStore).

Each option of ``conf/model/`` and ``conf/data/`` starts its defaults list with one of these
(``- /schema_grelu@_here_``), so that the keys every net or data set shares, their types and their defaults
live here once, and Hydra refuses an unknown key or a value of the wrong type (``model.width=abc``) while it
composes. What a type cannot say (ranges, choices, rules across keys) is checked by
:mod:`lightning_grelu.config_check`. A new option whose keys are those of a schema here names that schema; one
with keys of its own adds a dataclass here (a subclass of ``ModelConf`` or ``DataConf``).

The schemas are stored at the ConfigStore's root (``schema_<name>``), not in a group, so that they are no
option of ``model=`` or ``data=`` and no group of ``--help``. Light on purpose: imported (through config_check)
before torch, by every command that composes a config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING

# The choices of the nets' string keys: the classes refuse anything else, and config_check refuses it first,
# before torch and Lightning are imported (one list, read by both)
OPTIMIZERS = ("sgd", "adam")
LR_POLICIES = ("fixed", "theorem", "ntk")
GATE_INITS = ("independent", "copy", "from_relu")
CONVERSION_TARGETS = ("carry", "lift", "relu")  # lightning_grelu.nets.grelu_to_relu.TARGETS (a test keeps them equal)


@dataclass
class ModelConf:
    """The keys of every net (lightning_grelu.modules.RegressionModule's arguments)."""

    _target_: str = MISSING  # the LightningModule class; its describe(hp, d_in, d_out) says what the net needs
    name: str = MISSING  # the label in run names and records
    width: int = 800  # m; the default is the theory width n^2 L for the default Ackley data
    depth: int = 2  # L trained hidden layers
    lr: float = 3.0e-6  # GD on the SUM loss at theory width needs a small lr (NTK scale ~ n m^2)
    optimizer: str = "sgd"  # sgd (the paper: plain GD, constant lr) | adam
    momentum: float = 0.0
    weight_decay: float = 0.0
    train_io: bool = False  # also train C and B (frozen by default, as the paper)
    init_seed: Optional[int] = II("seed")  # same seed => same C, W, B for the ReLU and the GReLU net
    inner_steps: int = 1  # GD steps per Lightning step (full batch only): cuts per-step overhead on small nets
    lr_policy: str = "fixed"  # fixed (model.lr) | theorem (d_x / (n^4 L^3 d_y)) | ntk (lr_scale / lambda_max at init)
    lr_scale: float = 1.0  # c: the ntk step is c / lambda_max (GD on the sum loss is stable for c < 2); theorem: a factor


@dataclass
class GReLUConf(ModelConf):
    """A net whose gates come from a frozen gate path (Psi, C_0)."""

    gate_init: str = "independent"  # independent (paper) | copy (Psi = W at init) | from_relu (needs relu_checkpoint)
    relu_checkpoint: Optional[str] = None
    cache_gates: bool = True  # bit-packed per-sample gates on fixed data (recomputed when augmented)


@dataclass
class GReLUToReLUConf(GReLUConf):
    """Trained as GReLU, converted to the equivalent ReLU net at switch_epoch (Theorem 2), then ReLU."""

    switch_epoch: Optional[int] = None  # null = max_epochs // 2 (the paper: 40 of 80)
    ridge: float = 0.0  # ridge, relative to the Gram matrix's mean diagonal (0 = minimum-norm); helps when n > m
    conversion_target: str = "carry"  # intermediate-layer targets: carry | lift | relu (the paper's eq. 48)
    exact_rtol: Optional[float] = None  # switch/exact at this relative match; null: 1e-6 float64, 1e-4 float32


@dataclass
class DataConf:
    """The keys of every data set (lightning_grelu.data.base.TensorDataModule's arguments)."""

    _target_: str = MISSING  # the LightningDataModule class
    name: str = MISSING  # the label in run names and records
    batch_size: Optional[int] = None  # null = full batch (gradient descent, as the paper)
    shuffle: bool = True
    seed: Optional[int] = II("seed")  # the batch order's seed
    on_device: bool = True  # the whole data set on the training device (batches are index slices)
    test_every_epoch: bool = False  # also evaluate the test split every epoch (test loss curves, Fig. 3c)


@dataclass
class AckleyConf(DataConf):
    n: int = 20  # training samples (the paper: 100)
    d: int = 20  # input dimension (the paper: 200)
    n_val: int = 0
    n_test: int = 0
    data_seed: int = 0  # the data set is fixed by data_seed, independent of the init seed
    partner: str = "cyclic"  # reading of x_{i,d-d'}: cyclic (index 0 wraps to d) | mirror (x_{i,d+1-d'})
    cube: str = "self"  # reading of the bare x^3: self (x_{i,d'}^3) | partner (x_{i,d-d'}^3)
    standardize_x: bool = False  # keep ||x|| = 1
    standardize_y: bool = False


@dataclass
class ImagesConf(DataConf):
    """Image classification as one-hot regression (CIFAR-10, Fashion-MNIST)."""

    data_dir: str = MISSING
    download: bool = False  # true fetches the files where a network exists
    augment: bool = False  # RandAugment (fig3); gates are then recomputed per batch
    num_ops: int = 2
    magnitude: int = 9
    val_size: int = 0  # images carved from train (seeded by split_seed) as a validation split
    split_seed: int = 0
    limit_train: Optional[int] = None  # use only this many training images
    unit_norm: bool = True  # scale each standardized image to ||x|| = 1 (the theory's assumption)
    batch_size: Optional[int] = 1024


@dataclass
class SGEMMConf(DataConf):
    data_dir: str = MISSING
    download: bool = False
    target: str = "log_mean"  # log_mean (log of the mean of 4 runs) | log_runs (4-d)
    inputs: str = "params"  # params (d=14) | paper18 (params + 4 log runtimes: the paper's literal d=18)
    val_frac: float = 0.1
    test_frac: float = 0.1
    split_seed: int = 0
    limit_train: Optional[int] = None
    batch_size: Optional[int] = 4096
    standardize_x: bool = True
    standardize_y: bool = True


@dataclass
class ShapeConf(DataConf):
    """Generated data of a given shape (synthetic; any data set whose only keys are its size and seed)."""

    n: int = 1024
    d_in: int = 3072
    d_out: int = 10
    data_seed: int = 0


SCHEMAS = {"schema_model": ModelConf, "schema_grelu": GReLUConf, "schema_grelu_to_relu": GReLUToReLUConf,
           "schema_data": DataConf, "schema_ackley": AckleyConf, "schema_images": ImagesConf,
           "schema_sgemm": SGEMMConf, "schema_shape": ShapeConf}

for _name, _node in SCHEMAS.items():
    ConfigStore.instance().store(name=_name, node=_node)
