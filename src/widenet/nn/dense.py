"""Dense: the fully connected layer of widenet's nets (and of widenet.MLP)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from widenet.nn._weighted import Weighted
from widenet.parametrizations import DenseScaling, Parametrization
from widenet.validation import positive_int


class Dense(Weighted):
    """z = weight_multiplier * (x @ weight.T) + bias_multiplier * bias.

    The stored ``weight`` (out, in) and ``bias`` (out,) are the trainable variables, the ones
    gradients and NTKs are taken with respect to; the multipliers are constants set by the
    parametrization (NTK parametrization: weight_multiplier = sigma_w / sqrt(fan_in) and
    bias_multiplier = sigma_b on N(0, 1) variables; standard parametrization: both 1).
    ``bias`` is None when ``bias_std`` is 0. ``scaling`` overrides the multipliers and initial
    stds with a whole-net rule's (widenet.MLP passes its parametrization's); the layer then draws
    nothing itself.
    """

    def __init__(self, in_features: int, out_features: int, weight_std: float | None = None,
                 bias_std: float = 0.0, parametrization: str | Parametrization = "ntk", *,
                 scaling: DenseScaling | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.in_features = positive_int(in_features, "in_features")
        self.out_features = positive_int(out_features, "out_features")
        self._setup((self.out_features, self.in_features), self.out_features, self.in_features,
                    weight_std, bias_std, parametrization, scaling, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._bias_shaped(self._scale(F.linear(x, self.weight)), 0)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, weight_multiplier={self.weight_multiplier:.4g}, "
                f"bias_multiplier={self.bias_multiplier:.4g}")
