"""NTK-vector products: K v = J(x) (J(x')^T v) without forming K or the Jacobian J(x).

J(x')^T v is one reverse-mode pass (a vector-Jacobian product) over the points x', and
J(x) u one forward-mode pass (a Jacobian-vector product) over the points x. The "ntk-vp"
method of the empirical NTK builds K column by column this way: the column for point x'_j and
output b is J(x) (J(x')^T e_jb), where J(x')^T e_jb is the per-point Jacobian row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.func import jvp, vjp, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from widenet.errors import WidenetError
from widenet.kernels._audit import Audit, prepare
from widenet.kernels._blocks import (
    DEFAULT_MEMORY_BUDGET,
    check_chunking,
    check_finite,
    points_per_chunk,
    slices,
)
from widenet.kernels._factors import TOTAL
from widenet.kernels._functional import (
    UNBATCHABLE,
    FunctionalModel,
    Params,
    check_per_point,
    on_values,
    unbatched,
)
from widenet.kernels.jacobians import jacobian_rows


@on_values
def ntk_vector_product(model: torch.nn.Module, x: torch.Tensor, v: torch.Tensor, *,
                       x2: torch.Tensor | None = None, chunk_size: int | None = None,
                       memory_budget: int = DEFAULT_MEMORY_BUDGET) -> torch.Tensor:
    """K(x, x2) v = J(x) J(x2)^T v, the empirical NTK applied to ``v``, without forming K.

    ``v`` has the shape of ``model(x2)`` (x2 defaults to x), the result that of ``model(x)``:
    (K v)[i, a] = sum_{j, b} <d f_a(x_i)/d theta, d f_b(x2_j)/d theta> v[j, b].
    Costs one VJP over x2 and one JVP over x, about three forward passes, and P + chunk
    activations of memory; ``chunk_size`` points are processed at a time (default: as many as
    ``memory_budget`` bytes allow).
    """
    check_chunking(chunk_size, memory_budget)
    fmodel, audit = prepare(model, x, x2, names=("x", "x2"))
    other = x if x2 is None else x2
    v = _check_vector(v, (other.shape[0], *audit.output_shape)).to(x).reshape(other.shape[0], -1)
    c = points_per_chunk(max(x.shape[0], other.shape[0]),
                         per_point=3 * x.element_size() * audit.activations,
                         fixed=2 * x.element_size() * fmodel.numel(), budget=memory_budget,
                         chunk_size=chunk_size)
    pulled = _pull_back(fmodel, other, v, c)
    pushed = []
    for points in slices(x.shape[0], c):
        with unbatched("forward-mode", _MULTIPLY), _differentiable_attention():
            f, jv = jvp(lambda p, points=points: fmodel(p, x[points]), (fmodel.params,),
                        (pulled,))
        check_per_point(fmodel, x[points], f, slice(None), _MULTIPLY)
        pushed.append(jv)
    result = torch.cat(pushed)
    check_finite("K v", result)
    return result.reshape(x.shape[0], *audit.output_shape)


_MULTIPLY = "use empirical_ntk(..., method='jacobian') and multiply"


@contextlib.contextmanager
def _differentiable_attention() -> Iterator[None]:
    """Attention by its plain composite operations for the block: in eval mode
    nn.MultiheadAttention and the Transformer layers take a fused fast path, and
    scaled_dot_product_attention fused kernels, that have no forward-mode derivatives; the
    composite path computes the same function and has them."""
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


def _pull_back(fmodel: FunctionalModel, x: torch.Tensor, v: torch.Tensor, c: int) -> Params:
    """J(x)^T v = sum_i J(x_i)^T v_i, one VJP per chunk of c points."""
    total: Params = {}
    for points in slices(x.shape[0], c):
        f, pullback = vjp(lambda p, points=points: fmodel(p, x[points]), fmodel.params)
        check_per_point(fmodel, x[points], f, slice(None), _MULTIPLY)
        (part,) = pullback(v[points])
        total = {name: total[name] + g for name, g in part.items()} if total else part
    return total


def _check_vector(v: object, shape: tuple[int, ...]) -> torch.Tensor:
    """Return ``v`` if it is a finite floating-point tensor of the given shape."""
    if not isinstance(v, torch.Tensor) or not v.is_floating_point():
        got = v.dtype if isinstance(v, torch.Tensor) else type(v).__name__
        raise WidenetError(f"v must be a floating-point torch.Tensor of shape {shape}, got {got}")
    if tuple(v.shape) != shape:
        raise WidenetError(f"v must have the shape of the model's output on x2, {shape}, "
                           f"got {tuple(v.shape)}")
    if not bool(torch.isfinite(v).all()):
        raise WidenetError("v contains NaN or inf values")
    return v


@dataclass
class _Chunk:
    """A chunk of points and an output range; its Jacobian rows are formed when first needed."""

    fmodel: FunctionalModel
    x: torch.Tensor
    outs: slice
    batched: bool
    formed: Params | None = None

    def rows(self) -> Params:
        if self.formed is None:
            self.formed = jacobian_rows(self.fmodel, self.x, self.outs, batched=self.batched)
        return self.formed

    def select(self, points: slice) -> _Chunk:
        formed = None if self.formed is None else {n: r[points] for n, r in self.formed.items()}
        return _Chunk(self.fmodel, self.x[points], self.outs, self.batched, formed)


def _layout(columns: torch.Tensor, c2: int, kc2: int) -> torch.Tensor:
    """JVPs (c2 kc2, c1, kc1), one per right column, as the block (c1, c2, kc1, kc2)."""
    c1, kc1 = columns.shape[1:]
    return columns.view(c2, kc2, c1, kc1).permute(2, 0, 3, 1)


class VectorProductMethod:
    """Empirical NTK by NTK-vector products, one JVP over the left chunk per right column.

    Costs per pair of points about 3 P k multiply-adds (every output of the left chunk comes with
    each JVP, so trace and diagonal cost as much as full), after the right chunk's Jacobian rows;
    holds c k P scalars of rows and c^2 k activations of the batched JVP.
    """

    def __init__(self, fmodel: FunctionalModel, audit: Audit, mode: str):
        self.fmodel = fmodel
        self.audit = audit
        self.mode = mode

    def features(self, x: torch.Tensor, outs: slice) -> _Chunk:
        return _Chunk(self.fmodel, x, outs, not self.audit.unbatched)

    def select(self, chunk: _Chunk, points: slice) -> _Chunk:
        return chunk.select(points)

    def halves_squares(self, like: torch.Tensor) -> bool:
        """False: a square block costs as many vector products as any other."""
        return False

    def contract(self, left: _Chunk, right: _Chunk, out: dict[str, torch.Tensor], *,
                 add: bool, square: bool = False) -> None:
        """Write (with ``add``: add) into ``out`` {name or TOTAL: block} the blocks
        K[i, j, a, b] = <J(x_i)_a, J(x'_j)_b>, by JVPs along rows (on the left chunk's points
        as one batch, so first checked to give what its points alone give); a ``square`` block
        is computed in full like any other."""
        with torch.no_grad():
            f = self.fmodel(self.fmodel.params, left.x)[:, left.outs]
        check_per_point(self.fmodel, left.x, f, left.outs,
                        "use method='jacobian', which differentiates every point alone")
        for key, block in out.items():
            names = tuple(self.fmodel.params) if key == TOTAL else (key,)
            columns = self._select(self._columns(left, right.rows(), names))
            if add:
                block.add_(columns)
            else:
                block.copy_(columns)

    def _columns(self, left: _Chunk, rows: Params, names: tuple[str, ...]) -> torch.Tensor:
        """(c1, c2, kc1, kc2): JVPs of the left chunk along the rows, restricted to ``names``."""
        params = self.fmodel.params
        fixed = {name: p for name, p in params.items() if name not in names}

        def outputs(moving: Params) -> torch.Tensor:
            return self.fmodel({**fixed, **moving}, left.x)[:, left.outs]

        def push(tangent: Params) -> torch.Tensor:
            return jvp(outputs, ({name: params[name] for name in names},), (tangent,))[1]

        c2, kc2 = rows[names[0]].shape[:2]
        tangents = {name: rows[name].flatten(0, 1) for name in names}
        with _differentiable_attention():
            if not self.audit.unbatched:
                try:
                    return _layout(vmap(push)(tangents), c2, kc2)
                except UNBATCHABLE as error:  # a model vmap cannot batch: one JVP per column
                    if isinstance(error, torch.OutOfMemoryError):
                        raise
            with unbatched("forward-mode", "use method='jacobian'"):
                return _layout(torch.stack([push({n: t[column] for n, t in tangents.items()})
                                            for column in range(c2 * kc2)]), c2, kc2)

    def _select(self, block: torch.Tensor) -> torch.Tensor:
        """The full (c1, c2, kc, kc) block reduced to the mode: trace or diagonal over a = b."""
        if self.mode == "full":
            return block
        diagonal = torch.diagonal(block, dim1=2, dim2=3)
        return diagonal.sum(-1) if self.mode == "trace" else diagonal

    def feature_memory(self, c: int, kc: int) -> int:
        """Scalars held while forming the Jacobian rows of c points and kc outputs."""
        return c * kc * (self.fmodel.numel() + self.audit.activations)

    def block_memory(self, c1: int, c2: int, kc: int, per_layer: bool) -> int:
        """Scalars of one block: the batched JVPs' activations, the full (c1, c2, kc, kc) blocks."""
        blocks = len(self.fmodel.params) if per_layer else 1
        return 3 * c1 * c2 * kc * self.audit.activations + c1 * c2 * kc * kc * (blocks + 1)
