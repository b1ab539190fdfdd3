"""Study ``implicit-bias``: GD on separable data maximizes the normalized margin (docs/theory.md
section 5; Lyu & Li 2020).

Bias-free relu / abs MLPs with L hidden layers are positively homogeneous of degree L_h = L + 1.
Started small (every parameter times ``init_scale``) and trained by full-batch GD with a fixed
learning rate on the exponential or logistic loss of a linearly separable set, theory says: once
the training loss is below l(0) (so the data are separated) the smoothed margin never decreases,
||theta_t|| grows like (log t)^(1/L_h), the normalized margin gamma_t = min_i y_i f(x_i) /
||theta_t||^L_h rises, and the small-init (rich) net ends with a larger normalized margin than the
best a net with features frozen at initialization (the lazy / NTK regime) can reach. The
measurements are in ``measure.py``, statistics and checks in ``analysis.py``, figures in
``figures.py``; docs/studies/implicit-bias.md explains the checks.
"""

from __future__ import annotations

from widenet.deferred import Deferred
from widenet.studies.common.base import Study
from widenet.studies.implicit_bias.config import ImplicitBiasConfig

STUDY = Study(name="implicit-bias",
              summary="GD on separable data: margins rise, rich margin beats the NTK margin",
              config=ImplicitBiasConfig,
              plan=Deferred("widenet.studies.implicit_bias.measure", "plan"),
              analyze=Deferred("widenet.studies.implicit_bias.analysis", "analyze"))

__all__ = ["STUDY", "ImplicitBiasConfig"]
