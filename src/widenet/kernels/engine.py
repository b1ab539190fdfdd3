"""The engine of :func:`widenet.infinite_kernels`: runs a model's kernel plan over blocks of
pairs of inputs under a memory budget (docs/theory.md sections 3 and 7).

1. Self pass: each input x with itself, in chunks, records Sigma_{ii}(x, x) at every op that
   needs it (activation duals, layer norm).
2. Pair blocks: for blocks of rows x columns the plan maps the input kernel
   K0_{i,i'}(x, x') = <x_i, x'_i'> / C up to the output. When the first layer is a
   convolution, its averaged input kernel (1/|N|) sum_delta K0_{j+delta, j'+delta} is computed
   directly as <patch_j(x), patch_j'(x')> / (C |N|), one matrix product over the patches.
   For x2 = None only blocks on and above the diagonal are computed; the others are their
   mirror images, and diagonal blocks are made exactly symmetric, so the result is exactly
   symmetric.
3. The block results, computed in the working dtype (float64 for the flat recursion of MLPs,
   whose float32 rounding breaks positive semi-definiteness at depth; the inputs' dtype, at
   least float32, for spatial kernels), are rounded once into the output dtype.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from widenet.errors import WidenetError
from widenet.kernels.maps import Mode, Plan
from widenet.kernels.maps.base import BufferPool, Op, State, position_diagonal
from widenet.kernels.maps.structure import run_ops
from widenet.kernels.maps.weighted import WeightedOp

CACHE_BYTES = 2**20  # about 1 MiB per working array keeps a flat recursion in cache
BLOCK_ENTRIES = 2**20  # entries per working array when positions are tracked (fewer calls)


@dataclass
class BlockResult:
    """Kernels of one block: ``tensor`` (b1, b2, *positions) and how many spatial axes each of
    its two position groups has (0 for flat and diagonal forms, which mirror by a transpose)."""

    tensor: torch.Tensor
    group_dims: int


class _SelfPass:
    """Context of the self pass: records each op's Sigma_{ii}(x, x) as it goes."""

    per_layer = False
    want_ntk = False

    def __init__(self):
        self.found: dict[int, torch.Tensor] = {}
        self.pool = BufferPool()

    def variances(self, op: Op, state: State) -> tuple[torch.Tensor, torch.Tensor]:
        q = (position_diagonal(state.sigma, state.dims) if state.mode == Mode.FULL
             else state.sigma).clone()  # later ops may work in place on sigma
        self.found[op.index] = q
        if state.mode != Mode.FULL:
            return q, q
        n, spatial = q.shape[0], q.shape[1:]
        ones = (1,) * len(spatial)
        return q.reshape(n, *spatial, *ones), q.reshape(n, *ones, *spatial)

    def record(self, tensor: torch.Tensor, group: str, mode: Mode, dims: int) -> None:
        pass


class _BlockPass:
    """Context of one block of pairs: variances from the self pass, and the records kept."""

    def __init__(self, rows_q: dict[int, torch.Tensor], cols_q: dict[int, torch.Tensor],
                 rows: slice, cols: slice, per_layer: bool, want_ntk: bool, pool: BufferPool):
        self.rows_q, self.cols_q, self.rows, self.cols = rows_q, cols_q, rows, cols
        self.per_layer, self.want_ntk, self.pool = per_layer, want_ntk, pool
        self.records: dict[str, list[BlockResult]] = {"sigma": [], "sigma_dot": []}

    def variances(self, op: Op, state: State) -> tuple[torch.Tensor, torch.Tensor]:
        q1, q2 = self.rows_q[op.index][self.rows], self.cols_q[op.index][self.cols]
        b1, b2, spatial = q1.shape[0], q2.shape[0], q1.shape[1:]
        if state.mode == Mode.FULL:
            ones = (1,) * len(spatial)
            return q1.reshape(b1, 1, *spatial, *ones), q2.reshape(1, b2, *ones, *spatial)
        return q1.reshape(b1, 1, *spatial), q2.reshape(1, b2, *spatial)

    def record(self, tensor: torch.Tensor, group: str, mode: Mode, dims: int) -> None:
        self.records[group].append(BlockResult(tensor, dims if mode == Mode.FULL else 0))


def conv_patches(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...],
                 pads: tuple[tuple[int, int], ...], circular: bool) -> torch.Tensor:
    """(n, C, *spatial) -> (n, C |N|, P_out): each output position's input patch (padded)."""
    flat_pads = [p for pair in reversed(pads) for p in pair]
    if any(flat_pads):
        x = F.pad(x, flat_pads, mode="circular" if circular else "constant")
    if len(kernel) == 1:
        x, kernel, stride = x.unsqueeze(2), (1, *kernel), (1, *stride)
    return F.unfold(x, kernel, stride=stride)


def input_kernel(x1: torch.Tensor, x2: torch.Tensor | None, mode: Mode) -> torch.Tensor:
    """K0 = <x_i, x'_i'> / C between points (n, C, P) (or (n, F) vectors): for a block
    (x2 given) of shape (b1, b2, *positions), for the self pairs (x2 None) (n, *positions)."""
    channels = x1.shape[1]
    if mode == Mode.FLAT:
        x1 = x1.flatten(1)
        if x2 is None:
            return (x1 * x1).mean(dim=1)
        return (x1 @ x2.flatten(1).T).mul_(1.0 / x1.shape[1])
    if mode == Mode.DIAG:
        if x2 is None:
            return (x1 * x1).mean(dim=1)
        return torch.einsum("acp,bcp->abp", x1, x2).mul_(1.0 / channels)
    if x2 is None:
        return torch.einsum("acp,acq->apq", x1, x1).mul_(1.0 / channels)
    b1, b2, positions = x1.shape[0], x2.shape[0], x1.shape[2]
    pairs = x1.transpose(1, 2).reshape(b1 * positions, channels) @ \
        x2.transpose(1, 2).reshape(b2 * positions, channels).T
    return pairs.view(b1, positions, b2, positions).permute(0, 2, 1, 3).mul_(1.0 / channels)


class Engine:
    """One model's plan on one pair of input sets (see the module docstring)."""

    def __init__(self, plan: Plan, x1: torch.Tensor, x2: torch.Tensor, *, symmetric: bool,
                 per_layer: bool, want_ntk: bool, block_side: int, out_dtype: torch.dtype):
        self.plan, self.out_dtype = plan, out_dtype
        self.symmetric, self.per_layer, self.want_ntk = symmetric, per_layer, want_ntk
        self.block_side = block_side
        first = plan.ops[0] if plan.ops else None
        self.first = (first if isinstance(first, WeightedOp) and first.conv is not None
                      and plan.mode_in != Mode.FLAT else None)
        self.ops = plan.ops[1:] if self.first is not None else plan.ops
        if self.first is not None:  # (n, C |N|, P_out) patches of the first convolution
            self.spatial = self.first.shape_out.spatial
            self.x1 = conv_patches(x1, *self.first.conv)
            self.x2 = self.x1 if symmetric else conv_patches(x2, *self.first.conv)
        else:  # (n, C, P) or (n, F)
            self.spatial = plan.shape_in.spatial
            self.x1, self.x2 = (x if x.ndim == 2 else x.flatten(2) for x in (x1, x2))
        self.part_names: list[str] = []
        self.pool = BufferPool()
        self.rows_q, self.rows_k0 = self._self_pass(self.x1)
        self.cols_q, self.cols_k0 = ((self.rows_q, self.rows_k0) if symmetric
                                     else self._self_pass(self.x2))

    def _shaped(self, k: torch.Tensor, batch: int) -> torch.Tensor:
        """Positions of a kernel from (.., P[, P]) to (.., *spatial[, *spatial])."""
        if self.plan.mode_in == Mode.FLAT:
            return k
        groups = 2 if self.plan.mode_in == Mode.FULL else 1
        return k.reshape(*k.shape[:batch], *(self.spatial * groups))

    def _initial(self, k0: torch.Tensor, context: _SelfPass | _BlockPass) -> State:
        dims = len(self.spatial) if self.plan.mode_in != Mode.FLAT else 0
        if self.first is None:
            return State(k0, None, self.plan.mode_in, dims)
        weight_part = k0.mul_(float(self.first.weight_var))
        return self.first.finish(weight_part, None, {}, self.plan.mode_in, dims, context)

    def _self_pass(self, x: torch.Tensor) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
        """Each op's Sigma_{ii}(x, x) for every point, and the input kernels K0(x, x)."""
        found: dict[int, list[torch.Tensor]] = {}
        k0s = []
        chunk = max(1, self.block_side ** 2)
        for start in range(0, x.shape[0], chunk):
            context = _SelfPass()
            k0 = self._shaped(input_kernel(x[start:start + chunk], None, self.plan.mode_in), 1)
            k0s.append(k0)
            run_ops(self.ops, self._initial(k0.clone(), context), context)
            for index, q in context.found.items():
                found.setdefault(index, []).append(q)
        return {i: torch.cat(q) for i, q in found.items()}, torch.cat(k0s)

    def block(self, rows: slice, cols: slice) -> tuple[list[BlockResult], dict[str, list]]:
        """[NNGP, (NTK), per-parameter parts...] and the per-layer records of one block."""
        k0 = self._shaped(input_kernel(self.x1[rows], self.x2[cols], self.plan.mode_in), 2)
        if self.symmetric and rows == cols:  # K0(x, x) exactly as in the self pass
            k0.diagonal(dim1=0, dim2=1).copy_(self.rows_k0[rows].movedim(0, -1))
        context = _BlockPass(self.rows_q, self.cols_q, rows, cols, self.per_layer,
                             self.want_ntk, self.pool)
        state = run_ops(self.ops, self._initial(k0, context), context).reduced_to(
            self.plan.mode_out)
        if state.dims:  # a spatial output: the kernel per output unit averages positions
            state = state.map(lambda t: t.flatten(2).mean(dim=-1))
        if self.want_ntk and state.theta is None:
            state.theta = torch.zeros_like(state.sigma)
        heads = [state.sigma] + ([state.theta] if self.want_ntk else [])
        heads += list(state.parts.values())
        self.part_names = list(state.parts)
        return [BlockResult(t, 0) for t in heads], context.records

    def run(self) -> tuple[list[torch.Tensor], dict[str, list[torch.Tensor]], list[str]]:
        """All blocks: the head matrices, the per-layer records and the part names."""
        n1, n2 = self.x1.shape[0], self.x2.shape[0]
        heads: list[torch.Tensor] | None = None
        records: dict[str, list[torch.Tensor]] | None = None
        for rows, cols in block_pairs(n1, n2, self.block_side, self.symmetric):
            results, block_records = self.block(rows, cols)
            if heads is None:
                heads = [_allocate(r, n1, n2, self.out_dtype) for r in results]
                records = {g: [_allocate(r, n1, n2, self.out_dtype) for r in rs]
                           for g, rs in block_records.items()}
            for output, result in zip(heads, results, strict=True):
                self._store(output, result, rows, cols)
            self.pool.give(*(r.tensor for r in results))  # stored: the next block reuses them
            for group, rs in block_records.items():
                for output, result in zip(records[group], rs, strict=True):
                    self._store(output, result, rows, cols)
        return heads, records, self.part_names

    def _store(self, output: torch.Tensor, result: BlockResult, rows: slice, cols: slice
               ) -> None:
        value = result.tensor.to(output.dtype)
        check_finite(value, result.tensor.dtype)
        if self.symmetric and rows == cols:
            value = _symmetrized(value, result.group_dims)
        output[rows, cols] = value
        if self.symmetric and rows != cols:
            output[cols, rows] = _mirrored(value, result.group_dims)


def _allocate(result: BlockResult, n1: int, n2: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(n1, n2, *result.tensor.shape[2:], dtype=dtype,
                       device=result.tensor.device)


def _mirrored(value: torch.Tensor, group_dims: int) -> torch.Tensor:
    """K(x', x) from K(x, x'): swap the two points, and the two position groups if any."""
    if not group_dims:
        return value.transpose(0, 1)
    first = list(range(2, 2 + group_dims))
    second = list(range(2 + group_dims, 2 + 2 * group_dims))
    return value.permute(1, 0, *second, *first)


def _symmetrized(value: torch.Tensor, group_dims: int) -> torch.Tensor:
    """A diagonal block made exactly symmetric: the upper triangle of points kept, the lower one
    its mirror, and (x, x) entries averaged with their mirror when positions are swapped."""
    b = value.shape[0]
    mirrored = _mirrored(value, group_dims)
    shape = (b, b) + (1,) * (value.ndim - 2)
    upper = torch.ones(b, b, dtype=torch.bool, device=value.device).triu(1).view(shape)
    diagonal = torch.eye(b, dtype=torch.bool, device=value.device).view(shape)
    out = torch.where(upper, value, mirrored)
    if group_dims:
        out = torch.where(diagonal, 0.5 * (value + mirrored), out)
    return out


def block_pairs(n1: int, n2: int, block: int, symmetric: bool
                ) -> Iterator[tuple[slice, slice]]:
    """Row and column slices of the blocks to compute (upper triangle only when symmetric)."""
    for i in range(0, n1, block):
        for j in range(i if symmetric else 0, n2, block):
            yield slice(i, min(i + block, n1)), slice(j, min(j + block, n2))


def block_side(plan: Plan, dtype: torch.dtype, memory_budget: int, per_layer: bool) -> int:
    """The side of the square blocks of pairs: as many pairs as ``memory_budget`` bytes hold,
    at most about 1 MiB per working array for the flat recursion (cache) and
    BLOCK_ENTRIES entries per working array when positions are tracked."""
    size = torch.empty((), dtype=dtype).element_size()
    entries = plan.entries_per_pair()
    weighted = sum(1 for op in plan.walk() if hasattr(op, "weight_name"))
    arrays = 12 + (6 * weighted if per_layer else 0)
    pair_bytes = entries * size * arrays
    if memory_budget < pair_bytes:
        raise WidenetError(f"memory_budget={memory_budget} bytes is smaller than one pair of "
                           f"inputs needs ({pair_bytes} bytes for this architecture and input "
                           f"size); pass memory_budget={pair_bytes} or more")
    side = math.isqrt(memory_budget // pair_bytes)
    if plan.largest_mode == Mode.FLAT:
        return max(1, min(side, math.isqrt(CACHE_BYTES // size)))
    return max(1, min(side, math.isqrt(BLOCK_ENTRIES // entries)))


def check_finite(block: torch.Tensor, work_dtype: torch.dtype) -> None:
    """Raise if a block overflowed: its sum is finite unless an entry is not (or, rarely, the
    entries are so large that they overflow when added, which the exact test then rules out)."""
    if bool(torch.isfinite(block.sum())) or bool(torch.isfinite(block).all()):
        return
    remedy = ("rescale the inputs or lower weight_std" if block.dtype == torch.float64
              else "pass dtype=torch.float64, rescale the inputs or lower weight_std")
    raise WidenetError(f"the kernel overflowed in {block.dtype}: the inputs' norms, or the "
                       "variance that weight_std and bias_std build up over the layers, are too "
                       f"large for it; {remedy}")
