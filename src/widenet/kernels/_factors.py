"""Jacobians in factored form and the Gram contractions that turn them into kernel blocks.

A ``Factor`` holds one trainable parameter's Jacobian for a chunk of c points and kc outputs
without materializing it when it factorizes (see ``_layers``):

    <J(x_i)_a, J(x'_j)_b> = scale * sum_{t,s} (A_it . A'_js) (G_ait . G'_bjs),

with A of shape (c, T, p) and G of shape (kc, c, T, q). A plain Jacobian is the special case
A = 1, T = 1, G = rows of J. Consecutive factors that share G (a dense layer's weight and bias)
form one ``Group`` and share its G-Gram, so a biased layer costs one Gram product, not two.

Output modes and block layouts: "trace" sums over a = b, shape (c1, c2); "diagonal" keeps
a = b, shape (c1, c2, kc); "full" keeps all pairs, shape (c1, c2, kc1, kc2).

A *square* block, a chunk's factors against themselves, is symmetric: in "trace" mode its Gram
products are taken as lower triangles (``_gram.lower_gram``, half the multiply-adds), so that
only its lower triangle (i >= j) is right and the caller mirrors it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from widenet.kernels._gram import lower_gram, mirror_lower_, rank_k_update_available

TOTAL = ""  # key of the summed block; parameter names are never empty
MODES = ("trace", "diagonal", "full")
# per mode: G's memory order, as a permutation of (kc, c, T, q); the axis of the points in it
_ORDER = {"trace": (1, 2, 0, 3), "diagonal": (0, 1, 2, 3), "full": (1, 0, 2, 3)}
_POINTS = {"trace": 0, "diagonal": 1, "full": 0}
_POSITIONS = {"trace": (1, 3), "diagonal": (2, 4), "full": (2, 5)}  # summed out when T > 1


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


@dataclass(frozen=True)
class Group:
    """Factors sharing one G, laid out for the Gram products of one mode.

    ``grads`` is G with its axes in the mode's memory order (``_ORDER``: (c, T, kc, q) for
    "trace", (kc, c, T, q) for "diagonal", (c, kc, T, q) for "full"), contiguous, so that
    selecting points and flattening it into the matrix of the Gram product are views;
    ``terms`` are the factors' (name, scale, A) with A contiguous; T positions, kc outputs.
    """

    grads: torch.Tensor
    terms: tuple[tuple[str, float, torch.Tensor | None], ...]
    positions: int
    outputs: int


class FactorMethod:
    """Selection and contraction for the methods whose features are lists of factor groups."""

    mode: str

    def select(self, groups: list[Group], points: slice) -> list[Group]:
        return select(groups, points, self.mode)

    def halves_squares(self, like: torch.Tensor) -> bool:
        """Whether square blocks cost half: their Grams as lower triangles ("trace" mode)."""
        return self.mode == "trace" and rank_k_update_available(like)

    def contract(self, left: list[Group], right: list[Group], out: dict[str, torch.Tensor], *,
                 add: bool, square: bool = False) -> None:
        """The kernel blocks between two chunks' factors, written into ``out`` (see
        ``contract``)."""
        contract(left, right, self.mode, out, add=add, square=square)


def arrange(factors: Sequence[Factor], mode: str) -> list[Group]:
    """Consecutive factors sharing G (the same tensor) as groups laid out for ``mode``: G and
    every A are copied at most once here instead of being rearranged at every block."""
    groups: list[Group] = []
    last = None
    for f in factors:
        inputs = None if f.inputs is None else f.inputs.contiguous()
        if f.grads is last:
            groups[-1] = Group(groups[-1].grads, (*groups[-1].terms, (f.name, f.scale, inputs)),
                               groups[-1].positions, groups[-1].outputs)
            continue
        last = f.grads
        kc, _, positions, _ = f.grads.shape
        groups.append(Group(f.grads.permute(_ORDER[mode]).contiguous(),
                            ((f.name, f.scale, inputs),), positions, kc))
    return groups


def select(groups: Sequence[Group], points: slice, mode: str) -> list[Group]:
    """The groups of a sub-range of the points (views)."""
    axis = _POINTS[mode]
    return [Group(g.grads[points] if axis == 0 else g.grads[:, points],
                  tuple((name, scale, None if a is None else a[points])
                        for name, scale, a in g.terms), g.positions, g.outputs)
            for g in groups]


def contract(left: Sequence[Group], right: Sequence[Group], mode: str,
             out: dict[str, torch.Tensor], *, add: bool, square: bool = False) -> None:
    """Write (with ``add``: add) the kernel blocks between two chunks into ``out``, views of the
    result in the mode's block layout: {TOTAL: block}, the sum over all parameters, or
    {name: block} per parameter. ``left`` and ``right`` list the same groups in the same order;
    with ``square`` they are the same chunk's, and in "trace" mode only the blocks' lower
    triangles are written right (see the module's docstring).
    """
    lower = square and mode == "trace"
    total = out.get(TOTAL)
    for a, b in zip(left, right, strict=True):
        gg = _grad_gram(a, b, mode, lower)
        if total is None:
            for term, other in zip(a.terms, b.terms, strict=True):
                _weighted(gg, _input_weight(term, other, a.positions, lower=lower), mode,
                          a.positions, _internal(out[term[0]], mode), add)
        else:
            _weighted(gg, _summed_weight(a, b, lower), mode, a.positions,
                      _internal(total, mode), add)
            add = True


def _summed_weight(a: Group, b: Group, lower: bool) -> torch.Tensor | float:
    """sum over a group's terms of scale * (A_it . A'_js), the A = 1 terms (biases) added into
    the first A-Gram's product instead of in passes of their own."""
    constant = float(sum(scale for _, scale, inputs in a.terms if inputs is None))
    weight: torch.Tensor | float = constant
    for term, other in zip(a.terms, b.terms, strict=True):
        if term[2] is not None:
            weight = (weight.add_(_input_weight(term, other, a.positions, lower=lower))
                      if isinstance(weight, torch.Tensor)
                      else _input_weight(term, other, a.positions, plus=constant, lower=lower))
    return weight


def _grad_gram(a: Group, b: Group, mode: str, lower: bool) -> torch.Tensor:
    """<G_ait, G'_bjs> in the mode's layout, positions kept when T > 1 (one matrix product;
    with ``lower``, a = b in "trace" mode, only its lower triangle is right when T = 1).

    trace: sum_a, (c1, [T1,] c2[, T2]); diagonal: a = b, (kc, c1, [T1,] c2[, T2]);
    full: (c1, kc1, [T1,] c2, kc2[, T2]).
    """
    t = a.positions
    if mode == "diagonal":
        gram = torch.bmm(a.grads.flatten(1, 2), b.grads.flatten(1, 2).transpose(1, 2))
        return gram if t == 1 else gram.view(a.outputs, -1, t, b.grads.shape[1], t)
    if mode == "trace":
        matrix = a.grads.flatten(0, 1).flatten(1)
        gram = (_symmetric_gram(matrix, t) if lower
                else matrix @ b.grads.flatten(0, 1).flatten(1).T)
        return gram if t == 1 else gram.view(-1, t, b.grads.shape[0], t)
    gram = a.grads.flatten(0, 2) @ b.grads.flatten(0, 2).T
    shape = (a.outputs, b.grads.shape[0], b.outputs) if t == 1 else (
        a.outputs, t, b.grads.shape[0], b.outputs, t)
    return gram.view(-1, *shape)


def _input_weight(term: tuple, other: tuple, t: int, plus: float = 0.0, *,
                  lower: bool = False) -> torch.Tensor | float:
    """plus + scale * (A_it . A'_js), shape (c1, c2), or (c1, T, c2, T) when T > 1, or
    plus + scale when A = 1 (one matrix product, the scale and the constant applied by it;
    with ``lower``, A = A', only its lower triangle is right when T = 1)."""
    _, scale, inputs = term
    if inputs is None:
        return plus + scale
    left = inputs.flatten(0, 1)
    if lower:
        gram = _symmetric_gram(left, t, alpha=scale, plus=plus)
    elif plus == 0.0 and scale == 1.0:
        gram = left @ other[2].flatten(0, 1).T
    else:
        gram = torch.addmm(left.new_tensor(plus), left, other[2].flatten(0, 1).T,
                           beta=1.0 if plus else 0.0, alpha=scale)
    return gram if t == 1 else gram.view(inputs.shape[0], t, -1, t)


def _symmetric_gram(matrix: torch.Tensor, t: int, *, alpha: float = 1.0,
                    plus: float = 0.0) -> torch.Tensor:
    """plus + alpha * M M^T, its lower triangle only when T = 1 (then the block's lower triangle
    is all that is used), symmetrized when T > 1 (the positions of a point are summed over both
    triangles of the point's own square)."""
    gram = lower_gram(matrix, alpha=alpha, plus=plus)
    return gram if t == 1 else mirror_lower_(gram)


def _weighted(gg: torch.Tensor, weight: torch.Tensor | float, mode: str, t: int,
              out: torch.Tensor, add: bool) -> None:
    """out = (with ``add``: out +=) sum_{t,s} weight[i,t,j,s] * gg[..., i, t, j, s], the
    positions summed out; with one position per point (dense layers), in one pass over out."""
    if isinstance(weight, torch.Tensor):
        weight = _align(weight, mode, t)
    if t > 1:
        summed = (gg * weight).sum(_POSITIONS[mode])
        if add:
            out.add_(summed)
        else:
            out.copy_(summed)
    elif not add:
        torch.mul(gg, weight, out=out)
    elif isinstance(weight, torch.Tensor):
        out.addcmul_(gg, weight)
    else:
        out.add_(gg, alpha=weight)


def _align(weight: torch.Tensor, mode: str, t: int) -> torch.Tensor:
    """The weight (c1, [T1,] c2[, T2]) as a view that broadcasts against the mode's G-Gram."""
    if mode == "diagonal":
        return weight[None]
    if mode == "full":
        return weight[:, None, :, None] if t == 1 else weight[:, None, :, :, None, :]
    return weight


def _internal(block: torch.Tensor, mode: str) -> torch.Tensor:
    """A block (c1, c2), (c1, c2, kc) or (c1, c2, kc1, kc2) as a view in the internal layout of
    the G-Grams: (c1, c2), (kc, c1, c2), (c1, kc1, c2, kc2)."""
    if mode == "diagonal":
        return block.permute(2, 0, 1)
    if mode == "full":
        return block.permute(0, 2, 1, 3)
    return block
