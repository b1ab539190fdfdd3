"""Sequential, Residual and Sum: the ways widenet layers are combined.

``weight_std=None`` on a weighted layer is resolved here by one rule: sigma_w is the
edge-of-chaos std (at the layer's bias_std) of the nearest activation after the layer, in the
order the layers run (branches included); a layer with no activation after it (a readout) takes
the nearest one before it; with no activation at all sigma_w = 1. The rule looks at the whole
model, so a Sequential resolves again the layers of the Sequentials inside it (built, and
resolved, before it saw what runs around them).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from widenet.errors import WidenetError
from widenet.nn._weighted import Weighted, seeded_generator
from widenet.nn.elementwise import Activation
from widenet.validation import finite_real


class Residual(nn.Module):
    """y = x + alpha * branch(x)."""

    def __init__(self, branch: nn.Module, alpha: float = 1.0):
        super().__init__()
        self.branch = branch
        self.alpha = finite_real(alpha, "alpha")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.alpha * self.branch(x)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}"


class Sum(nn.Module):
    """y = sum_b weights[b] * branches[b](x) over parallel branches (weights default to 1)."""

    def __init__(self, branches: Sequence[nn.Module], weights: Sequence[float] | None = None):
        super().__init__()
        if not branches:
            raise WidenetError("Sum needs at least one branch")
        weights = [1.0] * len(branches) if weights is None else list(weights)
        if len(weights) != len(branches):
            raise WidenetError(f"Sum got {len(branches)} branches but {len(weights)} weights")
        self.branches = nn.ModuleList(branches)
        self.weights = tuple(finite_real(w, f"weights[{i}]") for i, w in enumerate(weights))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(w * branch(x) for w, branch in zip(self.weights, self.branches, strict=True))

    def extra_repr(self) -> str:
        return f"weights={self.weights}"


class Sequential(nn.Sequential):
    """torch's Sequential that resolves ``weight_std=None`` (module docstring) and can draw all
    its parameters from one seed: ``Sequential(Conv2d(1, 64, 3), Activation("relu"), ...,
    seed=0)``."""

    def __init__(self, *modules: nn.Module, seed: int | None = None,
                 generator: torch.Generator | None = None):
        super().__init__(*modules)
        resolve_weight_stds(self)
        if seed is not None or generator is not None:
            self.reset_parameters(seed=seed, generator=generator)

    def reset_parameters(self, *, seed: int | None = None,
                         generator: torch.Generator | None = None) -> None:
        """Draw every weighted layer's parameters afresh, in order, from one generator."""
        generator = seeded_generator(seed, generator)
        for module in self.modules():
            if isinstance(module, Weighted):
                module.reset_parameters(generator)


def _in_order(module: nn.Module) -> Iterator[nn.Module]:
    """Weighted layers and activations in the order they run (a Residual's branch after its
    skip, a Sum's branches one after another)."""
    if isinstance(module, Weighted | Activation):
        yield module
    for child in module.children():
        yield from _in_order(child)


def resolve_weight_stds(model: nn.Module) -> None:
    """Give every weighted layer of ``model`` whose std was not given its rule's sigma_w in
    ``model``."""
    order = list(_in_order(model))
    for index, layer in enumerate(order):
        if not isinstance(layer, Weighted) or layer.weight_std_given:
            continue
        after = [m for m in order[index + 1:] if isinstance(m, Activation)]
        before = [m for m in order[:index] if isinstance(m, Activation)]
        nearest = after[0] if after else (before[-1] if before else None)
        std = 1.0 if nearest is None else nearest.activation.edge_of_chaos(layer.bias_std)
        layer.set_weight_std(std, given=False)
