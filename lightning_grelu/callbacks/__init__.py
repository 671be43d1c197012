"""Callbacks: the run record, the divergence guard, and the training-dynamics probes."""

from lightning_grelu.callbacks.activation_patterns import ActivationPatterns
from lightning_grelu.callbacks.divergence import Diverged, DivergenceGuard
from lightning_grelu.callbacks.grad_diff import GradientTemporalDifference
from lightning_grelu.callbacks.ntk_probe import NTKProbe
from lightning_grelu.callbacks.progress import ProgressLine
from lightning_grelu.callbacks.run_record import RunRecord
from lightning_grelu.callbacks.throughput import Throughput
from lightning_grelu.callbacks.stop_on_signal import StopOnSignal
from lightning_grelu.callbacks.time_to_target import TimeToTarget

__all__ = ["RunRecord", "DivergenceGuard", "Diverged", "TimeToTarget", "GradientTemporalDifference",
           "ActivationPatterns", "Throughput", "NTKProbe",
           "StopOnSignal", "ProgressLine"]
