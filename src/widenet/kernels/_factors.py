"""Jacobians in factored form and the Gram contractions that turn them into kernel blocks.

A ``Factor`` holds one trainable parameter's Jacobian for a chunk of c points and kc outputs
without materializing it when it factorizes (see ``_layers``):

    <J(x_i)_a, J(x'_j)_b> = scale * sum_{t,s} (A_it . A'_js) (G_ait . G'_bjs),

with A of shape (c, T, p) and G of shape (kc, c, T, q). A plain Jacobian is the special case
A = 1, T = 1, G = rows of J. Factors of one layer that share G (a dense layer's weight and bias)
share the G-Gram, so a biased layer costs one Gram product, not two.

Output modes and block layouts: "trace" sums over a = b, shape (c1, c2); "diagonal" keeps
a = b, shape (c1, c2, kc); "full" keeps all pairs, shape (c1, c2, kc1, kc2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

TOTAL = ""  # key of the summed block; parameter names are never empty
MODES = ("trace", "diagonal", "full")
_POSITIONS = {"trace": (1, 3), "diagonal": (2, 4), "full": (2, 5)}
_MEMORY_ORDER = {"trace": ((1, 2, 0, 3), (2, 0, 1, 3)), "diagonal": ((0, 1, 2, 3), (0, 1, 2, 3)),
                 "full": ((1, 0, 2, 3), (1, 0, 2, 3))}


def output_pairs(mode: str, k: int) -> int:
    """Output pairs (a, b) a block holds per pair of points: k^2 for "full", k otherwise."""
    return k * k if mode == "full" else k


@dataclass(frozen=True)
class Factor:
    """One parameter's Jacobian on c points, kc outputs: G (kc, c, T, q), A (c, T, p) or None.

    None stands for A = 1 with T = 1, so that the block is scale * <G_ai, G'_bj>.
    """

    name: str
    scale: float
    grads: torch.Tensor
    inputs: torch.Tensor | None


class FactorMethod:
    """Selection and contraction for the methods whose features are lists of factors."""

    mode: str

    def select(self, factors: list[Factor], points: slice) -> list[Factor]:
        return select(factors, points)

    def contract(self, left: list[Factor], right: list[Factor],
                 per_layer: bool) -> dict[str, torch.Tensor]:
        """The kernel block between two chunks' factors (see ``contract``)."""
        return contract(left, right, self.mode, per_layer)


def select(factors: Sequence[Factor], points: slice) -> list[Factor]:
    """The factors of a sub-range of the points (views)."""
    return _map(factors, lambda g: g[:, points], lambda a: a[points])


def arrange(factors: Sequence[Factor], mode: str) -> list[Factor]:
    """The factors with G stored in the memory order that the mode's Gram product reads.

    G keeps its (kc, c, T, q) shape, but its memory is ordered (c, kc, T, q) for "full" and
    (c, T, kc, q) for "trace", so that selecting points and flattening for the matrix product
    are views: copied once here instead of at every block.
    """
    order, inverse = _MEMORY_ORDER[mode]
    return _map(factors, lambda g: g.permute(order).contiguous().permute(inverse),
                lambda a: a.contiguous())


def _map(factors: Sequence[Factor], on_grads, on_inputs) -> list[Factor]:
    """Apply functions to every G and A, keeping a G shared by several factors shared."""
    done: dict[int, torch.Tensor] = {}
    mapped = []
    for f in factors:
        if id(f.grads) not in done:
            done[id(f.grads)] = on_grads(f.grads)
        inputs = None if f.inputs is None else on_inputs(f.inputs)
        mapped.append(Factor(f.name, f.scale, done[id(f.grads)], inputs))
    return mapped


def contract(left: Sequence[Factor], right: Sequence[Factor], mode: str,
             per_layer: bool) -> dict[str, torch.Tensor]:
    """Kernel blocks between two chunks: {name: block} per parameter, or {TOTAL: their sum}.

    ``left`` and ``right`` list the same parameters in the same order.
    """
    blocks: dict[str, torch.Tensor] = {}
    for group in _groups(left, right):
        gg = _grad_gram(group[0][0].grads, group[0][1].grads, mode)
        if per_layer:
            for a, b in group:
                blocks[a.name] = _weighted(gg, _input_weight(a, b), mode)
        else:
            blocks[TOTAL] = _weighted(gg, _summed_weight(group), mode, blocks.get(TOTAL))
    return {name: _final(block, mode) for name, block in blocks.items()}


def _summed_weight(group: list[tuple[Factor, Factor]]) -> torch.Tensor | float:
    """sum over a group's factors of scale * (A_it . A'_js), the A = 1 terms (biases) added
    into the first A-Gram's product instead of in passes of their own."""
    constant = float(sum(a.scale for a, _ in group if a.inputs is None))
    weight: torch.Tensor | float = constant
    for a, b in group:
        if a.inputs is not None:
            weight = (weight.add_(_input_weight(a, b)) if isinstance(weight, torch.Tensor)
                      else _input_weight(a, b, plus=constant))
    return weight


def _groups(left: Sequence[Factor], right: Sequence[Factor]) -> list[list[tuple[Factor, Factor]]]:
    """Consecutive (left, right) pairs sharing their G tensors."""
    groups: list[list[tuple[Factor, Factor]]] = []
    for a, b in zip(left, right, strict=True):
        if groups and groups[-1][0][0].grads is a.grads:
            groups[-1].append((a, b))
        else:
            groups.append([(a, b)])
    return groups


def _grad_gram(g1: torch.Tensor, g2: torch.Tensor, mode: str) -> torch.Tensor:
    """<G_ait, G'_bjs> in the mode's layout with positions kept.

    trace: sum_a, (c1, T1, c2, T2); diagonal: a = b, (kc, c1, T1, c2, T2);
    full: (c1, kc1, T1, c2, kc2, T2). One matrix product each (batched over a for diagonal).
    """
    kc1, c1, t1, q = g1.shape
    kc2, c2, t2, _ = g2.shape
    if mode == "trace":
        left = g1.permute(1, 2, 0, 3).reshape(c1 * t1, kc1 * q)
        right = g2.permute(1, 2, 0, 3).reshape(c2 * t2, kc2 * q)
        return (left @ right.T).view(c1, t1, c2, t2)
    if mode == "diagonal":
        left = g1.reshape(kc1, c1 * t1, q)
        right = g2.reshape(kc2, c2 * t2, q)
        return torch.bmm(left, right.transpose(1, 2)).view(kc1, c1, t1, c2, t2)
    left = g1.permute(1, 0, 2, 3).reshape(c1 * kc1 * t1, q)
    right = g2.permute(1, 0, 2, 3).reshape(c2 * kc2 * t2, q)
    return (left @ right.T).view(c1, kc1, t1, c2, kc2, t2)


def _input_weight(a: Factor, b: Factor, plus: float = 0.0) -> torch.Tensor | float:
    """plus + scale * (A_it . A'_js), shape (c1, T1, c2, T2), or plus + scale when A = 1 (one
    matrix product, the scale and the constant applied by it)."""
    if a.inputs is None:
        return plus + a.scale
    c1, t1, p = a.inputs.shape
    c2, t2, _ = b.inputs.shape
    left, right = a.inputs.reshape(c1 * t1, p), b.inputs.reshape(c2 * t2, p).T
    if plus == 0.0 and a.scale == 1.0:
        gram = left @ right
    else:
        gram = torch.addmm(left.new_tensor(plus), left, right, beta=1.0 if plus else 0.0,
                           alpha=a.scale)
    return gram.view(c1, t1, c2, t2)


def _weighted(gg: torch.Tensor, weight: torch.Tensor | float, mode: str,
              out: torch.Tensor | None = None) -> torch.Tensor:
    """sum_{t,s} weight[i,t,j,s] * gg[..., i, t, j, s] (positions summed out), added to ``out``.

    With one position per point (dense layers) the positions are squeezed and the product is
    accumulated in place.
    """
    dims = _POSITIONS[mode]
    if isinstance(weight, torch.Tensor):
        weight = _align(weight, mode)
    if gg.shape[dims[0]] == 1 and gg.shape[dims[1]] == 1:
        gg = gg.squeeze(dims)
        if isinstance(weight, torch.Tensor):
            weight = weight.squeeze(dims)
            return gg * weight if out is None else out.addcmul_(gg, weight)
        return gg * weight if out is None else out.add_(gg, alpha=weight)
    summed = (gg * weight).sum(dims)
    return summed if out is None else out.add_(summed)


def _align(weight: torch.Tensor, mode: str) -> torch.Tensor:
    """(c1, T1, c2, T2) -> a view that broadcasts against the mode's G-Gram, positions aligned."""
    if mode == "diagonal":
        return weight[None]
    if mode == "full":
        return weight[:, None, :, :, None, :]
    return weight


def _final(block: torch.Tensor, mode: str) -> torch.Tensor:
    """Internal layout -> (c1, c2), (c1, c2, kc) or (c1, c2, kc1, kc2) (a view)."""
    if mode == "diagonal":
        return block.permute(1, 2, 0)
    if mode == "full":
        return block.permute(0, 2, 1, 3)
    return block
