"""Per-point Jacobians of a model with respect to its trainable parameters.

J(x_i)_a = d f_a(x_i) / d theta for every point x_i and output unit a, computed per point with
``torch.func.vmap(torch.func.jacrev(...))``: one reverse-mode pass per output unit and point.
Also the general "jacobian" method of the empirical NTK, which contracts these Jacobians,
K(x_i, x'_j)_ab = <J(x_i)_a, J(x'_j)_b>, one Gram product per parameter.
"""

from __future__ import annotations

import torch
from torch.func import jacrev, vmap

from widenet.kernels._audit import Audit, prepare
from widenet.kernels._blocks import (
    DEFAULT_MEMORY_BUDGET,
    check_chunking,
    points_per_chunk,
    slices,
)
from widenet.kernels._factors import Factor, FactorMethod, Group, arrange, output_pairs
from widenet.kernels._functional import (
    UNBATCHABLE,
    FunctionalModel,
    on_values,
    unbatched,
)


@on_values
def jacobian(model: torch.nn.Module, x: torch.Tensor, *, chunk_size: int | None = None,
             memory_budget: int = DEFAULT_MEMORY_BUDGET) -> dict[str, torch.Tensor]:
    """The Jacobian of ``model`` at the points ``x`` with respect to its trainable parameters.

    Returns ``{name: J}`` for every trainable parameter of ``model.named_parameters()``, with
    J of shape (n, k, *parameter.shape) and J[i, a] = d f_a(x_i) / d parameter, where the k
    outputs are the model's per-point outputs flattened. Derivatives are taken functionally at
    the model's current parameters (cast to x's dtype and device); the model is not modified.
    ``chunk_size`` points are differentiated at a time (default: as many as ``memory_budget``
    bytes of working memory allow; the returned Jacobian itself needs n k P scalars).
    """
    check_chunking(chunk_size, memory_budget)
    fmodel, audit = prepare(model, x, names=("x", "x2"))
    per_point = x.element_size() * audit.outputs * (fmodel.numel() + audit.activations)
    c = points_per_chunk(x.shape[0], per_point=per_point, fixed=0, budget=memory_budget,
                         chunk_size=chunk_size)
    chunks = [jacobian_rows(fmodel, x[points], slice(None), batched=not audit.unbatched)
              for points in slices(x.shape[0], c)]
    return {name: torch.cat([chunk[name] for chunk in chunks]) for name in fmodel.params}


def jacobian_rows(fmodel: FunctionalModel, x: torch.Tensor, outs: slice, *,
                  batched: bool = True) -> dict[str, torch.Tensor]:
    """{name: (c, kc, *parameter.shape)}: d f_a(x_i) / d parameter for the outputs a in ``outs``.

    ``batched``: by vmap over the points, falling back to the loop when vmap raises; otherwise
    (a model using operations vmap batches wrongly or not at all, see ``_audit.UNBATCHED_OPS``)
    point by point and output by output, which is slower and as exact.
    """
    def point_outputs(params: dict[str, torch.Tensor], point: torch.Tensor) -> torch.Tensor:
        return fmodel(params, point.unsqueeze(0))[0, outs]

    if batched:
        try:
            return vmap(jacrev(point_outputs), in_dims=(None, 0))(fmodel.params, x)
        except UNBATCHABLE as error:
            if isinstance(error, torch.OutOfMemoryError):
                raise
    with unbatched("reverse-mode", "check that torch.func.jacrev can differentiate it"):
        rows = [jacrev(point_outputs, chunk_size=1)(fmodel.params, point) for point in x]
    return {name: torch.stack([row[name] for row in rows]) for name in fmodel.params}


class JacobianMethod(FactorMethod):
    """Empirical NTK by Jacobian contraction: features are per-point Jacobian rows.

    Costs one reverse-mode pass per point and output unit (a few forward passes' work each),
    then per pair of points P k^2 (full) or P k (trace, diagonal) multiply-adds for the Gram
    products; holds the c k P scalars of a chunk's Jacobian rows.
    """

    def __init__(self, fmodel: FunctionalModel, audit: Audit, mode: str):
        self.fmodel = fmodel
        self.audit = audit
        self.mode = mode

    def features(self, x: torch.Tensor, outs: slice) -> list[Group]:
        """Jacobian rows as factors with A = 1: G = rows, shape (kc, c, 1, parameter size)
        (size 1 for a scalar parameter, whose rows j are (c, kc))."""
        rows = jacobian_rows(self.fmodel, x, outs, batched=not self.audit.unbatched)
        return arrange([Factor(name, 1.0, j.reshape(*j.shape[:2], 1, -1).transpose(0, 1), None)
                        for name, j in rows.items()], self.mode)

    def feature_memory(self, c: int, kc: int) -> int:
        """Scalars held while forming the Jacobian rows of c points and kc outputs."""
        return c * kc * (self.fmodel.numel() + self.audit.activations)

    def block_memory(self, c1: int, c2: int, kc: int, per_layer: bool) -> int:
        """Scalars of one block's temporaries: a Gram product and the blocks."""
        blocks = len(self.fmodel.params) if per_layer else 1
        return c1 * c2 * output_pairs(self.mode, kc) * (blocks + 1)
