"""Normalized and smoothed margins of positively homogeneous nets (Lyu & Li 2020).

Formulas: docs/theory.md section 5.

A net is L-homogeneous when f(x; c theta) = c^L f(x; theta) for every c > 0, theta being all of
``model.parameters()``. For such a net and a data set (x_i, y_i), i = 1..n, with per-point margins
q_i (see :func:`pointwise_margins`) and rho = ||theta||_2:

    normalized margin          gamma   = min_i q_i / rho^L
    smoothed, exponential loss gamma_e = log(1 / Loss_e) / rho^L,  Loss_e = sum_i exp(-q_i)
    smoothed, logistic loss    gamma_l = l^-1(Loss_l) / rho^L,     Loss_l = sum_i log(1 + e^-q_i),
                               l^-1(s) = -log(exp(s) - 1)

The losses are *sums* over the data, not means, as in Lyu & Li: with the sum,
Loss >= l(min_i q_i) and so gamma_e, gamma_l <= gamma, and Loss <= n l(min_i q_i) gives
gamma_e >= gamma - log(n) / rho^L; gradient flow increases the smoothed margin monotonically once
the data are separated. With a mean, log(1 / Loss) would gain log(n) and could exceed gamma.
All margins are computed in float64, the losses in the log domain, so that large margins
(exp(-q_i) below the smallest float64) do not underflow.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from widenet.activations import AbsLinear
from widenet.diagnostics.features import call_model
from widenet.diagnostics.movement import rescued_norm
from widenet.errors import WidenetError
from widenet.models import MLP
from widenet.nn import Activation, Dense, Flatten
from widenet.validation import finite_real, positive_int

# Modules with a positively 1-homogeneous map in their own parameters (counted once each), and
# parameter-free modules that are positively 1-homogeneous in their input (counted zero times).
_LINEAR_TYPES = (nn.Linear, Dense)
_HOMOGENEOUS_MAPS = (nn.ReLU, nn.LeakyReLU, nn.Identity, nn.Flatten, Flatten)
_LOG_MAX_FLOAT = math.log(sys.float_info.max)


@dataclass(frozen=True)
class Margins:
    """The margins of an L-homogeneous net on a labelled data set (see the module docstring).

    normalized = gamma = min_i q_i / rho^L; smoothed_exponential = log(1 / sum_i exp(-q_i)) / rho^L;
    smoothed_logistic = l^-1(sum_i log(1 + exp(-q_i))) / rho^L with l^-1(s) = -log(exp(s) - 1);
    min_margin = min_i q_i (unnormalized); parameter_norm = rho = ||theta||_2; degree = L.
    """

    normalized: float
    smoothed_exponential: float
    smoothed_logistic: float
    min_margin: float
    parameter_norm: float
    degree: int


def homogeneity_degree(model: nn.Module) -> int:
    """The degree L with f(x; c theta) = c^L f(x; theta) for all c > 0, read off the architecture.

    Known cases: a bias-free :class:`~widenet.MLP` with an activation of the ``ab`` family
    (a s + b|s|: relu, abs, identity, leaky_relu), L = number of dense layers = depth + 1; and an
    ``nn.Sequential`` (nested ones included) of bias-free ``nn.Linear`` / widenet ``Dense`` layers
    and ReLU, LeakyReLU, Identity or Flatten modules (torch's or widenet's) or widenet
    ``Activation`` modules of the ``ab`` family, L = number of linear layers. Anything else
    raises a WidenetError saying why; pass ``degree=`` to the margin functions for other
    homogeneous nets (and check it with :func:`homogeneity_error`).
    """
    if isinstance(model, MLP):
        return _mlp_degree(model)
    if isinstance(model, nn.Sequential):
        degree = sum(_sequential_degrees(model, prefix=""))
        if degree == 0:
            raise WidenetError("the nn.Sequential has no linear layer, so it is not homogeneous "
                               "in its parameters; margins need at least one bias-free nn.Linear")
        return degree
    raise WidenetError(f"cannot infer the homogeneity degree of a {type(model).__name__}: only "
                       "bias-free widenet.MLP and nn.Sequential stacks are recognised; pass "
                       "degree=L if f(x; c theta) = c^L f(x; theta) (check it with "
                       "homogeneity_error(model, x, L))")


def _mlp_degree(net: MLP) -> int:
    if any(layer.bias is not None for layer in net.layers):
        raise WidenetError(f"this MLP has bias parameters (bias_std={net.bias_std:g}), so "
                           "f(c theta) != c^L f(theta) and its margin is not defined; build it "
                           "with bias_std=0.0 for a homogeneous net")
    if not isinstance(net.activation, AbsLinear):
        raise WidenetError(f"the activation {net.activation.name!r} is not positively "
                           "homogeneous, so the MLP is not homogeneous and its margin is not "
                           "defined; use one of the a s + b|s| family (relu, abs, identity, "
                           "leaky_relu, activations.ab(a, b)), or pass degree=L if your "
                           "activation is homogeneous after all")
    return len(net.layers)


def _sequential_degrees(module: nn.Sequential, prefix: str) -> Iterator[int]:
    """1 for each call of a bias-free linear layer in a (nested) Sequential; raises on anything
    else. A layer listed twice (shared weights) counts twice: named_children() would skip it."""
    for name, child in module._modules.items():
        path = f"{prefix}{name}"
        if isinstance(child, nn.Sequential):
            yield from _sequential_degrees(child, prefix=f"{path}.")
        elif isinstance(child, _LINEAR_TYPES):
            if child.bias is not None:
                raise WidenetError(f"layer {path!r} ({type(child).__name__}) has a bias, so the "
                                   "net is not homogeneous and its margin is not defined; build "
                                   "it with bias=False")
            yield 1
        elif isinstance(child, _HOMOGENEOUS_MAPS) or (isinstance(child, Activation) and
                                                      isinstance(child.activation, AbsLinear)):
            yield 0
        else:
            raise WidenetError(f"module {path!r} ({type(child).__name__}) is not known to be "
                               "positively homogeneous (recognised: bias-free Linear/Dense, "
                               "ReLU, LeakyReLU, Identity, Flatten, widenet Activation of the "
                               "a s + b|s| family); pass degree=L if the net "
                               "satisfies f(c theta) = c^L f(theta) (check it with "
                               "homogeneity_error)")


def homogeneity_error(model: nn.Module, x: torch.Tensor, degree: int, *,
                      scale: float = 2.0) -> float:
    """max |f(x; c theta) - c^L f(x; theta)| / max |c^L f(x; theta)| with c = ``scale``.

    theta is every parameter of ``model`` (buffers are left as they are). Round-off level (about
    1e-15 in float64, 1e-6 in float32) means the net is L-homogeneous on these inputs; 0 is
    returned when c^L f(x; theta) is identically zero and so is f(x; c theta).
    """
    degree = positive_int(degree, "degree")
    scale = finite_real(scale, "scale", minimum=0.0, strict=True)
    factor = _power(scale, degree)
    if factor is None or factor == 0.0:
        raise WidenetError(f"scale**degree = {scale:g}**{degree} is outside the floating-point "
                           "range; use a scale nearer 1 (the default is 2)")
    x = _inputs(x)
    with torch.no_grad():
        scaled = {name: scale * p for name, p in model.named_parameters()}
        reference = call_model(model, x).to(torch.float64) * factor
        moved = call_model(model, x, scaled).to(torch.float64)
    error = float((moved - reference).abs().max())
    size = float(reference.abs().max())
    if size == 0.0:
        return 0.0 if error == 0.0 else math.inf
    return error / size


def parameter_norm(model: nn.Module) -> float:
    """rho = ||theta||_2 = sqrt(sum over all parameters p of sum(p^2)), in float64, with no
    square to under- or overflow: the 2-norms of the parameters (one recomputed with its
    largest |entry| factored out where torch's sum of squares gave 0 or inf) combined by
    math.hypot."""
    parameters = [p.detach() for p in model.parameters()]
    norms = [torch.linalg.vector_norm(p, dtype=torch.float64) for p in parameters]
    return math.hypot(*(rescued_norm(float(norm), p)
                        for norm, p in zip(norms, parameters, strict=True)))


def pointwise_margins(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """q_i, float64, shape (n,): the margin of each point.

    Single output (outputs of shape (n,) or (n, 1)), labels y_i in {-1, +1}: q_i = y_i f(x_i).
    k >= 2 outputs (shape (n, k)), integer class labels y_i in [0, k):
    q_i = f_{y_i}(x_i) - max_{j != y_i} f_j(x_i).
    """
    if not isinstance(outputs, torch.Tensor) or outputs.ndim not in (1, 2) \
            or outputs.shape[0] == 0:
        shape = tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else type(outputs)
        raise WidenetError(f"outputs must be a non-empty tensor of shape (n,) or (n, k), got "
                           f"{shape}")
    if not bool(torch.isfinite(outputs).all()):
        raise WidenetError("the model's outputs contain NaN or inf; the margin is undefined "
                           "(did training diverge?)")
    n = outputs.shape[0]
    if not isinstance(labels, torch.Tensor) or tuple(labels.shape) != (n,):
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels)
        raise WidenetError(f"labels must be a tensor of shape ({n},), one per output row, got "
                           f"{shape}; flatten column labels with labels.view(-1)")
    outputs = outputs.to(torch.float64)
    labels = labels.to(outputs.device)
    if outputs.ndim == 1 or outputs.shape[1] == 1:
        return _binary_margins(outputs.reshape(n), labels)
    return _multiclass_margins(outputs, labels)


def _binary_margins(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if labels.is_complex() or not bool(((labels == 1) | (labels == -1)).all()):
        raise WidenetError("with a single output the labels must be -1 or +1; convert 0/1 "
                           "labels with 2 * y - 1, or give k >= 2 outputs for class indices")
    return labels.to(torch.float64) * outputs


def _multiclass_margins(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    k = outputs.shape[1]
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise WidenetError(f"with {k} outputs the labels must be integer class indices, got "
                           f"dtype {labels.dtype}; convert them with labels.long()")
    if bool(((labels < 0) | (labels >= k)).any()):
        raise WidenetError(f"with {k} outputs the labels must be class indices in [0, {k}), "
                           f"got values from {int(labels.min())} to {int(labels.max())}")
    index = labels.long().unsqueeze(1)
    correct = outputs.gather(1, index).squeeze(1)
    others = outputs.scatter(1, index, -math.inf)
    return correct - others.max(dim=1).values


def exponential_smoothed_min(margins: torch.Tensor) -> float:
    """log(1 / sum_i exp(-q_i)) = -logsumexp(-q), the exponential loss's smoothed min of q.

    Lies in [min_i q_i - log n, min_i q_i]. Divide by rho^L for the smoothed margin.
    """
    return -float(torch.logsumexp(-_margin_vector(margins), dim=0))


def logistic_smoothed_min(margins: torch.Tensor) -> float:
    """l^-1(sum_i log(1 + exp(-q_i))) with l^-1(s) = -log(exp(s) - 1): the logistic loss's
    smoothed min of q, at most min_i q_i. Divide by rho^L for the smoothed margin.

    Computed in the log domain: log log(1 + e^-q) = -q + log(log1p(u) / u) with u = e^-q for
    q >= 0 (no underflow for huge q), log Loss by logsumexp, then
    l^-1(s) = -s - log(-expm1(-s)), or -log s - s/2 when s < 1e-13 (error O(s^2)).
    """
    q = _margin_vector(margins)
    positive, negative = q.clamp_min(0.0), q.clamp_max(0.0)
    u = torch.exp(-positive)
    ratio = torch.where(u > 0, torch.log1p(u) / u, torch.ones_like(u))
    log_terms = torch.where(q >= 0, torch.log(ratio) - positive,
                            torch.log(torch.log1p(torch.exp(negative)) - negative))
    log_loss = float(torch.logsumexp(log_terms, dim=0))
    if log_loss < math.log(1e-13):
        return -log_loss - math.exp(log_loss) / 2
    loss = math.exp(log_loss) if log_loss < _LOG_MAX_FLOAT else math.inf  # l^-1(inf) = -inf
    return -loss - math.log(-math.expm1(-loss))


def _margin_vector(margins: torch.Tensor) -> torch.Tensor:
    if not isinstance(margins, torch.Tensor) or margins.ndim != 1 or margins.numel() == 0:
        raise WidenetError("margins must be a non-empty 1-D tensor q of shape (n,); compute it "
                           "with pointwise_margins(outputs, labels)")
    if not bool(torch.isfinite(margins).all()):
        raise WidenetError("margins contain NaN or inf; the smoothed margin is undefined")
    return margins.to(torch.float64)


def margins_from_outputs(outputs: torch.Tensor, labels: torch.Tensor, *,
                         parameter_norm: float, degree: int) -> Margins:
    """:class:`Margins` from a net's outputs on the data, rho = ``parameter_norm``, L = ``degree``.

    gamma = min_i q_i / rho^L, gamma_e = log(1 / sum_i exp(-q_i)) / rho^L,
    gamma_l = l^-1(sum_i log(1 + exp(-q_i))) / rho^L, with q_i from :func:`pointwise_margins`.
    """
    degree = positive_int(degree, "degree")
    rho = finite_real(parameter_norm, "parameter_norm", minimum=0.0, strict=True)
    q = pointwise_margins(outputs, labels)
    min_margin = float(q.min())

    def normalized(value: float, what: str) -> float:
        """value / rho^L, from logarithms: rho^L itself may over- or underflow (to 0 when
        the quotient does)."""
        if value == 0.0:
            return 0.0
        log_quotient = math.log(abs(value)) - degree * math.log(rho)  # inf for value = -inf
        if log_quotient > _LOG_MAX_FLOAT:
            raise WidenetError(f"the {what} margin {value:g} / ||theta||^{degree} with "
                               f"||theta|| = {rho:g} is beyond the floating-point range: the "
                               f"outputs are far too large for a {degree}-homogeneous net of "
                               "that parameter norm (is the degree right?), or the parameters "
                               "are nearly all zero; rescale the parameters (the normalized "
                               "margin does not change)")
        return math.copysign(math.exp(log_quotient), value)

    return Margins(normalized=normalized(min_margin, "normalized"),
                   smoothed_exponential=normalized(exponential_smoothed_min(q),
                                                   "exponential smoothed"),
                   smoothed_logistic=normalized(logistic_smoothed_min(q), "logistic smoothed"),
                   min_margin=min_margin, parameter_norm=rho, degree=degree)


def margins_of(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, *,
            degree: int | None = None) -> Margins:
    """Normalized and smoothed margins of ``model`` on (x, labels) (see :class:`Margins`).

    gamma = min_i q_i / ||theta||^L and the smoothed margins of the exponential and logistic
    losses (sums over the data). L = ``degree``, inferred by :func:`homogeneity_degree` when
    None. The model is evaluated as it is (train/eval mode untouched) without gradients;
    labels are +-1 for a single output, class indices for k >= 2 outputs.
    """
    degree = homogeneity_degree(model) if degree is None else positive_int(degree, "degree")
    x = _inputs(x)
    rho = parameter_norm(model)
    if rho == 0.0:
        raise WidenetError("all parameters of the model are zero, so ||theta||^L = 0 and the "
                           "normalized margin is undefined")
    with torch.no_grad():
        outputs = call_model(model, x)
    return margins_from_outputs(outputs, labels, parameter_norm=rho, degree=degree)


def _inputs(x: object) -> torch.Tensor:
    """x if it is a tensor, finite when floating (a model may take integer indices)."""
    if not isinstance(x, torch.Tensor):
        raise WidenetError(f"x must be a torch.Tensor of inputs, got {type(x).__name__}")
    if (x.is_floating_point() or x.is_complex()) and not bool(torch.isfinite(x).all()):
        raise WidenetError("x contains NaN or inf values; clean or drop those points first")
    return x


def _power(base: float, exponent: int) -> float | None:
    """base**exponent for base > 0, or None where it overflows."""
    try:
        return base**exponent
    except OverflowError:
        return None
