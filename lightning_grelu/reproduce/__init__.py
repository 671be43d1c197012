"""``grelu-reproduce`` targets: one per table or figure of the paper (plus Fashion-MNIST analogues)."""

from lightning_grelu.reproduce.atlas import Atlas
from lightning_grelu.reproduce.fig2a import Fig2a
from lightning_grelu.reproduce.fig3 import Fig3, Fig3Fmnist
from lightning_grelu.reproduce.inference import Inference
from lightning_grelu.reproduce.sgemm_dynamics import Fig2b, Fig2c
from lightning_grelu.reproduce.sgemm_lr import Fig4, Fig5
from lightning_grelu.reproduce.speed import Speed
from lightning_grelu.reproduce.table2 import Table2, Table2Fmnist

TARGETS = {t.name: t for t in (Fig2a(), Table2(), Fig3(), Fig2b(), Fig2c(), Fig4(), Fig5(), Speed(),
                               Table2Fmnist(), Fig3Fmnist(), Atlas(), Inference())}
