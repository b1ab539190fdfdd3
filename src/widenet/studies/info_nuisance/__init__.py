"""Study ``info-nuisance``: the residual leaves the NTK's information space first.

docs/theory.md section 5 (information / nuisance spaces, Oymak et al. 2019). With K = V Lambda V^T
the NTK on the n training points, I the span of its top r eigenvectors and N = I^perp, GD on the
MSE shrinks the residual's I-part like (1 - lr lambda/n)^t with lambda >= alpha = lambda_r, fast,
while its N-part barely moves. Clean labels lie mostly in I (||P_I y|| / ||y|| large), random
labels much less; fitting the corrupted labels therefore happens late, through the N-part, and
goes with a rising test error (hence early stopping). During training the NTK aligns with the
labels, so ||P_I y|| / ||y|| should grow from initialization to the end.

Each task trains one centered MLP (h = f - f_0) on digits with clean (0%) or partly corrupted
labels for one seed; the clean and corrupted runs of a seed share data and weights. See
docs/studies/info-nuisance.md.
"""

from __future__ import annotations

from widenet.deferred import Deferred
from widenet.studies.common.base import Study
from widenet.studies.info_nuisance.config import InfoNuisanceConfig

STUDY = Study(name="info-nuisance",
              summary="residual's NTK information part decays first; corrupted labels live "
                      "in the nuisance space and are fitted late",
              config=InfoNuisanceConfig,
              plan=Deferred("widenet.studies.info_nuisance.measure", "plan"),
              analyze=Deferred("widenet.studies.info_nuisance.analysis", "analyze"))

__all__ = ["STUDY", "InfoNuisanceConfig"]
