"""The layers whose parameter gradients factorize, and how to read off their factors.

For an affine layer z[t] = m_w * W a[t] + m_b * b applied at positions t = 1..T of one point
(T = 1 for a dense layer on a vector, the output pixels for a convolution, whose a[t] is the
unfolded input patch), the gradients of an output unit f_a are

    df_a/dW = m_w * sum_t g_a[t] a[t]^T,    df_a/db = m_b * sum_t g_a[t],    g_a[t] = df_a/dz[t],

so the NTK contribution of W between points i, j is
m_w^2 sum_{t,s} (a_i[t] . a_j[s]) (g_ai[t] . g_bj[s]) and never needs the Jacobian itself.
The modules with this form are looked up by exact type (a subclass may change ``forward``) in
one registry, ``LAYER_KINDS``: nn.Linear, nn.Conv1d and nn.Conv2d (groups=1, zero padding) and
widenet's Dense, Conv1d and Conv2d here; a new layer type joins with ``register_layer``,
saying how to read its multipliers, unfold its input into the (n, T, p) factor A and lay out
its output gradients as the (k, n, T, q) factor G.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from widenet.nn import Conv1d, Conv2d, Dense
from widenet.nn.conv import padding_amounts


@dataclass(frozen=True)
class LayerKind:
    """How the layers of one module type factorize.

    ``scales(module)`` gives (m_w^2, m_b^2); ``inputs(module)`` the function mapping the layer's
    input for c points to A, shape (c, T, p); ``grads`` maps output gradients, shape
    (kc, c, *z.shape[1:]), to G, shape (kc, c, T, q); ``problem(module)`` says why a module of
    this type cannot be factorized (None when it can), and ``input_problem(module, a)`` why a
    call on the batched input ``a`` cannot.
    """

    scales: Callable[[nn.Module], tuple[float, float]]
    inputs: Callable[[nn.Module], Callable[[torch.Tensor], torch.Tensor]]
    grads: Callable[[torch.Tensor], torch.Tensor]
    problem: Callable[[nn.Module], str | None] = lambda module: None
    input_problem: Callable[[nn.Module, torch.Tensor], str | None] = lambda module, a: None


LAYER_KINDS: dict[type[nn.Module], LayerKind] = {}


def register_layer(kind: type[nn.Module], spec: LayerKind) -> None:
    """Let the layer-wise method handle modules of exactly the type ``kind``, whose trainable
    parameters must be ``weight`` and (optionally) ``bias`` and whose forward must be
    z[t] = m_w W a[t] + m_b b at the positions t that ``spec.inputs`` unfolds."""
    LAYER_KINDS[kind] = spec


def _qualified_name(kind: type) -> str:
    """``nn.Linear`` for torch's layers, the full path (``widenet.nn.conv.Conv1d``) for others, so
    that same-named types of two libraries are told apart."""
    if kind.__module__.startswith("torch.nn."):
        return f"nn.{kind.__qualname__}"
    return f"{kind.__module__}.{kind.__qualname__}"


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
    spec = LAYER_KINDS.get(type(module))
    if spec is None:
        known = ", ".join(map(_qualified_name, LAYER_KINDS))
        return f"it is a {type(module).__name__}; the layer-wise method knows {known}"
    extra = [name for name in module._parameters if name not in ("weight", "bias")]
    if extra or not isinstance(module._parameters.get("weight"), torch.Tensor):
        return (f"its weight is computed from other parameters ({', '.join(extra) or 'none'}), "
                "as by weight_norm; the layer-wise method needs weight and bias parameters")
    shadowed = [name for name in module._parameters if name in vars(module)]
    if shadowed:  # set through __dict__: attribute lookup finds it before the parameter
        return (f"an instance attribute {shadowed[0]!r} hides its parameter of that name, so its "
                "forward does not use the parameter")
    return spec.problem(module)


def make_adapter(path: str, module: nn.Module, trainable: dict[int, str]) -> LayerAdapter:
    """The adapter of a supported ``module``; ``trainable`` maps id(parameter) -> its name."""
    spec = LAYER_KINDS[type(module)]
    weight = trainable.get(id(module.weight))
    bias = None if module.bias is None else trainable.get(id(module.bias))
    return LayerAdapter(path, module, weight, bias, *spec.scales(module), spec.inputs(module),
                        spec.grads)


def input_reason(module: nn.Module, a: torch.Tensor, z: torch.Tensor, batch: int) -> str | None:
    """Why a call of a supported ``module`` on input ``a`` (output ``z``) cannot be factorized.

    The factorization needs the batch of ``batch`` points as the first dimension of both, and
    whatever the module's kind asks of its input.
    """
    if a.shape[:1] != (batch,) or z.shape[:1] != (batch,):
        return (f"it is called on a tensor of shape {tuple(a.shape)} whose first dimension is "
                f"not the batch of {batch} point(s)")
    return LAYER_KINDS[type(module)].input_problem(module, a)


def factor_sizes(layer: LayerAdapter, a: torch.Tensor, z: torch.Tensor) -> tuple[int, int, int]:
    """(T, p, q) of a layer called on input ``a`` with output ``z``: positions, patch, out width."""
    _, positions, p = layer.inputs(a[:1]).shape
    return positions, p, layer.grads(z[None, :1]).shape[-1]


def unit_scales(module: nn.Module) -> tuple[float, float]:
    """m_w^2 = m_b^2 = 1: the parameters enter the layer as they are (torch's own layers)."""
    return 1.0, 1.0


def multiplier_scales(module: nn.Module) -> tuple[float, float]:
    """(m_w^2, m_b^2) of a layer with ``weight_multiplier`` and ``bias_multiplier``."""
    return module.weight_multiplier ** 2, module.bias_multiplier ** 2


def dense_patches(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """(c, ..., p) -> (c, T, p): every leading position of a dense layer's input is a patch (T
    counted, not inferred, so that p = 0 inputs reshape too)."""
    return lambda a: a.reshape(a.shape[0], math.prod(a.shape[1:-1]), a.shape[-1])


def dense_grads(g: torch.Tensor) -> torch.Tensor:
    """(kc, c, ..., q) -> (kc, c, T, q) (T counted, so that q = 0 outputs reshape too)."""
    return g.reshape(g.shape[0], g.shape[1], math.prod(g.shape[2:-1]), g.shape[-1])


def conv_grads(g: torch.Tensor) -> torch.Tensor:
    """(kc, c, q, *spatial) -> (kc, c, T, q), T = the number of output pixels."""
    return g.flatten(3).transpose(2, 3)


def conv_patches(conv: nn.Conv1d | nn.Conv2d) -> Callable[[torch.Tensor], torch.Tensor]:
    """The unfolding of a convolution's input into (c, T, C_in * prod(kernel_size)) patches."""
    axes = len(conv.kernel_size)
    padding = (0,) * axes if conv.padding == "valid" else _per_axis(conv.padding, axes)
    dilation, stride = _per_axis(conv.dilation, axes), _per_axis(conv.stride, axes)
    if axes == 1:
        geometry = {"kernel_size": (1, *conv.kernel_size), "dilation": (1, *dilation),
                    "padding": (0, *padding), "stride": (1, *stride)}
    else:
        geometry = {"kernel_size": conv.kernel_size, "dilation": dilation,
                    "padding": padding, "stride": stride}

    def patches(a: torch.Tensor) -> torch.Tensor:
        image = a.unsqueeze(2) if len(conv.kernel_size) == 1 else a
        return F.unfold(image, **geometry).transpose(1, 2)

    return patches


def _per_axis(value: int | tuple[int, ...], axes: int) -> tuple[int, ...]:
    """A convolution's padding, dilation or stride as one value per axis: torch's layers hold
    tuples, and take a bare int set on them afterwards as that int on every axis."""
    return (value,) * axes if isinstance(value, int) else tuple(value)


def conv_problem(conv: nn.Conv1d | nn.Conv2d) -> str | None:
    """Why a 1-D or 2-D convolution cannot be unfolded into patches, or None."""
    if conv.groups != 1:
        return f"it is a grouped convolution (groups={conv.groups})"
    if conv.padding_mode != "zeros":
        return f"it pads with padding_mode={conv.padding_mode!r}"
    if conv.padding == "same":
        return "it uses padding='same'"
    return None


def conv_input_problem(conv: nn.Conv1d | nn.Conv2d, a: torch.Tensor) -> str | None:
    """Why a convolution's call on ``a`` cannot be unfolded (an unbatched input), or None."""
    if a.ndim != len(conv.kernel_size) + 2:
        return f"it is called on an unbatched input of shape {tuple(a.shape)}"
    return None


_DENSE = LayerKind(unit_scales, dense_patches, dense_grads)
_CONV = LayerKind(unit_scales, conv_patches, conv_grads, conv_problem, conv_input_problem)
register_layer(nn.Linear, _DENSE)
register_layer(Dense, LayerKind(multiplier_scales, dense_patches, dense_grads))
register_layer(nn.Conv1d, _CONV)
register_layer(nn.Conv2d, _CONV)


def widenet_conv_patches(conv: Conv1d | Conv2d) -> Callable[[torch.Tensor], torch.Tensor]:
    """widenet's convolutions pad explicitly (zeros or circular), then convolve unpadded."""
    mode = "circular" if conv.padding == "circular" else "constant"
    ones = (1,) * (2 - conv.dims)
    geometry = {"kernel_size": ones + conv.kernel_size, "stride": ones + conv.stride}

    def patches(a: torch.Tensor) -> torch.Tensor:
        pads = [p for pair in reversed(padding_amounts(conv.kernel_size, conv.padding,
                                                       tuple(a.shape[2:]), conv.stride))
                for p in pair]
        padded = F.pad(a, pads, mode=mode) if any(pads) else a
        image = padded.unsqueeze(2) if conv.dims == 1 else padded
        return F.unfold(image, **geometry).transpose(1, 2)

    return patches


_WIDENET_CONV = LayerKind(multiplier_scales, widenet_conv_patches, conv_grads,
                          input_problem=conv_input_problem)
register_layer(Conv1d, _WIDENET_CONV)
register_layer(Conv2d, _WIDENET_CONV)
