"""Callbacks: the run record, the divergence guard (and, later, training-dynamics probes)."""

from lightning_grelu.callbacks.divergence import Diverged, DivergenceGuard
from lightning_grelu.callbacks.run_record import RunRecord

__all__ = ["RunRecord", "DivergenceGuard", "Diverged"]
