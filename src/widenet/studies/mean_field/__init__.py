"""Study ``mean-field``: two-layer ReLU nets with 1/m versus 1/sqrt(m) output scaling
(docs/theory.md sections 1 and 6; Chizat & Bach 2018, Mei, Montanari & Nguyen 2018).

A neuron is a particle w_i = (a_i, b_i, c_i) of f(x) = (sigma / s_m) sum_i c_i
relu(sigma (a_i . x + b_i) / sqrt(d + 1)), all stored N(0, 1). With s_m = m and every learning
rate multiplied by m (GD with step eta * m is gradient flow on the particles with time scaled
by m), the particles' empirical measure follows a width-independent Wasserstein gradient flow:
each particle travels O(1) and the trained measure converges as m grows. With s_m = sqrt(m) and
unscaled rates the same net trains lazily: each particle travels O(1/sqrt(m)). Both regimes
share the initial function-space kernel, so one base rate eta serves both at every width.
Two more experiments (``regimes.py``): the final loss against the number of neurons (global
convergence) and the test loss against the initialization scale tau (lazy versus rich).
Measurements: ``measure.py``; slopes and checks: ``analysis.py``; figures: ``figures.py``;
docs/studies/mean-field.md explains the checks.
"""

from __future__ import annotations

from widenet.deferred import Deferred
from widenet.studies.common.base import Study
from widenet.studies.mean_field.config import MeanFieldConfig

STUDY = Study(name="mean-field",
              summary="two-layer ReLU nets: 1/m (mean field) vs 1/sqrt(m) (NTK) scaling, "
                      "particle movement and width convergence",
              config=MeanFieldConfig,
              plan=Deferred("widenet.studies.mean_field.regimes", "plan"),
              analyze=Deferred("widenet.studies.mean_field.analysis", "analyze"))

__all__ = ["STUDY", "MeanFieldConfig"]
