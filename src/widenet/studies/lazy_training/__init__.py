"""Study ``lazy-training``: output scale alpha and the lazy regime
(docs/theory.md sections 1 and 5).

Chizat, Oyallon & Bach (2019): training h_alpha = alpha (f(w) - f(w_0)) with the objective
R(h_alpha) / alpha^2 keeps the function-space time scale fixed, and on a finite horizon the
trajectory deviates from that of the linearized model by O(1/alpha) when Dh is Lipschitz. A
teacher-student regression is fitted by bias-free edge-of-chaos MLPs (NTK parametrization) at
a grid of alphas with the same learning rate and number of GD steps; measured against alpha:
the relative weight movement, the relative NTK movement, the linearization error, the number
of activation-pattern flips, and the train and test losses beside the linearized model's (the
paired relative test-loss gap, whose first-order term inherits the O(1/alpha) deviation).
The measurements are in ``measure.py``, the statistics and checks in ``analysis.py``, the
figures in ``figures.py``; docs/studies/lazy-training.md explains the checks and their tolerances.
"""

from __future__ import annotations

from widenet.deferred import Deferred
from widenet.studies.common.base import Study
from widenet.studies.lazy_training.config import LazyTrainingConfig

STUDY = Study(name="lazy-training",
              summary="output scale alpha: weight, NTK and linearization movement ~ 1/alpha",
              config=LazyTrainingConfig,
              plan=Deferred("widenet.studies.lazy_training.measure", "plan"),
              analyze=Deferred("widenet.studies.lazy_training.analysis", "analyze"))

__all__ = ["STUDY", "LazyTrainingConfig"]
