"""Parametrizations of an MLP's dense layers (docs/theory.md section 1), expressed as data.

A parametrization maps an architecture (d, n_1..n_L, k) and the stds (sigma_w, sigma_b) to one
:class:`DenseScaling` per dense layer: for its weight and its bias, the std of the stored
(trainable) variable at initialization, the constant multiplier the forward pass applies to it,
and the factor by which its learning rate is scaled (separately for SGD and Adam). The MLP builds
its layers from these records and the optimizer reads the learning-rate factors from the same
records, so the two can never disagree.

All of them give the same forward function at initialization up to where the weight stds differ
(muP's readout, mean field's 1/m): what differs is which variables gradients are taken with
respect to, and so the scale of the empirical NTK and of each update.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from widenet.errors import WidenetError
from widenet.validation import positive_int


@dataclass(frozen=True)
class TensorScaling:
    """A trainable tensor w, used as multiplier * w, drawn w ~ N(0, init_std^2) entrywise, and
    trained with learning rate lr * sgd_lr_scale (SGD) or lr * adam_lr_scale (Adam)."""

    init_std: float
    multiplier: float
    sgd_lr_scale: float = 1.0
    adam_lr_scale: float = 1.0

    def lr_scale(self, optimizer: str) -> float:
        """The learning-rate factor for an optimizer family, "sgd" or "adam" (any other name
        raises: "Adam" or "adamw" got SGD's factors, which muP's differ from)."""
        if optimizer not in ("sgd", "adam"):
            raise WidenetError(f"optimizer family must be 'sgd' or 'adam', got {optimizer!r}")
        return self.adam_lr_scale if optimizer == "adam" else self.sgd_lr_scale


@dataclass(frozen=True)
class DenseScaling:
    """z = weight.multiplier * W h + bias.multiplier * b for one dense layer."""

    weight: TensorScaling
    bias: TensorScaling


class Parametrization:
    """A named rule giving every dense layer of an MLP its :class:`DenseScaling`.

    ``finite_ntk`` says whether the empirical NTK has a finite infinite-width limit;
    ``kernel_limit`` whether the net's infinite-width limit is the NNGP/NTK recursion of
    docs/theory.md sections 3 and 7 (not so for mean-field or muP nets, whose features move).
    """

    name: str
    finite_ntk: bool
    kernel_limit: bool = True

    def scalings(self, sizes: Sequence[int], weight_std: float, bias_std: float
                 ) -> list[DenseScaling]:
        """One DenseScaling per layer of the MLP with layer sizes (d, n_1, ..., n_L, k)."""
        return [self.dense(fan_in, weight_std, bias_std) for fan_in in sizes[:-1]]

    def dense(self, fan_in: int, weight_std: float, bias_std: float) -> DenseScaling:
        """The scaling of one layer, for rules where it depends only on the fan-in."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"Parametrization({self.name})"


class NTKParametrization(Parametrization):
    """W, b ~ N(0, 1); multipliers sigma_w / sqrt(fan_in) and sigma_b; learning rate unscaled."""

    name = "ntk"
    finite_ntk = True

    def dense(self, fan_in: int, weight_std: float, bias_std: float) -> DenseScaling:
        return DenseScaling(TensorScaling(1.0, weight_std / math.sqrt(fan_in)),
                            TensorScaling(1.0, bias_std))


class StandardParametrization(Parametrization):
    """W ~ N(0, sigma_w^2 / fan_in), b ~ N(0, sigma_b^2); multipliers 1; learning rate unscaled
    (one global learning rate, as in practice: the optimum then drifts with width)."""

    name = "standard"
    finite_ntk = False

    def dense(self, fan_in: int, weight_std: float, bias_std: float) -> DenseScaling:
        return DenseScaling(TensorScaling(weight_std / math.sqrt(fan_in), 1.0),
                            TensorScaling(bias_std, 1.0))


class MeanFieldParametrization(Parametrization):
    """Two-layer nets f(x) = (sigma_w / m) sum_i c_i phi(a_i . x sigma_w / sqrt(d) + sigma_b b_i).

    All variables N(0, 1); the readout multiplier is sigma_w / m instead of NTK's
    sigma_w / sqrt(m), and the learning rate of every particle variable (a_i, b_i, c_i) is
    scaled by m / base_width (abc exponents a = (0, 1), b = 0, c = -1; base_width = 1 gives the
    literal eta * m). The output bias is not a particle: its gradient is O(1), so its rate stays
    eta. The width-scaling of the learning rate is an SGD rule: with Adam the rates are left
    unscaled.
    """

    name = "mean-field"
    finite_ntk = False
    kernel_limit = False

    def __init__(self, base_width: int = 1):
        self.base_width = positive_int(base_width, "base_width")

    def scalings(self, sizes: Sequence[int], weight_std: float, bias_std: float
                 ) -> list[DenseScaling]:
        if len(sizes) != 3:
            raise WidenetError(f"the mean-field parametrization is for two-layer nets (one "
                               f"hidden layer), got {len(sizes) - 2} hidden layers")
        d, m, _ = sizes
        lr = m / self.base_width
        return [DenseScaling(TensorScaling(1.0, weight_std / math.sqrt(d), lr, 1.0),
                             TensorScaling(1.0, bias_std, lr, 1.0)),
                DenseScaling(TensorScaling(1.0, weight_std / m, lr, 1.0),
                             TensorScaling(1.0, bias_std, 1.0, 1.0))]


class MuP(Parametrization):
    """Maximal-update parametrization in the practical form of Tensor Programs V (Table 3),
    relative to base hidden widths ``base_hidden`` (one width for all layers, or one per layer).

    With r = n / n_base the width ratio of a hidden dimension (1 for d and k):
    - input weights and all biases: init as SP; SGD lr * r_out, Adam lr * 1;
    - hidden weights: init as SP; SGD lr * 1, Adam lr / r_in;
    - output weights: init std sigma_w / sqrt(fan_in) / sqrt(r_in) (variance ~ 1/fan_in^2);
      SGD and Adam lr / r_in.
    At base widths every ratio is 1 and the net, its init and its updates equal SP's.
    """

    name = "mup"
    finite_ntk = False
    kernel_limit = False

    def __init__(self, base_hidden: int | Sequence[int] | np.ndarray):
        listed = (isinstance(base_hidden, Sequence) and not isinstance(base_hidden, str)) or (
            isinstance(base_hidden, np.ndarray) and base_hidden.ndim == 1)
        self.base_hidden = ([positive_int(b, f"base_hidden[{i}]")
                             for i, b in enumerate(base_hidden)] if listed
                            else positive_int(base_hidden, "base_hidden"))

    def _ratios(self, hidden: Sequence[int]) -> list[float]:
        base = ([self.base_hidden] * len(hidden) if isinstance(self.base_hidden, int)
                else self.base_hidden)
        if len(base) != len(hidden):
            raise WidenetError(f"muP base_hidden has {len(base)} widths but the net has "
                               f"{len(hidden)} hidden layers; give one base width per layer")
        return [n / b for n, b in zip(hidden, base, strict=True)]

    def scalings(self, sizes: Sequence[int], weight_std: float, bias_std: float
                 ) -> list[DenseScaling]:
        ratios = [1.0, *self._ratios(sizes[1:-1]), 1.0]
        last = len(sizes) - 2
        layers = []
        for index, fan_in in enumerate(sizes[:-1]):
            r_in, r_out = ratios[index], ratios[index + 1]
            std = weight_std / math.sqrt(fan_in)
            bias = TensorScaling(bias_std, 1.0, r_out, 1.0)
            if index == last:
                weight = TensorScaling(std / math.sqrt(r_in), 1.0, 1.0 / r_in, 1.0 / r_in)
            elif index == 0:
                weight = TensorScaling(std, 1.0, r_out, 1.0)
            else:
                weight = TensorScaling(std, 1.0, 1.0, 1.0 / r_in)
            layers.append(DenseScaling(weight, bias))
        return layers


NTK = NTKParametrization()
STANDARD = StandardParametrization()

_NAMED: dict[str, type[Parametrization] | Parametrization] = {
    "ntk": NTK, "standard": STANDARD, "mean-field": MeanFieldParametrization}


def get_parametrization(spec: str | Parametrization) -> Parametrization:
    """Resolve a parametrization from a name ("ntk", "standard", "mean-field") or an
    instance (e.g. ``MuP(base_hidden=64)``, ``MeanFieldParametrization(base_width=64)``)."""
    if isinstance(spec, Parametrization):
        return spec
    if spec == "mup":
        raise WidenetError("muP is defined relative to base widths: pass "
                           "parametrization=widenet.parametrizations.MuP(base_hidden=64) (the "
                           "widths at which it equals the standard parametrization)")
    if isinstance(spec, str) and spec in _NAMED:
        named = _NAMED[spec]
        return named() if isinstance(named, type) else named
    raise WidenetError(f"unknown parametrization {spec!r}; choose one of {', '.join(_NAMED)} or "
                       "pass an instance such as widenet.parametrizations.MuP(base_hidden=64)")
