"""Study ``lr-transfer``: does the optimal learning rate transfer across widths (muP vs SP)?

docs/theory.md section 1. Under the standard parametrization (SP) with one global learning rate the
size of an update grows with width (the readout's update moves the logits by ~ lr * m, and with
Adam every hidden layer's too), so the largest useful learning rate, and with it the optimum,
shifts to smaller values as the net widens. Under muP (Tensor Programs V, Table 3, relative to a
base width where it equals SP) every layer's update stays O(1) per coordinate at every width, so
the optimum stays put ("muTransfer"): the drift across widths should be at most one grid step.
The coordinate check makes the same statement about activations: the mean |z_l| of every layer
after a few steps is flat in width under muP and grows under SP.

Each ``sweep`` task trains one (parametrization, optimizer, width, seed) at every learning rate
of the log2 grid on a digits classification task (``loss``: mse on one-hot targets by default,
or cross-entropy; minibatch SGD or Adam) and records the final train and test loss; each
``coord`` task trains one net for a few steps at a fixed learning rate on the cross-entropy
loss and records mean |z_l| of every dense layer's output at every step. The shift of the
optimum per doubling of the width is fitted seed by seed on the optima inside the grid (one
at the grid's edge is only a bound, which makes the check inconclusive); for the NTK
parametrization it decides between the framework (the lr transfers) and the muP paper (it
does not).
See docs/studies/lr-transfer.md.
"""

from __future__ import annotations

from widenet.deferred import Deferred
from widenet.studies.common.base import Study
from widenet.studies.lr_transfer.config import LRTransferConfig

STUDY = Study(
    name="lr-transfer",
    summary="muP vs SP vs NTK: does the optimal learning rate stay put across widths? "
            "(+ coordinate check)",
    config=LRTransferConfig,
    plan=Deferred("widenet.studies.lr_transfer.measure", "plan"),
    analyze=Deferred("widenet.studies.lr_transfer.analysis", "analyze"))

__all__ = ["STUDY", "LRTransferConfig"]
