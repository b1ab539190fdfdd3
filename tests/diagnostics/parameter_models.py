"""A model that outputs its own parameter vector, so that loss_fn(theta, y) is any function of
theta (quadratics, cubics): shared by the sharpness and Taylor tests."""

from __future__ import annotations

import torch
from torch import nn

DUMMY_X = torch.zeros(1, 1, dtype=torch.float64)
DUMMY_Y = torch.zeros(1, dtype=torch.float64)


class ParameterOutput(nn.Module):
    """f(x; theta) = theta, whatever x."""

    def __init__(self, theta: torch.Tensor):
        super().__init__()
        self.theta = nn.Parameter(theta.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.theta
