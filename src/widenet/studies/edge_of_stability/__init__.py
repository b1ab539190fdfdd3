"""Study ``edge-of-stability``: full-batch GD sharpens to 2/lr and hovers there; training beyond.

docs/theory.md section 5. The sharpness S = lambda_max(nabla^2 L(theta)) (Cohen et al. 2021): on a
quadratic, GD with step lr diverges iff S > 2/lr; in training, S rises (progressive sharpening)
until it reaches 2/lr and then hovers around it (the edge of stability, EoS) while the loss
keeps falling, non-monotonically.

Part 1 ("eos" tasks) trains an MLP by full-batch GD on a standardized subset of ``digits`` at
lr = lr_factor * 2 / S_0 for each factor (S_0 the sharpness at initialization, so the edge
2/lr = S_0 / lr_factor lies above it) and records the loss at every step and S every
``sharpness_every`` steps. MSE regresses the one-hot targets from a small starting sharpness
(sigma_w = ``mse_weight_std`` below the edge of chaos); cross-entropy fits labels of which a
fraction ``ce_label_noise`` is random, and is judged only in its large-loss phase (loss >=
``large_loss_fraction`` x initial), where Cohen et al. claim sharpening and the edge.

Part 2 ("beyond" tasks) trains a bias-free abs MLP with quadratic widths m_l = l^2 m (docs/theory.md
section 5, "training beyond the edge of stability", Terjek 2025) by GD at lr = c * 2 / S_0 for
c in ``beyond_factors`` (a grid fine enough to locate the largest stable c), with and without
widenet's depthwise :class:`NormalizedUpdateScaling`, from ``beyond_seeds`` independent
initializations (replicates; both arms and every c share each).
With the scaling the step is preconditioned by D = diag(xi_l) and GD on a quadratic is stable
iff lambda_max(D^1/2 H D^1/2) < 2/lr, so S_0 is that preconditioned sharpness at initialization
there (:func:`preconditioned_sharpness`): the factor c means the same "c times the classical
limit" in both arms. Recorded: loss explosions, final loss, sharpness, the participation ratio
of the last hidden layer's features and the loss's Taylor coefficients c1, c2, c3 along the run.
See docs/studies/edge-of-stability.md.
"""

from __future__ import annotations

from widenet.deferred import Deferred
from widenet.studies.common.base import Study
from widenet.studies.edge_of_stability.config import EoSConfig

STUDY = Study(name="edge-of-stability",
              summary="GD sharpens to 2/lr and hovers there; depthwise update scaling trains "
                      "past 2/S without loss explosions",
              config=EoSConfig,
              plan=Deferred("widenet.studies.edge_of_stability.measure", "plan"),
              analyze=Deferred("widenet.studies.edge_of_stability.analysis", "analyze"))

__all__ = ["STUDY", "EoSConfig"]
