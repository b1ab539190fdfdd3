"""The common part of widenet's weighted layers: stds, parametrization, multipliers, draws.

A weighted layer with fan-in F computes z = m_w * (W y) + m_b * b on stored N(0, s_w^2) and
N(0, s_b^2) variables (docs/theory.md sections 1 and 7): in the NTK parametrization s = 1,
m_w = sigma_w / sqrt(F), m_b = sigma_b; in the standard one m = 1, s_w = sigma_w / sqrt(F),
s_b = sigma_b. The infinite-width limit needs only sigma_w, sigma_b and whether the
parametrization's NTK is finite, which the layer carries; it never reads the weights, so a layer
built on ``device="meta"`` (no storage) has a limit as well.
"""

from __future__ import annotations

import torch
from torch import nn

from widenet.devices import parameter_device
from widenet.errors import WidenetError
from widenet.parametrizations import DenseScaling, Parametrization, get_parametrization
from widenet.seeds import check_seed
from widenet.validation import finite_real, floating_dtype


class Weighted(nn.Module):
    """Base of Dense and the convolutions: ``weight`` and optional ``bias`` with multipliers.

    ``weight_std=None`` is resolved later by :class:`widenet.nn.Sequential` (the edge-of-chaos
    std of the activation that follows the layer); a layer used on its own resolves it to 1.
    ``weight_std_given`` says whether sigma_w was given (to the constructor or to
    ``set_weight_std``) rather than resolved by that rule. ``bias_std=0`` means no bias parameter
    at all.
    """

    weight: nn.Parameter
    bias: nn.Parameter | None

    def _setup(self, weight_shape: tuple[int, ...], bias_size: int, fan_in: int,
               weight_std: float | None, bias_std: float,
               parametrization: str | Parametrization, scaling: DenseScaling | None,
               device: torch.device | str | None, dtype: torch.dtype | None) -> None:
        self.fan_in = fan_in
        self.bias_std = finite_real(bias_std, "bias_std", minimum=0.0)
        self.parametrization = get_parametrization(parametrization)
        if scaling is None and self.parametrization.name not in ("ntk", "standard"):
            raise WidenetError(f"widenet.nn layers take parametrization 'ntk' or 'standard', "
                               f"not {self.parametrization.name!r} (whose scaling depends on "
                               "the whole net; use widenet.MLP for it)")
        factory = {"device": parameter_device(device),
                   "dtype": None if dtype is None else floating_dtype(dtype)}
        self.weight = nn.Parameter(torch.empty(weight_shape, **factory))
        self.bias = (nn.Parameter(torch.empty(bias_size, **factory)) if self.bias_std > 0
                     else None)
        if scaling is not None:  # a whole-net rule (widenet.MLP) that also draws the weights
            self.weight_std = finite_real(weight_std, "weight_std", minimum=0.0, strict=True)
            self.weight_std_given = True
            self._use_scaling(scaling)
            return
        self.set_weight_std(1.0 if weight_std is None else weight_std,
                            given=weight_std is not None)

    def set_weight_std(self, weight_std: float, *, given: bool = True) -> None:
        """Set sigma_w and recompute the multipliers; ``given=False`` marks sigma_w as the value
        of the weight_std=None rule, which a Sequential around this one may replace. The first
        call draws the parameters; later ones keep the weight's draw, rescaled to the new
        initial std (a fresh draw's distribution, and a seeded draw stays that seed's)."""
        self.weight_std = finite_real(weight_std, "weight_std", minimum=0.0, strict=True)
        self.weight_std_given = given
        drawn = getattr(self, "_init_stds", None)
        self._use_scaling(self.parametrization.dense(self.fan_in, self.weight_std,
                                                     self.bias_std))
        if drawn is None:
            self.reset_parameters()
        elif self._init_stds[0] != drawn[0]:
            _rescale_draw_(self.weight, drawn[0], self._init_stds[0])

    def _use_scaling(self, scaling: DenseScaling) -> None:
        self.weight_multiplier = scaling.weight.multiplier
        self.bias_multiplier = scaling.bias.multiplier
        self._init_stds = (scaling.weight.init_std, scaling.bias.init_std)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw the parameters from their initial distribution (nothing to draw on meta)."""
        for parameter, std in zip((self.weight, self.bias), self._init_stds, strict=True):
            if parameter is not None:
                draw_normal_(parameter, std, generator)

    def _scale(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.weight_multiplier if self.weight_multiplier != 1.0 else z

    def _bias_shaped(self, z: torch.Tensor, trailing: int) -> torch.Tensor:
        """z + m_b * b, with b broadcast over ``trailing`` spatial dimensions."""
        if self.bias is None:
            return z
        return z + self.bias_multiplier * self.bias.view(-1, *([1] * trailing))

    def limit_repr(self) -> str:
        return (f"weight_std={self.weight_std:.4g}, bias_std={self.bias_std:.4g}, "
                f"parametrization={self.parametrization.name}")


def seeded_generator(seed: int | None, generator: torch.Generator | None
                     ) -> torch.Generator | None:
    """The generator initial draws come from: a fresh one seeded with ``seed``, the given
    ``generator``, or None (torch's global generator); giving both is a mistake."""
    if seed is not None and generator is not None:
        raise WidenetError("give either seed or generator, not both")
    return generator if seed is None \
        else torch.Generator().manual_seed(check_seed(seed))


@torch.no_grad()
def _rescale_draw_(parameter: torch.Tensor, old_std: float, new_std: float) -> None:
    """Turn ``parameter``'s N(0, old_std^2) draw into an N(0, new_std^2) one: rescaled in
    float64, divided by old_std first (new_std / old_std may overflow), or drawn afresh from
    torch's global generator when old_std is below the dtype's smallest normal number (the draw
    underflowed into subnormals and zeros: it has nothing left to rescale)."""
    if old_std < torch.finfo(parameter.dtype).tiny:
        draw_normal_(parameter, new_std, None)
    else:
        parameter.copy_(parameter.double().div_(old_std).mul_(new_std))


@torch.no_grad()
def draw_normal_(parameter: torch.Tensor, std: float, generator: torch.Generator | None) -> None:
    """Fill ``parameter`` with N(0, std^2) draws made in float64 on the CPU, so that a seed
    gives the same network (up to rounding) in every dtype and on every device. A parameter on
    the meta device has no storage and is left as it is."""
    if parameter.is_meta:
        return
    draw = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
    parameter.copy_(draw.mul_(std))
