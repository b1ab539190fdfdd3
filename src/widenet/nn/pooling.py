"""Average pooling (window, stride; no padding) and global average pooling."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from widenet.nn._geometry import per_axis


class _AvgPool(nn.Module):
    """y[j] = (1/|W|) sum_{i in W_j} x[i] with windows W_j = s j + [0, window) per axis."""

    dims: int

    def __init__(self, window: int | tuple[int, ...], stride: int | tuple[int, ...] | None = None):
        super().__init__()
        self.window = per_axis(window, self.dims, "window")
        self.stride = self.window if stride is None else per_axis(stride, self.dims, "stride")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = F.avg_pool1d if self.dims == 1 else F.avg_pool2d
        return pool(x, self.window, self.stride)

    def extra_repr(self) -> str:
        return f"window={self.window}, stride={self.stride}"


class AvgPool1d(_AvgPool):
    """Average pooling of inputs (N, C, L)."""

    dims = 1


class AvgPool2d(_AvgPool):
    """Average pooling of inputs (N, C, H, W)."""

    dims = 2


class GlobalAvgPool(nn.Module):
    """(N, C, *spatial) -> (N, C): the mean over every spatial position."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).mean(dim=2)
