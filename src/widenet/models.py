"""The MLP: a finite-width torch module that also carries what its infinite-width limit needs."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from torch import nn

from widenet.activations import Activation, get_activation
from widenet.devices import parameter_device
from widenet.errors import WidenetError
from widenet.memory import FLOAT64_BYTES, mlp_parameters, require_memory
from widenet.nn._weighted import draw_normal_, seeded_generator
from widenet.nn.dense import Dense
from widenet.parametrizations import Parametrization, get_parametrization
from widenet.validation import finite_real, floating_dtype, positive_int


class MLP(nn.Module):
    """f(x) = z_{L+1}, z_l = Dense_l(h_{l-1}), h_l = phi(z_l), h_0 = x (docs/theory.md section 1).

    Args:
        in_features: input dimension d.
        hidden: widths n_1..n_L of the hidden layers (see :mod:`widenet.widths`); may be empty.
        out_features: number of outputs k.
        activation: a name (``"relu"``, ``"abs"``, ``"tanh"``, ...), an
            :class:`~widenet.activations.Activation`, or any elementwise callable.
        weight_std: sigma_w. ``None`` means the edge-of-chaos value for the activation at the
            given ``bias_std`` (sigma_w^2 = 1 / (a^2 + b^2) for phi = a s + b |s|).
        bias_std: sigma_b. With 0 the net has no bias parameters at all (the bias-free MLP of the
            edge-of-chaos papers, positively homogeneous for the ``ab`` family).
        parametrization: ``"ntk"`` (default), ``"standard"``, ``"mean-field"`` or an instance
            such as ``MuP(base_hidden=64)`` (muP needs its base widths: the name ``"mup"`` alone
            is refused); see :mod:`widenet.parametrizations`.
        seed, generator: make the initialization reproducible (give at most one); without
            either it draws from torch's global generator. Draws happen in float64 on the CPU,
            so a seed gives the same network in every dtype and on every device.
        device, dtype: where the parameters live.

    The attributes ``activation``, ``weight_std``, ``bias_std``, ``parametrization`` and
    ``depth`` are what :func:`widenet.infinite_kernels` reads; widths do not enter the limit.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int,
                 activation: str | Activation | Callable[[torch.Tensor], torch.Tensor] = "relu",
                 weight_std: float | None = None, bias_std: float = 0.0,
                 parametrization: str | Parametrization = "ntk", *, seed: int | None = None,
                 generator: torch.Generator | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.in_features = positive_int(in_features, "in_features")
        self.out_features = positive_int(out_features, "out_features")
        if isinstance(hidden, int | str) or not isinstance(hidden, Sequence):
            raise WidenetError(f"hidden must be a list of widths such as [512, 512], "
                               f"got {hidden!r}")
        self.hidden = tuple(positive_int(w, f"hidden[{i}]") for i, w in enumerate(hidden))
        self.activation = get_activation(activation)
        self.bias_std = finite_real(bias_std, "bias_std", minimum=0.0)
        self.weight_std = (self.activation.edge_of_chaos(self.bias_std) if weight_std is None
                           else finite_real(weight_std, "weight_std", minimum=0.0, strict=True))
        self.parametrization = get_parametrization(parametrization)
        sizes = (self.in_features, *self.hidden, self.out_features)
        self.scalings = tuple(self.parametrization.scalings(sizes, self.weight_std,
                                                            self.bias_std))
        device = parameter_device(device)
        dtype = None if dtype is None else floating_dtype(dtype)
        _require_parameter_memory(sizes, self.bias_std > 0, device, dtype)
        self.layers = nn.ModuleList(
            Dense(fan_in, fan_out, self.weight_std, self.bias_std, self.parametrization,
                  scaling=scaling, device=device, dtype=dtype)
            for (fan_in, fan_out), scaling in zip(itertools.pairwise(sizes), self.scalings,
                                                  strict=True))
        self.reset_parameters(seed=seed, generator=generator)

    @property
    def depth(self) -> int:
        """L, the number of hidden layers (the net has L + 1 dense layers)."""
        return len(self.hidden)

    def reset_parameters(self, *, seed: int | None = None,
                         generator: torch.Generator | None = None) -> None:
        """Draw every parameter afresh from its parametrization's initial distribution."""
        generator = seeded_generator(seed, generator)
        for layer, scaling in zip(self.layers, self.scalings, strict=True):
            draw_normal_(layer.weight, scaling.weight.init_std, generator)
            if layer.bias is not None:
                draw_normal_(layer.bias, scaling.bias.init_std, generator)

    def lr_scales(self, optimizer: str) -> dict[str, float]:
        """The parametrization's learning-rate factor of every parameter, by parameter name,
        for an optimizer family ("sgd" or "adam")."""
        scales = {}
        for index, (layer, scaling) in enumerate(zip(self.layers, self.scalings, strict=True)):
            scales[f"layers.{index}.weight"] = scaling.weight.lr_scale(optimizer)
            if layer.bias is not None:
                scales[f"layers.{index}.bias"] = scaling.bias.lr_scale(optimizer)
        return scales

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.layers[:-1]:
            h = self.activation(layer(h))
        return self.layers[-1](h)

    def extra_repr(self) -> str:
        return (f"activation={self.activation.name}, weight_std={self.weight_std:.6g}, "
                f"bias_std={self.bias_std:.6g}, parametrization={self.parametrization.name}")


_LAYER_BYTES = 16_000
"""Host memory one dense layer's module objects take besides its values (a Dense with its
weight and bias Parameters: about 10 kB measured, rounded up)."""


def _require_parameter_memory(sizes: tuple[int, ...], bias: bool,
                              device: torch.device | str | None,
                              dtype: torch.dtype | None) -> None:
    """Refuse, before allocating, a net whose layers' module objects (host memory, on every
    device, meta included: about 330 us and 10 kB per layer, so 10^7 layers would build for an
    hour into 100 GB), whose parameters (in ``dtype`` on ``device``) or whose largest weight
    matrix (drawn in float64 on the CPU) would not fit in the free memory. On the meta device
    no values are allocated or drawn."""
    layers = len(sizes) - 1
    require_memory(layers * _LAYER_BYTES, f"an MLP with {layers:,} layers (their modules "
                   "alone)", "use fewer layers")
    if torch.device(device or "cpu").type == "meta":
        return
    count = mlp_parameters(sizes[0], list(sizes[1:-1]), sizes[-1], bias=bias)
    itemsize = torch.empty((), dtype=dtype, device="meta").element_size()
    fix = ("use smaller widths, or build it with device='meta' for its infinite-width kernels "
           "alone (they do not depend on the widths)")
    require_memory(count * itemsize, f"an MLP with {count:,} parameters", fix,
                   "cpu" if device is None else device)
    largest = max(fan_in * fan_out for fan_in, fan_out in itertools.pairwise(sizes))
    require_memory(largest * FLOAT64_BYTES, f"drawing its largest weight matrix ({largest:,} "
                   "values) in float64", fix)

