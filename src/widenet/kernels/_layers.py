"""The layers whose parameter gradients factorize, and how to read off their factors.

For an affine layer z[t] = m_w * W a[t] + m_b * b applied at positions t = 1..T of one point
(T = 1 for a dense layer on a vector, the output pixels for a convolution, whose a[t] is the
unfolded input patch), the gradients of an output unit f_a are

    df_a/dW = m_w * sum_t g_a[t] a[t]^T,    df_a/db = m_b * sum_t g_a[t],    g_a[t] = df_a/dz[t],

so the NTK contribution of W between points i, j is
m_w^2 sum_{t,s} (a_i[t] . a_j[s]) (g_ai[t] . g_bj[s]) and never needs the Jacobian itself.
This module knows which modules have this form (nn.Linear, nn.Conv1d, nn.Conv2d with
groups=1 and zero padding, widenet's Dense, Conv1d and Conv2d) and how to turn their input
and output-gradient tensors into the (n, T, p) and (k, n, T, q) factors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from widenet.nn import Conv1d, Conv2d, Dense
from widenet.nn.conv import padding_amounts


@dataclass(frozen=True)
class LayerAdapter:
    """How one supported module's trainable parameters factorize.

    ``weight`` and ``bias`` are the full parameter names (None when absent or frozen);
    ``weight_scale = m_w^2`` and ``bias_scale = m_b^2``. ``inputs`` maps the layer's input for
    c points to A, shape (c, T, p); ``grads`` maps the gradients of kc outputs with respect to
    the layer's output, shape (kc, c, *z.shape[1:]), to G, shape (kc, c, T, q).
    """

    path: str
    module: nn.Module
    weight: str | None
    bias: str | None
    weight_scale: float
    bias_scale: float
    inputs: Callable[[torch.Tensor], torch.Tensor]
    grads: Callable[[torch.Tensor], torch.Tensor]


def unsupported_reason(module: nn.Module) -> str | None:
    """Why the layer-wise method cannot handle ``module``'s parameters, or None if it can."""
    kind = type(module)
    if kind not in (nn.Linear, Dense, nn.Conv1d, nn.Conv2d, Conv1d, Conv2d):
        return (f"it is a {kind.__name__}; the layer-wise method knows nn.Linear, nn.Conv1d, "
                "nn.Conv2d and widenet's Dense, Conv1d and Conv2d")
    if isinstance(module, nn.Conv1d | nn.Conv2d):
        if module.groups != 1:
            return f"it is a grouped convolution (groups={module.groups})"
        if module.padding_mode != "zeros":
            return f"it pads with padding_mode={module.padding_mode!r}"
        if module.padding == "same":
            return "it uses padding='same'"
    return None


def make_adapter(path: str, module: nn.Module, trainable: dict[int, str]) -> LayerAdapter:
    """The adapter of a supported ``module``; ``trainable`` maps id(parameter) -> its name."""
    weight = trainable.get(id(module.weight))
    bias = None if module.bias is None else trainable.get(id(module.bias))
    if isinstance(module, Dense | Conv1d | Conv2d):
        scales = (module.weight_multiplier ** 2, module.bias_multiplier ** 2)
    else:
        scales = (1.0, 1.0)
    if isinstance(module, nn.Conv1d | nn.Conv2d):
        return LayerAdapter(path, module, weight, bias, *scales, _conv_patches(module),
                            _conv_grads)
    if isinstance(module, Conv1d | Conv2d):
        return LayerAdapter(path, module, weight, bias, *scales, _widenet_conv_patches(module),
                            _conv_grads)
    return LayerAdapter(path, module, weight, bias, *scales, _dense_patches, _dense_grads)


def input_reason(module: nn.Module, a: torch.Tensor, z: torch.Tensor, batch: int) -> str | None:
    """Why a call of a supported ``module`` on input ``a`` (output ``z``) cannot be factorized.

    The factorization needs the batch of ``batch`` points as the first dimension of both, and
    a batched input for convolutions.
    """
    if a.shape[:1] != (batch,) or z.shape[:1] != (batch,):
        return (f"it is called on a tensor of shape {tuple(a.shape)} whose first dimension is "
                f"not the batch of {batch} points")
    if isinstance(module, nn.Conv1d | nn.Conv2d | Conv1d | Conv2d) and \
            a.ndim != len(module.kernel_size) + 2:
        return f"it is called on an unbatched input of shape {tuple(a.shape)}"
    return None


def _dense_patches(a: torch.Tensor) -> torch.Tensor:
    """(c, ..., p) -> (c, T, p): every leading position of a dense layer's input is a patch."""
    return a.reshape(a.shape[0], -1, a.shape[-1])


def _dense_grads(g: torch.Tensor) -> torch.Tensor:
    """(kc, c, ..., q) -> (kc, c, T, q)."""
    return g.reshape(g.shape[0], g.shape[1], -1, g.shape[-1])


def _conv_grads(g: torch.Tensor) -> torch.Tensor:
    """(kc, c, q, *spatial) -> (kc, c, T, q), T = the number of output pixels."""
    return g.flatten(3).transpose(2, 3)


def _conv_patches(conv: nn.Conv1d | nn.Conv2d) -> Callable[[torch.Tensor], torch.Tensor]:
    """The unfolding of a convolution's input into (c, T, C_in * prod(kernel_size)) patches."""
    padding = (0,) * len(conv.kernel_size) if conv.padding == "valid" else conv.padding
    if isinstance(conv, nn.Conv1d):
        geometry = {"kernel_size": (1, *conv.kernel_size), "dilation": (1, *conv.dilation),
                    "padding": (0, *padding), "stride": (1, *conv.stride)}
    else:
        geometry = {"kernel_size": conv.kernel_size, "dilation": conv.dilation,
                    "padding": padding, "stride": conv.stride}

    def patches(a: torch.Tensor) -> torch.Tensor:
        image = a.unsqueeze(2) if isinstance(conv, nn.Conv1d) else a
        return F.unfold(image, **geometry).transpose(1, 2)

    return patches


def _widenet_conv_patches(conv: Conv1d | Conv2d) -> Callable[[torch.Tensor], torch.Tensor]:
    """widenet's convolutions pad explicitly (zeros or circular), then convolve unpadded."""
    pads = [p for pair in reversed(padding_amounts(conv.kernel_size, conv.padding)) for p in pair]
    mode = "circular" if conv.padding == "circular" else "constant"
    ones = (1,) * (2 - conv.dims)
    geometry = {"kernel_size": ones + conv.kernel_size, "stride": ones + conv.stride}

    def patches(a: torch.Tensor) -> torch.Tensor:
        padded = F.pad(a, pads, mode=mode) if any(pads) else a
        image = padded.unsqueeze(2) if conv.dims == 1 else padded
        return F.unfold(image, **geometry).transpose(1, 2)

    return patches


def factor_sizes(layer: LayerAdapter, a: torch.Tensor, z: torch.Tensor) -> tuple[int, int, int]:
    """(T, p, q) of a layer called on input ``a`` with output ``z``: positions, patch, out width."""
    _, positions, p = layer.inputs(a[:1]).shape
    return positions, p, layer.grads(z[None, :1]).shape[-1]
