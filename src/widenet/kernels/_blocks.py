"""A kernel assembled block by block over chunks of points and outputs, within a memory budget.

A method turns a chunk of points and a range of outputs into features, and two features into
a kernel block. The assembly computes the features of a *panel* of right-hand points once (all
of x2 when they fit in the budget) and contracts it with row chunks of x1 small enough that a
block stays in cache (about ``BLOCK_SCALARS`` scalars). Without x2 the kernel is symmetric,
K(x_i, x_j)_ab = K(x_j, x_i)_ba: a row chunk is only contracted with the columns from its own
first point on, its features are sliced out of the panel's instead of recomputed, and the rest
is mirrored once all blocks are in. A row chunk's square of its own points (and outputs) is a
*square* block, symmetric, which a method may compute as its lower triangle alone ("trace"
mode); the rest of the chunk's columns are another block. With the kernel split into r row
chunks this computes (r + 1) / (2 r) of the products, or half of them where the squares cost
half (``halved_squares``: then one chunk is as good as many, and the cache decides); so
otherwise a symmetric kernel gets at least ``TRIANGLE_CHUNKS`` row chunks when they stay
efficient (``MIN_BLOCK_ROWS`` rows or more).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch

from widenet.errors import WidenetError
from widenet.kernels._factors import output_pairs
from widenet.kernels._gram import mirror_lower_
from widenet.memory import format_bytes
from widenet.validation import positive_int

DEFAULT_MEMORY_BUDGET = 2**30  # bytes of working memory, beyond the result itself
BLOCK_SCALARS = 2**21  # a block of this many scalars (8 MiB in float32) stays in cache
MIN_BLOCK_ROWS = 128  # rows (points x outputs) for an efficient matrix product
TRIANGLE_CHUNKS = 4  # row chunks of a symmetric kernel: 5/8 of the square's products


class BlockMethod(Protocol):
    """What the assembly needs from an empirical-NTK method (mode: "trace", "diagonal", "full")."""

    mode: str

    def features(self, x: torch.Tensor, outs: slice) -> object: ...

    def select(self, features: object, points: slice) -> object: ...

    def contract(self, left: object, right: object, out: dict[str, torch.Tensor], *,
                 add: bool, square: bool = False) -> None: ...

    def halves_squares(self, like: torch.Tensor) -> bool:
        """Whether square blocks of points like these cost half a block's products."""
        ...

    def feature_memory(self, c: int, kc: int) -> int: ...

    def block_memory(self, c1: int, c2: int, kc: int, per_layer: bool) -> int: ...


@dataclass(frozen=True)
class Plan:
    """Row chunk and panel sizes over points, output chunk size.

    The panel is all of x2 or a multiple of the row chunk, so that no row chunk straddles two
    panels.
    """

    rows: int
    panel: int
    outputs: int


def plan_blocks(method: BlockMethod, n1: int, n2: int, k: int, *, itemsize: int, budget: int,
                chunk_size: int | None, per_layer: bool, symmetric: bool = False,
                halved_squares: bool = False) -> Plan:
    """Chunk sizes whose working memory (features of a row chunk and a panel, one block) fits.

    With ``chunk_size``, rows = panel = chunk_size and only the outputs are split; otherwise
    the panel starts as all of x2 and rows at a cache-sized block (for a ``symmetric`` kernel,
    K(x1, x1), also at most 1 / TRIANGLE_CHUNKS of the points unless the method computes square
    blocks at half cost, ``halved_squares``, and the row chunk's features fit beside the
    panel's), and the panel, then rows and panel together, then the outputs are halved until
    the estimate fits ``budget`` bytes.
    """
    def need(rows: int, panel: int, kc: int) -> int:
        scalars = (method.feature_memory(rows, kc) + method.feature_memory(panel, kc)
                   + method.block_memory(rows, panel, kc, per_layer))
        return itemsize * scalars

    kc = k
    if chunk_size is not None:
        rows = panel = min(chunk_size, max(n1, n2))
    else:
        panel = n2
        rows = _cache_rows(n1, panel, k, method.mode, symmetric and not halved_squares)
        if symmetric and halved_squares and need(rows, panel, kc) > budget:
            rows = _cache_rows(n1, panel, k, method.mode, True)
    while need(rows, panel, kc) > budget:
        if chunk_size is None and panel > rows:
            panel = max(rows, panel // 2 // rows * rows)
        elif chunk_size is None and rows > 1 and (rows * kc >= MIN_BLOCK_ROWS or kc == 1):
            rows = panel = math.ceil(rows / 2)
        elif kc > 1:
            kc = math.ceil(kc / 2)
        else:
            advice = "lower chunk_size or raise" if chunk_size is not None and rows > 1 else "raise"
            raise WidenetError(f"a block of {rows} x {panel} point(s) and one output needs about "
                               f"{format_bytes(need(rows, panel, kc))}, more than "
                               f"memory_budget={budget} bytes; {advice} memory_budget")
    return Plan(rows, panel, kc)


def _cache_rows(n1: int, panel: int, k: int, mode: str, triangle: bool) -> int:
    """Rows per chunk: a block of about BLOCK_SCALARS scalars (``triangle``: and at most
    n1 / TRIANGLE_CHUNKS points), and MIN_BLOCK_ROWS rows (points x outputs) or more."""
    rows = BLOCK_SCALARS // (panel * output_pairs(mode, k))
    if triangle:
        rows = min(rows, math.ceil(n1 / TRIANGLE_CHUNKS))
    return min(max(rows, math.ceil(MIN_BLOCK_ROWS / k), 1), n1)


def check_chunking(chunk_size: object, memory_budget: object) -> None:
    """Raise unless chunk_size is None or a positive integer and memory_budget a positive one."""
    if chunk_size is not None:
        positive_int(chunk_size, "chunk_size")
    positive_int(memory_budget, "memory_budget")


def points_per_chunk(n: int, *, per_point: int, fixed: int, budget: int,
                     chunk_size: int | None) -> int:
    """chunk_size, or the most points c <= n with fixed + c * per_point <= budget (bytes)."""
    if chunk_size is not None:
        return min(chunk_size, n)
    c = min(n, (budget - fixed) // max(per_point, 1))
    if c < 1:
        raise WidenetError(f"one point needs about {format_bytes(fixed + per_point)}, more "
                           f"than memory_budget={budget} bytes; raise memory_budget")
    return c


def slices(n: int, size: int) -> list[slice]:
    """Consecutive ranges of ``size`` (the last one shorter) covering 0..n-1."""
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def assemble(method: BlockMethod, x1: torch.Tensor, x2: torch.Tensor | None, k: int, plan: Plan,
             keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The kernel K(x1, x2) (x2 = None: K(x1, x1)) as {key: tensor}, one per block kind in
    ``keys`` (TOTAL, or the parameter names), each in the mode's layout (see ``_factors``)."""
    symmetric = x2 is None
    right_x = x1 if symmetric else x2
    shape = {"trace": (x1.shape[0], right_x.shape[0]),
             "diagonal": (x1.shape[0], right_x.shape[0], k),
             "full": (x1.shape[0], right_x.shape[0], k, k)}[method.mode]
    result = {key: x1.new_empty(shape) for key in keys}
    outs = slices(k, plan.outputs)
    for s, out_left in enumerate(outs):
        for out_right in (outs if method.mode == "full" else (out_left,)):
            for panel in slices(right_x.shape[0], plan.panel):
                right = method.features(right_x[panel], out_right)
                for rows, cols, left, right_part in _row_blocks(
                        method, x1, plan.rows, (panel, right), (out_left, out_right), symmetric):
                    where = (rows, cols, out_left, out_right)[:len(shape)]
                    method.contract(left, right_part, {key: block[where]
                                                       for key, block in result.items()},
                                    add=method.mode == "trace" and s > 0,
                                    square=right_part is left)
    if symmetric:
        _mirror(result, slices(x1.shape[0], plan.rows), method.mode)
    check_finite("the kernel", *result.values())
    return result


def check_finite(what: str, *tensors: torch.Tensor) -> None:
    """Raise unless the tensors (``what`` was computed) are finite: the sum of one is finite
    unless an entry is not (or, rarely, they overflow when added, which the exact test rules out).
    """
    for t in tensors:
        if bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all()):
            continue
        remedy = "" if t.dtype == torch.float64 else ", pass float64 points (x.double())"
        raise WidenetError(f"{what} has NaN or inf entries in {t.dtype}: the model's derivatives "
                           "at some points, or their products, are not finite in it (points of "
                           f"huge norm overflow); rescale the points{remedy} or check the model "
                           "there")


def _row_blocks(method: BlockMethod, x1: torch.Tensor, size: int, panel: tuple[slice, object],
                outs: tuple[slice, slice], symmetric: bool) -> Iterator[tuple]:
    """(rows, cols, left features, right features) for each block of the row chunks against
    one panel; a square block's right features are its left ones (the same object).

    For a symmetric kernel, rows below the panel are skipped (they are mirrored) and only the
    columns from the rows' first point on are taken; when the outputs are the same, the left
    features of rows inside the panel are sliced out of the panel's, and their own square is a
    block of its own.
    """
    points, right = panel

    def part(start: int, stop: int) -> object:
        return method.select(right, slice(start - points.start, stop - points.start))

    for rows in slices(x1.shape[0], size):
        if symmetric and rows.start >= points.stop:
            return
        if symmetric and outs[0] == outs[1] and points.start <= rows.start:
            left = part(rows.start, rows.stop)
            yield rows, rows, left, left
            if rows.stop < points.stop:
                yield rows, slice(rows.stop, points.stop), left, part(rows.stop, points.stop)
            continue
        start = max(points.start, rows.start) if symmetric else points.start
        yield rows, slice(start, points.stop), method.features(x1[rows], outs[0]), part(
            start, points.stop)


_TRANSPOSED = {"trace": (1, 0), "diagonal": (1, 0, 2), "full": (1, 0, 3, 2)}


def _mirror(result: dict[str, torch.Tensor], chunks: list[slice], mode: str) -> None:
    """Complete a symmetric kernel of which each row chunk holds the columns from its own first
    point on: K(x_i, x_j)_ab = K(x_j, x_i)_ba. The square of a chunk's own points is made exactly
    symmetric ("trace": its lower triangle, all that a square block need hold, copied onto the
    upper one; otherwise the mean of it and its transpose), the columns after it are copied
    transposed below it."""
    axes = _TRANSPOSED[mode]
    for block in result.values():
        for rows in chunks:
            square = block[rows, rows]
            if mode == "trace":
                mirror_lower_(square)
            else:
                square.copy_((square + square.permute(axes)) / 2)
            others = slice(rows.stop, block.shape[0])
            block[others, rows] = block[rows, others].permute(axes)
