"""Conv1d and Conv2d with padding "same", "valid" or "circular" (docs/theory.md section 7).

z[j] = m_w * sum_{delta} W[:, :, delta] y[s j + delta] + m_b * b, fan-in C_in * |filter|.
"same" and "circular" give ceil(n / s) outputs along an axis of n inputs: they pad it by
t = max((ceil(n / s) - 1) s + k - n, 0) positions, t // 2 before and the rest after (zeros, or
the wrapped-around input), the convention of TensorFlow, JAX and neural-tangents ("SAME",
"CIRCULAR"); with stride 1, t = k - 1 as in torch's padding="same". "valid" does not pad.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from widenet.errors import WidenetError
from widenet.nn._geometry import per_axis
from widenet.nn._weighted import Weighted
from widenet.parametrizations import Parametrization
from widenet.validation import positive_int

PADDINGS = ("same", "valid", "circular")


def padding_amounts(kernel_size: tuple[int, ...], padding: str, size: tuple[int, ...],
                    stride: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """(before, after) padding per spatial axis of ``size`` inputs for a filter of
    ``kernel_size`` moved by ``stride`` (the module docstring)."""
    if padding == "valid":
        return tuple((0, 0) for _ in kernel_size)
    totals = (max((-(-n // s) - 1) * s + k - n, 0)
              for k, n, s in zip(kernel_size, size, stride, strict=True))
    return tuple((t // 2, t - t // 2) for t in totals)


class _Conv(Weighted):
    """A convolution over ``dims`` spatial axes of inputs (N, C, *spatial)."""

    dims: int

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, ...],
                 stride: int | tuple[int, ...] = 1, padding: str = "same",
                 weight_std: float | None = None, bias_std: float = 0.0,
                 parametrization: str | Parametrization = "ntk", *,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.in_channels = positive_int(in_channels, "in_channels")
        self.out_channels = positive_int(out_channels, "out_channels")
        self.kernel_size = per_axis(kernel_size, self.dims, "kernel_size")
        self.stride = per_axis(stride, self.dims, "stride")
        if padding not in PADDINGS:
            raise WidenetError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
        self.padding = padding
        fan_in = self.in_channels * math.prod(self.kernel_size)
        self._setup((self.out_channels, self.in_channels, *self.kernel_size), self.out_channels,
                    fan_in, weight_std, bias_std, parametrization, None, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != self.dims + 2 or x.shape[1] != self.in_channels:
            raise WidenetError(f"{type(self).__name__} expects inputs (N, {self.in_channels}, "
                               f"{', '.join('L' * self.dims) if self.dims == 1 else 'H, W'}), "
                               f"got shape {tuple(x.shape)}")
        pads = [p for pair in reversed(padding_amounts(self.kernel_size, self.padding,
                                                       tuple(x.shape[2:]), self.stride))
                for p in pair]
        if any(pads):
            x = F.pad(x, pads, mode="circular" if self.padding == "circular" else "constant")
        convolve = F.conv1d if self.dims == 1 else F.conv2d
        return self._bias_shaped(self._scale(convolve(x, self.weight, stride=self.stride)),
                                 self.dims)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding!r}, {self.limit_repr()}")


class Conv1d(_Conv):
    """1-D convolution on inputs (N, C, L); see the module docstring."""

    dims = 1


class Conv2d(_Conv):
    """2-D convolution on inputs (N, C, H, W); see the module docstring."""

    dims = 2
