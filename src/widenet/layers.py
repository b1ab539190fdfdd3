"""The dense layer of widenet's MLPs: stored N(0, std^2) parameters times fixed multipliers."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Dense(nn.Module):
    """z = weight_multiplier * (x @ weight.T) + bias_multiplier * bias.

    The stored ``weight`` (out, in) and ``bias`` (out,) are the trainable variables, the ones
    gradients and NTKs are taken with respect to; the multipliers are constants set by the
    parametrization (NTK parametrization: weight_multiplier = sigma_w / sqrt(fan_in) and
    bias_multiplier = sigma_b on N(0, 1) variables; standard parametrization: both 1).
    ``bias`` is None for a bias-free layer.
    """

    def __init__(self, in_features: int, out_features: int, *, bias: bool,
                 weight_multiplier: float = 1.0, bias_multiplier: float = 1.0,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.weight_multiplier = float(weight_multiplier)
        self.bias_multiplier = float(bias_multiplier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.linear(x, self.weight)
        if self.weight_multiplier != 1.0:
            z = z * self.weight_multiplier
        if self.bias is not None:
            z = z + self.bias_multiplier * self.bias
        return z

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, weight_multiplier={self.weight_multiplier:.4g}, "
                f"bias_multiplier={self.bias_multiplier:.4g}")
