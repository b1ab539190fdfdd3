"""Layers without weights that act at each position: activation, flatten, layer normalization."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from widenet.activations import Activation as ActivationFunction
from widenet.activations import get_activation
from widenet.validation import finite_real


class Activation(nn.Module):
    """phi applied elementwise, for any widenet activation: ``Activation("relu")``,
    ``Activation(widenet.activations.ab(0.5, 0.8))``, ``Activation(torch.sin)`` (quadrature)."""

    def __init__(self, activation: str | ActivationFunction | Callable[[torch.Tensor],
                                                                      torch.Tensor] = "relu"):
        super().__init__()
        self.activation = get_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(x)

    def extra_repr(self) -> str:
        return self.activation.name


class Flatten(nn.Module):
    """(N, C, *spatial) -> (N, C * prod(spatial)), channel-major like torch.flatten."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


class LayerNorm(nn.Module):
    """Normalization over the channels at each position, without learned gain or shift:
    y[:, c, i] = (x[:, c, i] - mean_c x[:, :, i]) / sqrt(var_c x[:, :, i] + eps).

    Its infinite-width limit (docs/theory.md section 7) holds for zero-mean inputs, such as the
    output of a weighted layer; widenet.infinite_kernels refuses it elsewhere.
    """

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = finite_real(eps, "eps", minimum=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=1, keepdim=True)
        return centred * torch.rsqrt(centred.pow(2).mean(dim=1, keepdim=True) + self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps:g}"
