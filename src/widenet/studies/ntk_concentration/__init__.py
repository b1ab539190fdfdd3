"""Study ``ntk-concentration``: the empirical NTK approaches its limit like m^{-1/2}.

docs/theory.md section 4 (Terjek & Gonzalez-Sanchez): for a bias-free MLP in the NTK parametrization
at the edge of chaos, with phi = a s + b|s| normalized to a^2 + b^2 = 1, inputs with
||x||^2 = d and k outputs, the NTK matrix K(theta) = [(1/n) K_theta(x_i, x_j)] in R^{nk x nk}
satisfies ||K(theta) - K_inf||_2 = O((Delta^-2 + sqrt(k) L) kappa^2 m^{-1/2}) with high
probability, where K_inf = (1/n) Theta (x) I_k (Theta: the NTK recursion of section 3).

Each task draws ``seeds`` networks of one width pattern, depth and width m, once per activation
with the same weights (a paired design: the activations are compared on identical draws), and
records the operator-norm error. The analysis fits the error's power law in m (predicted slope
-1/2), compares |s| with ReLU at matched networks (predicted: |s| concentrates better) and
the two width patterns at equal parameter counts as depth grows. Structure sweeps at one
width test the rest of the bound (:mod:`.structure`): growth at most linear in L for
m_l = l^2 m, sqrt(k) at large k, no dependence on n, and the family ordered by
(Delta^-2 + sqrt(k) L) kappa^2. See docs/studies/ntk-concentration.md.
"""

from __future__ import annotations

from widenet.deferred import Deferred
from widenet.studies.common.base import Study
from widenet.studies.ntk_concentration.config import ConcentrationConfig

STUDY = Study(name="ntk-concentration",
              summary="the empirical NTK approaches its limit like m^-1/2; |s| beats ReLU; the "
                      "bound's structure in L, k, n and the activation",
              config=ConcentrationConfig,
              plan=Deferred("widenet.studies.ntk_concentration.measure", "plan"),
              analyze=Deferred("widenet.studies.ntk_concentration.analysis", "analyze"))

__all__ = ["STUDY", "ConcentrationConfig"]
