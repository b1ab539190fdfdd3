"""Diagnostics of training: each function computes one documented quantity (docs/theory.md
section 5), and each has a Monitor (widenet.dynamics.monitor, the training loop's protocol)."""

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
from widenet.diagnostics.feature_layers import FeatureLayers, HiddenFeatures, feature_layers
from widenet.diagnostics.features import hidden_features, soft_ranks
from widenet.diagnostics.kernel_motion import (
                                         information_space,
                                         kernel_movement,
                                         kernel_target_alignment,
                                         label_information,
                                         residual_projections,
)
from widenet.diagnostics.margins import homogeneity_degree, homogeneity_error, margins_of
from widenet.diagnostics.movement import feature_movement, weight_movement
from widenet.diagnostics.sharpness import Sharpness, SharpnessTracker, sharpness
from widenet.diagnostics.taylor import TaylorCoefficients, taylor_coefficients

__all__ = [
    "FeatureLayers",
    "FeatureMovementMonitor",
    "HiddenFeatures",
    "InfoNuisanceMonitor",
    "KernelMonitor",
    "LinearizationMonitor",
    "MarginMonitor",
    "Sharpness",
    "SharpnessMonitor",
    "SharpnessTracker",
    "SoftRankMonitor",
    "TaylorCoefficients",
    "TaylorMonitor",
    "WeightMovementMonitor",
    "default_monitors",
    "feature_layers",
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
    "sharpness",
    "soft_ranks",
    "taylor_coefficients",
    "weight_movement",
]
