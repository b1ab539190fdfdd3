"""Study ``gd-convergence``: wide nets converge linearly under GD at one learning rate.

docs/theory.md sections 3 (Du et al.), 4 (A Framework for Overparameterized Learning) and 5
(closed-form kernel dynamics). Full-batch GD with step lr on the MSE loss (1/(2n)) ||f(X) - y||^2
of a bias-free edge-of-chaos MLP in the NTK parametrization is, in the kernel regime, the linear
recurrence r_{s+1} = (I - (lr/n) Theta) r_s on the residual r = f(X) - y, with Theta the
infinite-width NTK on the n training points (K_inf = Theta / n in section 4's notation). So:

- one learning rate, lr = lr_factor * n / lambda_max(Theta), is stable (lr < 2n / lambda_max) at
  every width, since the empirical NTK concentrates around the width-independent Theta;
- the loss decays linearly, asymptotically by rho^2 per step, rho = max_i |1 - lr lambda_i / n|,
  and the whole curve is predicted by Theta and the network's own f_0
  (:meth:`widenet.predict.KernelDynamics.gd_train`);
- the parameters travel ||theta_T - theta_0|| -> sqrt(r_0^T Theta^-1 r_0), independent of
  width (GD on the linearized model converges to the interpolant nearest theta_0), while the
  relative movement ||theta_T - theta_0|| / ||theta_0|| -> 0 like P^{-1/2} (P parameters).

Each task trains one network (one width m, one seed) on the same data at the same lr and
records its loss curve beside the kernel prediction. See docs/studies/gd-convergence.md.
"""

from __future__ import annotations

from widenet.deferred import Deferred
from widenet.studies.common.base import Study
from widenet.studies.gd_convergence.config import GDConfig

STUDY = Study(name="gd-convergence",
              summary="GD converges linearly at one lr across widths, along the kernel "
                      "prediction, to the nearest interpolant",
              config=GDConfig,
              plan=Deferred("widenet.studies.gd_convergence.measure", "plan"),
              analyze=Deferred("widenet.studies.gd_convergence.analysis", "analyze"))

__all__ = ["STUDY", "GDConfig"]
