"""What a monitor reads on its probe set: the probe points, checked when the monitor is made and
matched to the training points when it measures, and the hidden features it reads there."""

from __future__ import annotations

import torch

from widenet.diagnostics.feature_layers import FeatureModules, HiddenFeatures
from widenet.dynamics.monitor import RunState
from widenet.errors import WidenetError
from widenet.validation import data_points


def checked_probe(probe: object, name: str = "probe") -> torch.Tensor | None:
    """A monitor's probe inputs when it is made: None, or finite points ((n, d) or images)."""
    return None if probe is None else data_points(probe, name)


def probe_inputs(state: RunState, probe: torch.Tensor | None, size: int) -> torch.Tensor:
    """The given probe inputs (shaped like the training points), or the first ``size``
    training points."""
    if probe is None:
        return state.x[:size]
    if probe.shape[1:] != state.x.shape[1:]:
        raise WidenetError(f"the probe points have shape {tuple(probe.shape[1:])} but the "
                           f"training points {tuple(state.x.shape[1:])}; give probe points "
                           "the model takes")
    return probe.to(state.x)


def shared_features(modules: FeatureModules | HiddenFeatures | None) -> HiddenFeatures:
    """The hidden-feature reader of ``modules``: itself when it is a HiddenFeatures (shared with
    other monitors, one forward pass for all), else a new one for those modules (None: found as in
    widenet.diagnostics.feature_layers)."""
    return modules if isinstance(modules, HiddenFeatures) else HiddenFeatures(modules)
