"""The built-in monitors: each wraps one documented diagnostic for the training loop. They live
by concept, all importable from here: widenet.diagnostics.reference_monitors (against the start
of the run), widenet.diagnostics.geometry_monitors (margins and soft ranks of the current model)
and widenet.diagnostics.curvature_monitors (the loss's sharpness and Taylor coefficients); this
module gathers them and gives the default set, :func:`default_monitors`.

Column names (one row per logged step):

- :class:`WeightMovementMonitor`: ``weight_movement`` = ||theta_t - theta_0|| / ||theta_0||, and
  ``weight_movement/<parameter>`` = ||p_t - p_0||_F / ||p_0||_F.
- :class:`FeatureMovementMonitor`: ``feature_movement/<l>`` = ||H_t - H_0||_F / ||H_0||_F of the
  hidden features H of layer l on a probe set: a widenet MLP's post-activation features, an
  nn.Sequential's activation outputs (l = 1, 2, ...), or the outputs of the modules named
  (l = their names); widenet.diagnostics.feature_layers.
- :class:`KernelMonitor`: of the empirical NTK K_t (per output unit, ``.ntk``) on a probe set:
  ``ntk_movement`` = ||K_t - K_0||_F / ||K_0||_F, ``ntk_alignment`` = <K_t, Y Y^T>_F /
  (||K_t||_F ||Y Y^T||_F), ``ntk_lambda_min`` and ``ntk_lambda_max``.
- :class:`LinearizationMonitor`: ``linearization_error`` = ||f_t - f_lin,t|| / ||f_t - f_0|| on the
  training points, f_lin the linearized model advanced alongside by the same full-batch GD
  steps (widenet.dynamics.optim.gd_step).
- :class:`MarginMonitor`: ``normalized_margin`` = min_i q_i / ||theta||^L,
  ``smoothed_margin_exponential``, ``smoothed_margin_logistic`` and ``parameter_norm``.
- :class:`SoftRankMonitor`: ``participation_ratio/<l>``, ``stable_rank/<l>`` and
  ``entropy_rank/<l>`` of the same hidden features on a probe set.
- :class:`SharpnessMonitor`: ``sharpness`` = lambda_max of the Hessian of the full-batch training
  objective (``sharpness_2``.. ``sharpness_k`` below it) by Lanczos warm-started from the previous
  measurement, ``stability_threshold`` = (2 + 2 beta) / lr (2 / lr for GD) for GD and SGD (NaN
  under adaptive optimizers such as Adam, whose threshold bounds the preconditioned sharpness
  instead; a warning says so) and ``sharpness_hvps``, the Hessian-vector products it took.
- :class:`TaylorMonitor`: ``taylor_c1``, ``taylor_c2``, ``taylor_c3`` and ``taylor_actual`` =
  L(theta') - L(theta) along the step theta' = theta - lr G with G_p = (lr_p / lr) grad_p (exact
  for GD and SGD without momentum; the gradient direction otherwise).
- :class:`InfoNuisanceMonitor`: with I, N the information and nuisance spaces of the NTK on the
  training set at initialization, ``residual_information`` = ||P_I r_t|| / ||r_0|| and
  ``residual_nuisance`` = ||P_N r_t|| / ||r_0|| (r = f - y), and ``label_information`` =
  ||P_I y|| / ||y|| with the current NTK's spaces (``label_information_init`` at step 0).
"""

from __future__ import annotations

from widenet.diagnostics.curvature_monitors import SharpnessMonitor, TaylorMonitor
from widenet.diagnostics.feature_layers import FeatureModules, HiddenFeatures
from widenet.diagnostics.geometry_monitors import MarginMonitor, SoftRankMonitor
from widenet.diagnostics.reference_monitors import (
    FeatureMovementMonitor,
    InfoNuisanceMonitor,
    KernelMonitor,
    LinearizationMonitor,
    WeightMovementMonitor,
)
from widenet.dynamics.monitor import Monitor

__all__ = [
    "FeatureMovementMonitor",
    "InfoNuisanceMonitor",
    "KernelMonitor",
    "LinearizationMonitor",
    "MarginMonitor",
    "SharpnessMonitor",
    "SoftRankMonitor",
    "TaylorMonitor",
    "WeightMovementMonitor",
    "default_monitors",
]

# Their public home names them wherever a class is recorded: in a checkpointed run's fingerprint
# (widenet.dynamics.checkpoint), so that runs checkpointed while they were defined here resume,
# and in reprs.
for _monitor in (FeatureMovementMonitor, InfoNuisanceMonitor, KernelMonitor, LinearizationMonitor,
                 MarginMonitor, SharpnessMonitor, SoftRankMonitor, TaylorMonitor,
                 WeightMovementMonitor):
    _monitor.__module__ = __name__
del _monitor


def default_monitors(feature_modules: FeatureModules | None = None) -> list[Monitor]:
    """The default set, at cadences (in steps) that keep its cost near a tenth of training's
    (benchmarks/bench_monitors.py): weight movement at every logged step, feature movement every
    50 steps, the last feature layer's soft ranks and the NTK on 256 probe points every 100.

    The feature monitors read the outputs of ``feature_modules`` (modules of the model or their
    names), by default a widenet MLP's hidden layers or an nn.Sequential's activations; for
    another model without ``feature_modules`` they warn at the start and record nothing
    (widenet.diagnostics.feature_layers). The two share one forward pass of the probe set.
    """
    features = HiddenFeatures(feature_modules, skip_unknown=True)
    return [WeightMovementMonitor(), FeatureMovementMonitor(every=50, modules=features),
            SoftRankMonitor(every=100, modules=features), KernelMonitor(every=100)]
