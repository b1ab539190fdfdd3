"""A kernel matrix that is never held whole: read from a ``.npy`` file or computed, rows at a time.

A :class:`BlockedKernel` K of shape (rows, cols) gives its rows in blocks, in order
(:meth:`BlockedKernel.blocks`), a chosen set of rows (:meth:`BlockedKernel.take`) and the
product K V for a (cols, k) matrix V (:meth:`BlockedKernel.matmul`), each block converted to
float64 once and dropped before the next is read (by the same thread: a product may run in
several, each with its own block). Its rows come from

- a ``.npy`` file (:meth:`BlockedKernel.open`, the format ``widenet kernel`` and
  :func:`widenet.sweeps.kernel.kernel_to_disk` write): blocks are read with ``pread`` into one
  reused buffer per thread, so the process holds a block per thread, not the pages of a
  memory map;
- an array in memory (numpy, ``np.memmap`` or torch);
- a function of row indices (:meth:`BlockedKernel.from_function`), for instance the
  infinite-width kernel of a net computed on demand (:meth:`BlockedKernel.from_net`); with
  ``ray=True`` its products K V run as Ray tasks, each computing its block where it runs and
  returning only that block's rows of K V, and its chosen rows (:meth:`BlockedKernel.take`)
  are computed by Ray tasks too (:mod:`widenet.solvers.ray_products`); so are those of its
  parts (:meth:`BlockedKernel.part`).

Products multiply each block in float64 (:mod:`widenet.solvers.products`: a float32 block is
converted a few rows at a time into one reused buffer, still in cache when the product reads
them): the arithmetic is float64 whatever the stored dtype. Memory is one block of
``block_rows`` x cols in the stored dtype plus that chunk. The default block is about
``BLOCK_BYTES`` (64 MiB) of float64 for arrays and row functions, but ``FILE_BLOCK_BYTES``
(4 MiB) of the stored dtype for a file: a block read with ``pread`` is then still in the
processor's cache when it is converted (docs/benchmarks.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from numbers import Integral
from pathlib import Path

import numpy as np
import torch

from widenet.errors import WidenetError
from widenet.solvers.npy_rows import NpyRows
from widenet.solvers.products import multiply_blocks
from widenet.solvers.ray_products import ray_matmul, ray_take
from widenet.validation import finite_real

RowFunction = Callable[[np.ndarray], torch.Tensor]
"""Row indices (a sorted 1-D int64 array) -> the kernel's rows K[index, :], (len(index), cols),
a float16, float32 or float64 tensor."""
ColumnRows = Callable[[np.ndarray, range], np.ndarray]
"""(sorted row indices, a range of columns) -> K[index, cols] as a numpy array: the row
function of a kernel's source (an array, a file, a function), shared by its parts."""
ColumnBlock = Callable[[int, int, range], np.ndarray]
"""(start, stop, a range of columns) -> K[start:stop, cols], possibly a reused buffer."""

BLOCK_BYTES = 2**26
FILE_BLOCK_BYTES = 2**22
KINDS = ("ntk", "nngp", "empirical")


class BlockedKernel:
    """A (rows, cols) kernel matrix served a block of rows at a time, on the CPU."""

    def __init__(self, matrix: np.ndarray | torch.Tensor, *, block_rows: int | None = None):
        """Wrap an array in memory (or an ``np.memmap``) of shape (rows, cols)."""
        if not isinstance(matrix, np.ndarray | torch.Tensor) or matrix.ndim != 2:
            raise WidenetError("the kernel must be a 2-D numpy array or torch tensor, got "
                               f"{_describe(matrix)}")
        if isinstance(matrix, torch.Tensor):
            if matrix.device.type == "meta":
                raise WidenetError("the kernel is a meta tensor, which holds no values")
            if not matrix.dtype.is_floating_point:
                raise WidenetError(f"the kernel must hold floating-point values, got "
                                   f"{matrix.dtype}")
            eps = torch.finfo(matrix.dtype).eps
            matrix = matrix.detach().to("cpu", torch.float64).numpy()
        elif not np.issubdtype(matrix.dtype, np.floating):
            raise WidenetError(f"the kernel must hold floating-point values, got {matrix.dtype}")
        else:
            eps = float(np.finfo(matrix.dtype).eps)
        self._setup(tuple(matrix.shape),
                    lambda start, stop, cols: matrix[start:stop, cols.start:cols.stop],
                    lambda index, cols: matrix[index, cols.start:cols.stop], block_rows, eps,
                    threads=True)

    @classmethod
    def open(cls, path: str | Path, *, block_rows: int | None = None) -> BlockedKernel:
        """The kernel in the ``.npy`` file ``path`` (2-D, float32 or float64 of either byte
        order, C order, exactly as long as its header says), read ``block_rows`` rows at a
        time (default: about ``FILE_BLOCK_BYTES`` of the file)."""
        reader = NpyRows(Path(path))
        if block_rows is None:
            block_rows = max(1, FILE_BLOCK_BYTES // reader.row_bytes)
        kernel = cls.__new__(cls)
        kernel._setup(reader.shape, reader.fetch, reader.take, block_rows,
                      float(np.finfo(reader.dtype).eps), threads=True)
        return kernel

    @classmethod
    def from_function(cls, rows: RowFunction, shape: tuple[int, int], *,
                      block_rows: int | None = None, ray: bool = False,
                      eps: float | None = None) -> BlockedKernel:
        """The kernel whose rows ``rows(index)`` computes (see :data:`RowFunction`). With
        ``ray=True``, :meth:`matmul` computes each block in a Ray task and brings back only its
        product, and :meth:`take` computes its rows in Ray tasks (``rows`` must then be
        picklable by Ray: a closure over tensors is); so do the kernel's parts.

        ``eps``: the relative round-off of the values (:attr:`eps`), for instance
        ``torch.finfo(torch.float32).eps`` for rows computed in float32 and returned in
        float64. By default it is the machine epsilon of the dtype of the rows ``rows``
        returns, found from one row (row 0, computed the first time :attr:`eps` is read, on
        Ray with ``ray=True``)."""
        if (not isinstance(shape, tuple | list) or len(shape) != 2
                or not all(isinstance(s, Integral) and not isinstance(s, bool | np.bool_)
                           and s > 0 for s in shape)):
            raise WidenetError(f"shape must be two positive integers, got {shape!r}")
        shape = (int(shape[0]), int(shape[1]))
        return cls._from_rows(_CheckedRows(rows, shape[1]), shape, block_rows, ray, eps)

    @classmethod
    def from_net(cls, net: torch.nn.Module, x: torch.Tensor, x2: torch.Tensor | None = None, *,
                 kind: str = "ntk", block_rows: int | None = None, ray: bool = False
                 ) -> BlockedKernel:
        """K(x, x2) (x2 = x by default) of ``net``, computed block by block when asked for:
        ``ntk`` or ``nngp`` of the infinite-width limit (in float64), or the ``empirical``
        NTK (trace over outputs, in the dtype of ``x``, which sets :attr:`eps`). Every pass
        over the kernel computes it again; with ``ray=True`` each block of a product in a Ray
        task (:meth:`from_function`). A block of a part (:meth:`part`) computes the kernel
        of the part's columns only."""
        if kind not in KINDS:
            raise WidenetError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[0] == 0:
            raise WidenetError(f"x must be a non-empty (n, d) tensor, got {_describe(x)}")
        columns = x if x2 is None else x2
        if not isinstance(columns, torch.Tensor) or columns.ndim != 2 or columns.shape[0] == 0:
            raise WidenetError(f"x2 must be a non-empty (n2, d) tensor, got {_describe(x2)}")

        def rows(index: np.ndarray, cols: range) -> np.ndarray:
            from widenet.kernels.empirical import empirical_ntk
            from widenet.kernels.infinite import infinite_kernels

            points = x[torch.as_tensor(index, device=x.device)]
            others = columns[cols.start:cols.stop]
            if kind == "empirical":
                values = empirical_ntk(net, points, others).ntk
            else:
                kernels = infinite_kernels(net, points, others, dtype=torch.float64)
                values = kernels.ntk if kind == "ntk" else kernels.nngp
            return values.detach().to("cpu", torch.float64).numpy()

        eps = (torch.finfo(x.dtype).eps if kind == "empirical" and x.dtype.is_floating_point
               else torch.finfo(torch.float64).eps)
        return cls._from_rows(rows, (x.shape[0], columns.shape[0]), block_rows, ray, eps)

    @classmethod
    def _from_rows(cls, rows: ColumnRows, shape: tuple[int, int], block_rows: int | None,
                   ray: bool, eps: float | None) -> BlockedKernel:
        """The kernel of the row function ``rows(index, cols)`` (:data:`ColumnRows`);
        ``eps`` None: found from the dtype of one row (:meth:`from_function`)."""
        remote = _flag(ray, "ray")
        if eps is not None:
            eps = finite_real(eps, "eps", minimum=0.0, strict=True)
            if eps >= 1:
                raise WidenetError(f"eps is the relative round-off of the kernel's values, "
                                   f"below 1 (float32's is {torch.finfo(torch.float32).eps:.3g}"
                                   f"), got {eps!r}")
        kernel = cls.__new__(cls)
        kernel._setup(tuple(shape),
                      lambda start, stop, cols: rows(np.arange(start, stop), cols), rows,
                      block_rows, eps, remote=remote)
        return kernel

    def _setup(self, shape: tuple[int, int], fetch: ColumnBlock, take: ColumnRows,
               block_rows: int | None, eps: float | None, remote: bool = False,
               threads: bool = False) -> None:
        """``fetch(start, stop, cols)``: K[start:stop, cols]; ``take(index, cols)``:
        K[index, cols] for a sorted index (``cols`` a range of columns); ``eps``: the machine
        epsilon of the stored values (None: that of the dtype of a row, found when first
        needed); ``remote``: ``take`` is a picklable row function that :meth:`matmul` and
        :meth:`take` run in Ray tasks; ``threads``: ``fetch`` is safe to call from several
        threads at once (an array, a file), so :meth:`matmul` may run in several."""
        if shape[0] == 0 or shape[1] == 0:
            raise WidenetError(f"the kernel is empty (shape {shape})")
        if block_rows is None:
            block_rows = max(1, BLOCK_BYTES // (8 * shape[1]))
        if (isinstance(block_rows, bool | np.bool_) or not isinstance(block_rows, Integral)
                or block_rows < 1):
            raise WidenetError(f"block_rows must be a positive integer, got {block_rows!r}")
        block_rows = int(block_rows)
        self.shape = shape
        self.block_rows = min(block_rows, shape[0])
        self._precision = _Precision(eps)
        self._source_fetch, self._source_take = fetch, take
        self._first_row, self._cols = 0, range(shape[1])
        self._remote, self._threads = remote, threads

    @property
    def eps(self) -> float:
        """The machine epsilon of the dtype the values are stored in (float32 for a float32
        file, array or tensor; for a row function, see :meth:`from_function`): the relative
        round-off of K."""
        return self._precision.value(lambda: self._rows(np.zeros(1, dtype=np.int64)))

    def part(self, rows: range, cols: range) -> BlockedKernel:
        """The sub-matrix K[rows, cols] (contiguous ranges, step 1), read through this kernel:
        for instance the train-by-train and test-by-train parts of one kernel of all points.
        It has this kernel's ``block_rows`` and ``eps`` (each of its blocks reads that many
        rows of this kernel). Its blocks and rows hold only its columns: a row function of
        :meth:`from_net` computes only those, a file's blocks are read whole and cut, an
        array is sliced, and a function of :meth:`from_function` computes whole rows (it
        cannot do less). A part of a Ray kernel (``ray=True``) runs its products and
        :meth:`take` on Ray: each task computes the part's rows of a block, keeps its
        columns and multiplies them where it runs."""
        for name, span, size in (("rows", rows, self.shape[0]), ("cols", cols, self.shape[1])):
            if (not isinstance(span, range) or span.step != 1 or len(span) == 0
                    or span.start < 0 or span.stop > size):
                raise WidenetError(f"{name} must be a non-empty range within 0..{size}, got "
                                   f"{span!r}")
        part = BlockedKernel.__new__(BlockedKernel)
        part.__dict__.update(self.__dict__)
        part.shape = (len(rows), len(cols))
        part._first_row = self._first_row + rows.start
        part._cols = self._cols[cols.start:cols.stop]
        return part

    def _rows(self, index: np.ndarray) -> np.ndarray:
        """K[index, :] (sorted index), computed here or, for a Ray kernel, in a Ray task."""
        function = self._row_function()
        return ray_take(function, [index])[0] if self._remote else function(index)

    def _row_function(self) -> _PartRows:
        """index -> K[index, :] through the source's row function (picklable for Ray)."""
        return _PartRows(self._source_take, self._first_row, self._cols)

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, K[first row:first row + block_rows]) for each block, in order, in the
        stored dtype; a block may be a buffer that the next block overwrites."""
        for start in range(0, self.shape[0], self.block_rows):
            yield start, self._fetch(start, min(start + self.block_rows, self.shape[0]))

    def _fetch(self, start: int, stop: int) -> np.ndarray:
        """K[start:stop, :] of this kernel (or part), from the source's blocks."""
        return self._source_fetch(self._first_row + start, self._first_row + stop, self._cols)

    def take(self, index: np.ndarray) -> torch.Tensor:
        """The rows K[index, :] (index: distinct row numbers), float64, in the order of
        ``index``. They are computed (or read) ``block_rows`` at a time in increasing order, on
        Ray one task per ``block_rows`` of them (see :meth:`from_function`): the same batches,
        hence the same bits, in process and on Ray."""
        given = np.asarray(index)
        if given.size and given.dtype.kind not in "iu":
            raise WidenetError(f"row numbers must be integers, got {given.dtype}")
        index = given.astype(np.int64)
        if index.ndim != 1 or (index.size and (index.min() < 0 or index.max() >= self.shape[0])):
            raise WidenetError(f"row numbers must be a 1-D list within 0..{self.shape[0] - 1}, "
                               f"got {index.size} of shape {index.shape}"
                               + (f" from {index.min()} to {index.max()}" if index.size else ""))
        order = np.argsort(index)
        batches = [index[order[start:start + self.block_rows]]
                   for start in range(0, max(len(index), 1), self.block_rows)]
        function = self._row_function()
        values = np.concatenate(ray_take(function, batches) if self._remote
                                else [function(batch) for batch in batches])
        return torch.from_numpy(np.asarray(values, dtype=np.float64)[np.argsort(order)])

    def matmul(self, v: torch.Tensor) -> torch.Tensor:
        """K V in float64 for V of shape (cols, k): one pass over the blocks, each read once.
        An array or a file is multiplied by ``torch.get_num_threads()`` worker threads, each
        taking the next block and multiplying it with one torch thread; a row function's
        blocks are computed in order, in this thread (:func:`~widenet.solvers.products.
        multiply_blocks`); on Ray, one task per block (see :meth:`from_function`). Raises if
        V or a block holds a value that is not finite."""
        if not isinstance(v, torch.Tensor) or v.ndim != 2 or v.shape[0] != self.shape[1]:
            raise WidenetError(f"V must be a tensor of shape ({self.shape[1]}, k) for the "
                               f"kernel's {self.shape[1]} columns, got {_describe(v)}")
        if not bool(torch.isfinite(v).all()):
            raise WidenetError("V contains NaN or inf values (the kernel's are checked block "
                               "by block)")
        right = v.detach().to("cpu", torch.float64).contiguous()
        if self._remote:
            return ray_matmul(self._row_function(), self.shape[0], self.block_rows, right)
        blocks = -(-self.shape[0] // self.block_rows)
        workers = min(torch.get_num_threads(), blocks) if self._threads else 1
        return multiply_blocks(self._fetch, self.shape[0], self.block_rows, right, workers)


class _Precision:
    """A kernel's eps, shared with its parts: given, or found from the dtype of one row the
    first time it is asked for."""

    def __init__(self, eps: float | None):
        self._eps = eps
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        """The eps without the lock (not picklable): a kernel is sent to processes or Ray
        tasks by cloudpickle."""
        return {"eps": self._eps}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["eps"])

    def value(self, one_row: Callable[[], np.ndarray]) -> float:
        with self._lock:
            if self._eps is None:
                self._eps = float(np.finfo(one_row().dtype).eps)
            return self._eps


class _CheckedRows:
    """A user's row function (:data:`RowFunction`) as a :data:`ColumnRows`: each result is
    checked to be a float16, float32 or float64 tensor of shape (len(index), cols) and given as
    a numpy array in its own dtype, cut to the columns asked for."""

    def __init__(self, rows: RowFunction, cols: int):
        self.rows, self.cols = rows, cols

    def __call__(self, index: np.ndarray, cols: range) -> np.ndarray:
        values = self.rows(index)
        if not isinstance(values, torch.Tensor) or tuple(values.shape) != (len(index),
                                                                            self.cols):
            raise WidenetError(f"the row function gave {_describe(values)} for "
                               f"{len(index)} rows; it must give a tensor of shape "
                               f"({len(index)}, {self.cols})")
        if values.dtype not in (torch.float16, torch.float32, torch.float64):
            raise WidenetError(
                f"the row function gave {values.dtype} values; it must give float16, float32 "
                "or float64 rows" + (" (return values.float() and pass "
                                     "eps=torch.finfo(torch.bfloat16).eps)"
                                     if values.dtype == torch.bfloat16 else ""))
        return values.detach()[:, cols.start:cols.stop].cpu().numpy()


class _PartRows:
    """index -> K[first + index, cols] for a source's row function ``take(index, cols)``: the
    rows of a kernel or of its part, the function that Ray tasks run."""

    def __init__(self, take: ColumnRows, first: int, cols: range):
        self.take, self.first, self.cols = take, first, cols

    def __call__(self, index: np.ndarray) -> np.ndarray:
        return self.take(index + self.first, self.cols)


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise WidenetError(f"{name} must be True or False, got {value!r}")
    return value


def _describe(value: object) -> str:
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__} of shape {tuple(shape)}" if shape is not None else (
        type(value).__name__)


