"""Hidden features of a net and the soft ranks of a feature matrix (docs/theory.md section 5).

For a feature matrix H (n points x m features) with singular values s_1 >= ... >= s_r >= 0:

    participation ratio       PR = (sum_i s_i^2)^2 / sum_i s_i^4
    stable rank               SR = sum_i s_i^2 / max_i s_i^2
    entropy effective rank    ER = exp(-sum_i p_i log p_i),  p_i = s_i / sum_j s_j

Each lies in [1, rank H] for H != 0, equals 1 for a rank-one matrix and n for c I_n, and
SR <= PR. The zero matrix has rank 0 and all three are defined to be 0.0 for it (a layer whose
features all died), never NaN. H is used as given: no centering (subtract the column means
first for the ranks of centered features). Singular values are computed in float64 and divided
by the largest before the powers, so the ratios neither overflow nor underflow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from widenet.errors import WidenetError
from widenet.kernels._functional import first_line
from widenet.models import MLP
from widenet.validation import data_matrix


@dataclass(frozen=True)
class SoftRanks:
    """The three soft ranks of one feature matrix (formulas in the module docstring)."""

    participation_ratio: float
    stable_rank: float
    entropy_effective_rank: float


def _normalized_singular_values(features: torch.Tensor) -> torch.Tensor | None:
    """s / max(s) in float64 for a finite (n, m) matrix H, or None when H = 0."""
    h = data_matrix(features, "features").to(torch.float64)
    s = torch.linalg.svdvals(h)
    top = s.max()
    return None if float(top) == 0.0 else s / top


def _participation_ratio(s: torch.Tensor) -> float:
    squares = s.square()
    return float(squares.sum() ** 2 / squares.square().sum())


def _stable_rank(s: torch.Tensor) -> float:
    return float(s.square().sum())  # s is normalized: max s_i = 1


def _entropy_effective_rank(s: torch.Tensor) -> float:
    p = s / s.sum()
    return math.exp(-float(torch.special.xlogy(p, p).sum()))


def participation_ratio(features: torch.Tensor) -> float:
    """PR = (sum_i s_i^2)^2 / sum_i s_i^4 over the singular values of H (n, m); 0.0 for H = 0."""
    s = _normalized_singular_values(features)
    return 0.0 if s is None else _participation_ratio(s)


def stable_rank(features: torch.Tensor) -> float:
    """SR = sum_i s_i^2 / max_i s_i^2 = ||H||_F^2 / ||H||_2^2 for H (n, m); 0.0 for H = 0."""
    s = _normalized_singular_values(features)
    return 0.0 if s is None else _stable_rank(s)


def entropy_effective_rank(features: torch.Tensor) -> float:
    """ER = exp(-sum_i p_i log p_i) with p_i = s_i / sum_j s_j (0 log 0 = 0); 0.0 for H = 0."""
    s = _normalized_singular_values(features)
    return 0.0 if s is None else _entropy_effective_rank(s)


def soft_ranks(features: torch.Tensor) -> SoftRanks:
    """All three soft ranks of H (n, m) from one SVD; each is 0.0 for H = 0."""
    s = _normalized_singular_values(features)
    if s is None:
        return SoftRanks(0.0, 0.0, 0.0)
    return SoftRanks(participation_ratio=_participation_ratio(s), stable_rank=_stable_rank(s),
                     entropy_effective_rank=_entropy_effective_rank(s))


def module_outputs(model: nn.Module, x: torch.Tensor,
                   modules: Sequence[nn.Module]) -> list[torch.Tensor]:
    """The output of each of ``modules`` (submodules of ``model``) during one forward of x.

    Captured with forward hooks, without gradients, and detached, in eval mode (dropout off,
    batch norm reading its running statistics and not updating them); every module's mode is
    restored afterwards, so measuring leaves the model as it was. Each module must be called
    exactly once by the forward pass and return a tensor. Flatten conv features with
    ``h.flatten(1)`` before taking soft ranks.
    """
    members = {id(m) for m in model.modules()}
    for i, module in enumerate(modules):
        if not isinstance(module, nn.Module) or id(module) not in members:
            raise WidenetError(f"modules[{i}] ({type(module).__name__}) is not a submodule of "
                               "the model; pass modules taken from the model itself, e.g. "
                               "model.layers[0]")
    captured: list[list[object]] = [[] for _ in modules]
    handles = [module.register_forward_hook(
        lambda _module, _inputs, output, store=store: store.append(output))
        for module, store in zip(modules, captured, strict=True)]
    modes = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            call_model(model, x)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
    for i, (module, outputs) in enumerate(zip(modules, captured, strict=True)):
        if len(outputs) != 1 or not isinstance(outputs[0], torch.Tensor):
            what = "returned a non-tensor" if len(outputs) == 1 else \
                f"was called {len(outputs)} times"
            raise WidenetError(f"modules[{i}] ({type(module).__name__}) {what} in the forward "
                               "pass; hook a module that is called once and returns a tensor")
    return [outputs[0].detach() for outputs in captured]


def call_model(model: nn.Module, x: torch.Tensor,
               parameters: dict[str, torch.Tensor] | None = None) -> object:
    """model(x), with ``parameters`` in place of the model's own when given
    (torch.func.functional_call); a model that fails on x (points of the wrong shape or dtype)
    raises a WidenetError saying so (running out of memory stays an OutOfMemoryError)."""
    try:
        return model(x) if parameters is None else functional_call(model, parameters, (x,))
    except torch.OutOfMemoryError:
        raise
    except (RuntimeError, TypeError) as error:
        raise WidenetError(f"model(x) failed: {first_line(error)}; pass the points the model "
                           "takes (their shape, dtype and device)") from error


def hidden_features(net: MLP, x: torch.Tensor) -> list[torch.Tensor]:
    """[h_1, ..., h_L] of a widenet MLP on x: h_l = phi(z_l), z_l the output of dense layer l.

    Each h_l has shape (n, n_l); the output layer's z_{L+1} is not included (a net without
    hidden layers gives []).
    """
    if not isinstance(net, MLP):
        raise WidenetError(f"hidden_features needs a widenet.MLP, got {type(net).__name__}; for "
                           "other models use module_outputs(model, x, modules)")
    data_matrix(x, "x", features=net.in_features)
    with torch.no_grad():
        return [net.activation(z) for z in module_outputs(net, x, list(net.layers[:-1]))]
