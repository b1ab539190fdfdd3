"""Diagnostics of training: each function computes one documented quantity (THEORY.md section 5),
and each has a Monitor for the training loop."""

from widenet.diagnostics.builtin import (
                                         FeatureMovementMonitor,
                                         InfoNuisanceMonitor,
                                         KernelMonitor,
                                         LinearizationMonitor,
                                         MarginMonitor,
                                         SharpnessMonitor,
                                         SoftRankMonitor,
                                         TaylorMonitor,
                                         WeightMovementMonitor,
                                         default_monitors,
)
from widenet.diagnostics.features import hidden_features, soft_ranks
from widenet.diagnostics.kernel_motion import (
                                         information_space,
                                         kernel_movement,
                                         kernel_target_alignment,
                                         label_information,
                                         residual_projections,
)
from widenet.diagnostics.margins import homogeneity_degree, homogeneity_error, margins_of
from widenet.diagnostics.monitors import Monitor, RunState
from widenet.diagnostics.movement import feature_movement, weight_movement

__all__ = [
    "FeatureMovementMonitor",
    "InfoNuisanceMonitor",
    "KernelMonitor",
    "LinearizationMonitor",
    "MarginMonitor",
    "Monitor",
    "RunState",
    "SharpnessMonitor",
    "SoftRankMonitor",
    "TaylorMonitor",
    "WeightMovementMonitor",
    "default_monitors",
    "feature_movement",
    "hidden_features",
    "homogeneity_degree",
    "homogeneity_error",
    "information_space",
    "kernel_movement",
    "kernel_target_alignment",
    "label_information",
    "margins_of",
    "residual_projections",
    "soft_ranks",
    "weight_movement",
]
