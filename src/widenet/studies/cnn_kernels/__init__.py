"""Study ``cnn-kernels``: the convolutional limit on digits (docs/theory.md section 7).

(a) The empirical NTK of CNNs of growing width m (3x3 ReLU convolutions on 1x8x8 digits, with
a flatten or a global-average-pooling readout) concentrates around the CNTK like m^{-1/2}:
the relative Frobenius error of each network, fitted against m on log-log axes.
(b) Kernel regression with the NNGP and the NTK of the same architectures, and CNNs of growing
width trained by full-batch gradient descent on the squared loss (centered at their initial
outputs): test accuracies of each, and the trained nets' distance to the NTK's prediction
after the same number of steps, which shrinks as width grows (lazy training). See
docs/studies/cnn-kernels.md.
"""

from __future__ import annotations

from widenet.deferred import Deferred
from widenet.studies.cnn_kernels.config import CnnKernelsConfig
from widenet.studies.common.base import Study

STUDY = Study(name="cnn-kernels",
              summary="CNNs on digits: the empirical NTK concentrates around the CNTK like "
                      "m^-1/2; kernel regression vs trained CNNs",
              config=CnnKernelsConfig,
              plan=Deferred("widenet.studies.cnn_kernels.measure", "plan"),
              analyze=Deferred("widenet.studies.cnn_kernels.analysis", "analyze"))

__all__ = ["STUDY", "CnnKernelsConfig"]
