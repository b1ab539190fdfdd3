"""Named convolutional architectures of the kernel literature, built from widenet.nn layers.

All use 3x3 "same" convolutions in the NTK parametrization with edge-of-chaos stds for the
activation (sigma_w^2 = 2 for ReLU) unless told otherwise; the infinite-width kernels do not
depend on ``channels``, so a limit-only model can be built with ``device="meta"``.
"""

from __future__ import annotations

import torch

from widenet.errors import WidenetError
from widenet.nn.containers import Sequential
from widenet.nn.conv import Conv2d
from widenet.nn.dense import Dense
from widenet.nn.elementwise import Activation, Flatten
from widenet.nn.pooling import AvgPool2d, GlobalAvgPool
from widenet.validation import positive_int

READOUTS = ("flatten", "gap")


def cnn(in_channels: int, image_size: tuple[int, int], channels: int, depth: int, *,
        readout: str = "flatten", outputs: int = 1, activation: str = "relu",
        bias_std: float = 0.0, seed: int | None = None,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None
        ) -> Sequential:
    """``depth`` x [conv3x3 -> activation] with ``channels`` channels, then the readout:
    "flatten" (flatten + dense over all H W positions) or "gap" (global average pooling +
    dense), to ``outputs`` units."""
    depth = positive_int(depth, "depth")
    channels = positive_int(channels, "channels")
    if readout not in READOUTS:
        raise WidenetError(f"readout must be one of {', '.join(READOUTS)}, got {readout!r}")
    height, width = (positive_int(side, "image_size") for side in image_size)
    factory = {"device": device, "dtype": dtype}
    layers: list[torch.nn.Module] = []
    for index in range(depth):
        layers += [Conv2d(in_channels if index == 0 else channels, channels, 3,
                          bias_std=bias_std, **factory), Activation(activation)]
    if readout == "flatten":
        layers += [Flatten(), Dense(channels * height * width, outputs, bias_std=bias_std,
                                    **factory)]
    else:
        layers += [GlobalAvgPool(), Dense(channels, outputs, bias_std=bias_std, **factory)]
    return Sequential(*layers, seed=seed)


def myrtle5(in_channels: int = 3, channels: int = 128, *, outputs: int = 1,
            activation: str = "relu", seed: int | None = None,
            device: torch.device | str | None = None, dtype: torch.dtype | None = None
            ) -> Sequential:
    """Myrtle-5 (Shankar et al. 2020) on 32x32 images: [conv3x3-act] x2, avgpool 2x2,
    conv3x3-act, avgpool 2x2, conv3x3-act, avgpool 2x2 x3 (to 1x1), flatten, dense; no biases
    (docs/theory.md section 7)."""
    factory = {"device": device, "dtype": dtype}
    channels = positive_int(channels, "channels")

    def block(fan_in: int) -> list[torch.nn.Module]:
        return [Conv2d(fan_in, channels, 3, **factory), Activation(activation)]

    return Sequential(*block(in_channels), *block(channels), AvgPool2d(2),
                      *block(channels), AvgPool2d(2), *block(channels),
                      AvgPool2d(2), AvgPool2d(2), AvgPool2d(2),
                      Flatten(), Dense(channels, outputs, **factory), seed=seed)
