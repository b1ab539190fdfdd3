"""The monitors of the current model's geometry, with no reference and no loss derivatives:
the margins of a homogeneous classifier and the soft ranks of hidden features; their columns are
listed in widenet.diagnostics.builtin."""

from __future__ import annotations

import torch

from widenet.diagnostics._probes import checked_probe, probe_inputs, shared_features
from widenet.diagnostics.feature_layers import FeatureModules, HiddenFeatures
from widenet.diagnostics.features import soft_ranks
from widenet.diagnostics.margins import homogeneity_degree, margins_of
from widenet.dynamics.monitor import Monitor, RunState
from widenet.errors import WidenetError


class MarginMonitor(Monitor):
    """Normalized and smoothed margins of a homogeneous net on the training data (labels +-1
    for one output, class indices otherwise); the degree is inferred at the start unless given."""

    name = "margins"

    def __init__(self, degree: int | None = None, every: int | None = None):
        self.degree, self.every = degree, every

    def start(self, state: RunState) -> None:
        if self.degree is None:
            self.degree = homogeneity_degree(state.model)

    def measure(self, state: RunState) -> dict[str, float]:
        labels = state.y.reshape(-1) if state.y.ndim == 2 and state.y.shape[1] == 1 else state.y
        margins = margins_of(state.model, state.x, labels, degree=self.degree)
        return {"normalized_margin": margins.normalized,
                "smoothed_margin_exponential": margins.smoothed_exponential,
                "smoothed_margin_logistic": margins.smoothed_logistic,
                "parameter_norm": margins.parameter_norm}

    def state_dict(self) -> dict:
        return {"degree": self.degree}

    def load_state_dict(self, state: dict) -> None:
        self.degree = state["degree"]


class SoftRankMonitor(Monitor):
    """Participation ratio, stable rank and entropy effective rank of hidden features on a
    probe set (default: the first 256 training points); ``layers="last"`` or ``"all"``;
    ``modules`` as for :class:`~widenet.diagnostics.reference_monitors.FeatureMovementMonitor`."""

    name = "soft_ranks"

    def __init__(self, probe: torch.Tensor | None = None, layers: str = "last",
                 every: int | None = None, size: int = 256,
                 modules: FeatureModules | HiddenFeatures | None = None):
        if layers not in ("last", "all"):
            raise WidenetError(f"layers must be 'last' or 'all', got {layers!r}")
        self.probe_x, self.layers = checked_probe(probe), layers
        self.every, self.size = every, size
        self.features = shared_features(modules)

    def start(self, state: RunState) -> None:
        self.features.layers(state.model)  # unknown layers are reported before training

    def measure(self, state: RunState) -> dict[str, float]:
        features = self.features.read(state.model, probe_inputs(state, self.probe_x, self.size),
                                      state.step) or []
        row = {}
        for label, matrix in features[-1:] if self.layers == "last" else features:
            ranks = soft_ranks(matrix)
            row[f"participation_ratio/{label}"] = ranks.participation_ratio
            row[f"stable_rank/{label}"] = ranks.stable_rank
            row[f"entropy_rank/{label}"] = ranks.entropy_effective_rank
        return row
