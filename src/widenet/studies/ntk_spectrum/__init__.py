"""Study ``ntk-spectrum``: the spectrum of K_inf = (1/n) Theta at the edge of chaos, vs depth.

docs/theory.md sections 2 and 4 (Terjek & Gonzalez-Sanchez): bias-free MLP, NTK parametrization, EOC
init, phi = a s + b|s| with a^2 + b^2 = 1 and b^2 = Delta, inputs with ||x||^2 = d. Then
Theta^{L+1}(x, x) = L + 1 exactly, Theta^{L+1}(x, x') / (L + 1) -> 1/4, so
Theta ~ (L + 1) [(3/4) I + (1/4) 1 1^T] and cond(K_inf) -> 1 + n/3, faster for larger Delta; the
angle between two inputs' activations shrinks like theta_l ~ 3 pi / (2 Delta (l + l_0)), and
off-diagonal entries are about a constant times the inverse of the last-layer angle.

Each ``spectrum`` task computes the limit kernels of one (Delta, L) on ``seeds`` input draws
(the same draws for every Delta and L: a paired design) and records the spectrum, the diagonal,
the off-diagonal entries and the inverse-angle approximation. Each ``angles`` task records the
angle of every layer of the deepest net from the per-layer NNGP kernels. The analysis and the
tolerances are explained in docs/studies/ntk-spectrum.md.
"""

from __future__ import annotations

from widenet.deferred import Deferred
from widenet.studies.common.base import Study
from widenet.studies.ntk_spectrum.config import SpectrumConfig

STUDY = Study(name="ntk-spectrum",
              summary="cond(K_inf) -> 1 + n/3 with depth at the EOC; angles shrink like 1/l",
              config=SpectrumConfig,
              plan=Deferred("widenet.studies.ntk_spectrum.measure", "plan"),
              analyze=Deferred("widenet.studies.ntk_spectrum.analysis", "analyze"))

__all__ = ["STUDY", "SpectrumConfig"]
