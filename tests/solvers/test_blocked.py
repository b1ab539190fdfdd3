"""Blocked kernels: products equal the dense ones in float64, blocks come in order, once per
pass, from files read without loading them, and bad kernels are refused."""

from __future__ import annotations

import os
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch

from widenet.data import sphere_points
from widenet.errors import WidenetError
from widenet.kernels.empirical import empirical_ntk
from widenet.kernels.infinite import infinite_kernels
from widenet.solvers.blocked import BlockedKernel

from .conftest import InlineEngine, assert_product, relu_net


def _kernel(n: int = 50) -> torch.Tensor:
    return infinite_kernels(relu_net(4, 3), sphere_points(n, 4)).ntk


def _right(rows: int, k: int = 3) -> torch.Tensor:
    return torch.randn(rows, k, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


@pytest.mark.parametrize("block_rows", [1, 7, 50, 1000])
def test_products_equal_the_dense_product(tmp_path: Path, block_rows: int) -> None:
    matrix = _kernel()
    np.save(tmp_path / "k.npy", matrix.numpy())
    v = _right(50)
    kernels = [BlockedKernel(matrix, block_rows=block_rows),
               BlockedKernel(matrix.numpy(), block_rows=block_rows),
               BlockedKernel.open(tmp_path / "k.npy", block_rows=block_rows),
               BlockedKernel.from_function(lambda index: matrix[index], (50, 50),
                                           block_rows=block_rows)]
    for kernel in kernels:
        assert_product(kernel.matmul(v), matrix, v)


def test_a_float32_file_multiplies_in_float64(tmp_path: Path) -> None:
    stored = _kernel().numpy().astype(np.float32)
    np.save(tmp_path / "k.npy", stored)
    v = _right(50)
    exact = torch.from_numpy(stored.astype(np.float64)) @ v
    product = BlockedKernel.open(tmp_path / "k.npy", block_rows=8).matmul(v)
    assert_product(product, torch.from_numpy(stored), v)
    float32 = torch.from_numpy(stored) @ v.float()
    assert (float32.double() - exact).abs().max() > 1e3 * (product - exact).abs().max()


def test_a_pass_reads_every_block_once_in_order() -> None:
    matrix, calls = _kernel(), []

    def rows(index: np.ndarray) -> torch.Tensor:
        calls.append(index.copy())
        return matrix[index]

    BlockedKernel.from_function(rows, (50, 50), block_rows=12).matmul(_right(50))
    assert [list(c) for c in calls] == [list(range(s, min(s + 12, 50))) for s in range(0, 50, 12)]


def test_chosen_rows_are_computed_block_rows_at_a_time_in_order() -> None:
    matrix, calls = _kernel(), []

    def rows(index: np.ndarray) -> torch.Tensor:
        calls.append(list(index))
        return matrix[index]

    kernel = BlockedKernel.from_function(rows, (50, 50), block_rows=4)
    index = np.array([40, 3, 17, 8, 29, 11, 0, 45, 22])
    torch.testing.assert_close(kernel.take(index), matrix[index], rtol=0, atol=0)
    assert calls == [[0, 3, 8, 11], [17, 22, 29, 40], [45]]
    calls.clear()
    kernel.part(range(10, 50), range(50)).take(np.array([12, 1, 7]))
    assert calls == [[11, 17, 22]]


def test_a_file_from_kernel_to_disk_is_read_in_blocks_never_whole(
        disk_kernel: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[tuple[int, int]] = []
    real = os.preadv

    def preadv(fd: int, buffers: list[memoryview], offset: int) -> int:
        reads.append((offset, len(buffers[0])))
        return real(fd, buffers, offset)

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the kernel file was loaded or mapped whole")

    monkeypatch.setattr(os, "preadv", preadv)
    monkeypatch.setattr(np, "load", refuse)
    monkeypatch.setattr(np, "memmap", refuse)
    kernel = BlockedKernel.open(disk_kernel["path"], block_rows=25)
    v = _right(120)
    product = kernel.matmul(v)
    assert max(size for _, size in reads) <= 25 * 120 * 8
    assert sum(size for _, size in reads) == 120 * 120 * 8
    ordered = sorted(reads)  # worker threads may interleave their reads: each byte once
    assert all(a + size == b for (a, size), (b, _) in pairwise(ordered))
    assert_product(product, disk_kernel["ntk"], v)


class OneBlockThenCtrlC(InlineEngine):
    """Runs the first job, then stops as Ctrl-C would."""

    def run(self, jobs: list, on_result) -> None:
        super().run(jobs[:1], on_result)
        raise KeyboardInterrupt


def test_an_unfinished_kernel_file_is_refused_until_it_is_finished(tmp_path: Path) -> None:
    from widenet.sweeps.kernel import kernel_to_disk

    net, x, path = relu_net(3, 2), sphere_points(30, 3, seed=5), tmp_path / "k.npy"
    with pytest.raises(KeyboardInterrupt):
        kernel_to_disk(net, x, path, block=10, engine=OneBlockThenCtrlC())
    with pytest.raises(WidenetError, match=r"k\.npy is an unfinished kernel .* run the `widenet "
                                           r"kernel` command that made it again"):
        BlockedKernel.open(path)
    kernel_to_disk(net, x, path, block=10, engine=InlineEngine())  # resumes and finishes
    assert_product(BlockedKernel.open(path).matmul(_right(30)), infinite_kernels(net, x).ntk,
                   _right(30))


def test_take_and_part_give_the_rows_and_sub_matrices(tmp_path: Path) -> None:
    matrix = _kernel()
    np.save(tmp_path / "k.npy", matrix.numpy())
    for kernel in (BlockedKernel(matrix), BlockedKernel.open(tmp_path / "k.npy")):
        index = np.array([31, 2, 17])
        torch.testing.assert_close(kernel.take(index), matrix[index], rtol=0, atol=0)
        part = kernel.part(range(10, 30), range(5, 45))
        assert part.shape == (20, 40)
        v = _right(40)
        assert_product(part.matmul(v), matrix[10:30, 5:45], v)
        torch.testing.assert_close(part.take(np.array([3, 0])), matrix[[13, 10], 5:45])


def test_on_demand_rows_of_a_net_are_its_kernel() -> None:
    net, x, x2 = relu_net(4, 3), sphere_points(30, 4), sphere_points(9, 4, seed=1)
    reference = infinite_kernels(net, x, x2)
    for kind, exact in (("ntk", reference.ntk), ("nngp", reference.nngp)):
        kernel = BlockedKernel.from_net(net, x, x2, kind=kind, block_rows=7)
        assert kernel.shape == (30, 9)
        v = _right(9)
        assert_product(kernel.matmul(v), exact, v)


def test_on_demand_rows_of_a_net_empirical_ntk() -> None:
    """kind="empirical": the rows of empirical_ntk(...).ntk (the call failed on the Kernels
    object itself, not a tensor, before the fix)."""
    net, x, x2 = relu_net(4, 2), sphere_points(30, 4), sphere_points(9, 4, seed=1)
    for columns in (None, x2):
        kernel = BlockedKernel.from_net(net, x, columns, kind="empirical", block_rows=7)
        exact = empirical_ntk(net, x, x if columns is None else columns).ntk
        v = _right(exact.shape[1])
        assert_product(kernel.matmul(v), exact, v)
        torch.testing.assert_close(kernel.take(np.array([20, 3])), exact[[20, 3]], rtol=1e-13,
                                   atol=0)


def test_bad_kernels_are_refused(tmp_path: Path) -> None:
    with pytest.raises(WidenetError, match="does not exist"):
        BlockedKernel.open(tmp_path / "missing.npy")
    with pytest.raises(WidenetError, match=r"must end in \.npy"):
        BlockedKernel.open(tmp_path / "k.txt")
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2)))
    with pytest.raises(WidenetError, match="2-D float32 or float64"):
        BlockedKernel.open(tmp_path / "cube.npy")
    np.save(tmp_path / "ints.npy", np.zeros((3, 3), dtype=np.int64))
    with pytest.raises(WidenetError, match="2-D float32 or float64"):
        BlockedKernel.open(tmp_path / "ints.npy")
    for shape in [(0, 0), (3, 0), (0, 3)]:
        np.save(tmp_path / "empty.npy", np.zeros(shape))
        with pytest.raises(WidenetError, match="non-empty 2-D float32 or float64"):
            BlockedKernel.open(tmp_path / "empty.npy")
    np.save(tmp_path / "short.npy", np.zeros((30, 30)))
    with (tmp_path / "short.npy").open("r+b") as file:
        file.truncate(500)
    with pytest.raises(WidenetError, match="cut short"):
        BlockedKernel.open(tmp_path / "short.npy")
    (tmp_path / "text.npy").write_text("not an array")
    with pytest.raises(WidenetError, match=r"cannot read .* as a \.npy"):
        BlockedKernel.open(tmp_path / "text.npy")
    with pytest.raises(WidenetError, match="2-D"):
        BlockedKernel(torch.zeros(3))
    with pytest.raises(WidenetError, match="floating-point"):
        BlockedKernel(np.zeros((3, 3), dtype=np.int32))
    with pytest.raises(WidenetError, match="block_rows"):
        BlockedKernel(torch.zeros(3, 3), block_rows=0)
    nan = torch.eye(4, dtype=torch.float64)
    nan[2, 1] = float("nan")
    with pytest.raises(WidenetError, match=r"not finite in rows 2\.\.3"):
        BlockedKernel(nan, block_rows=2).matmul(torch.ones(4, 1, dtype=torch.float64))
    wrong = BlockedKernel.from_function(lambda index: torch.zeros(len(index), 2), (4, 3))
    with pytest.raises(WidenetError, match=r"shape \(4, 3\)"):
        wrong.matmul(torch.ones(3, 1, dtype=torch.float64))
    with pytest.raises(WidenetError, match="range"):
        BlockedKernel(torch.eye(4)).part(range(2, 6), range(4))


@pytest.mark.parametrize("index", [[7], [-1], [[0, 1]]])
def test_rows_outside_the_kernel_or_its_part_are_refused(index: list) -> None:
    """take() of a 7-row part is refused rows 7 and -1 (they are rows of its parent)."""
    part = BlockedKernel(_kernel()).part(range(3, 10), range(0, 5))
    with pytest.raises(WidenetError, match=r"row numbers must be a 1-D list within 0\.\.6"):
        part.take(np.array(index))


def test_the_eps_of_a_row_function_is_that_of_its_rows_or_the_one_given() -> None:
    """eps is the relative round-off of the values (float64's for every row function before
    the fix): that of the rows' dtype, found from one row, or given; from_net's empirical NTK
    has the dtype of x."""
    matrix = _kernel(20)
    calls = []

    def rows(index: np.ndarray) -> torch.Tensor:
        calls.append(list(index))
        return matrix[index].half()

    kernel = BlockedKernel.from_function(rows, (20, 20))
    assert calls == []  # nothing is computed before eps is needed
    assert kernel.eps == torch.finfo(torch.float16).eps
    assert kernel.part(range(5, 9), range(3, 20)).eps == kernel.eps
    assert calls == [[0]]  # one row, once, shared with the parts
    given = BlockedKernel.from_function(lambda index: matrix[index], (20, 20), eps=1e-7)
    assert given.eps == 1e-7
    assert given.part(range(3), range(3)).eps == 1e-7
    assert BlockedKernel.from_function(lambda index: matrix[index], (20, 20)).eps == (
        torch.finfo(torch.float64).eps)
    net, x = relu_net(4, 2).float(), sphere_points(10, 4).float()
    assert BlockedKernel.from_net(net, x, kind="empirical").eps == torch.finfo(
        torch.float32).eps
    assert BlockedKernel.from_net(net, x).eps == torch.finfo(torch.float64).eps
    for bad in (0.0, -1e-7, 1.0, float("nan"), "1e-7"):
        with pytest.raises(WidenetError, match="eps"):
            BlockedKernel.from_function(lambda index: matrix[index], (20, 20), eps=bad)
    brain = BlockedKernel.from_function(lambda index: matrix[index].bfloat16(), (20, 20))
    with pytest.raises(WidenetError, match=r"bfloat16 .* eps=torch\.finfo\(torch\.bfloat16\)"):
        brain.take(np.array([1]))


def test_kernels_and_their_parts_travel_by_cloudpickle() -> None:
    """A kernel in memory or of a row function (and its parts) is sent to another process or
    a Ray task by cloudpickle, with its eps (the lock of its lazily found eps could not be
    pickled before the fix); the copy gives the same products."""
    cloudpickle = pytest.importorskip("cloudpickle")
    matrix = _kernel(20)
    v = torch.ones(20, 2, dtype=torch.float64)
    for kernel in (BlockedKernel(matrix.float(), block_rows=6),
                   BlockedKernel.from_function(lambda index: matrix[index].float(), (20, 20),
                                               block_rows=6)):
        for original in (kernel, kernel.part(range(3, 20), range(20))):
            copy = cloudpickle.loads(cloudpickle.dumps(original))
            assert copy.eps == original.eps == torch.finfo(torch.float32).eps
            assert torch.equal(copy.matmul(v[:original.shape[1]]),
                               original.matmul(v[:original.shape[1]]))


@pytest.mark.parametrize("module", ["pickle", "cloudpickle"])
def test_a_kernel_file_and_its_parts_pickle_as_the_path_not_the_data(
        module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel read from a file (as ``widenet kernel`` writes it) is sent to a Ray task or
    another process by pickle: its per-thread read buffers could not be pickled before the
    fix. The copy holds the file's description, not its values, and reads the file where it
    runs, also from another working folder (the path is kept absolute, so the original too
    reads it after a change of folder); it gives the same products and rows."""
    pickler = pytest.importorskip(module)
    matrix = _kernel(200)
    np.save(tmp_path / "k.npy", matrix.float().numpy())
    monkeypatch.chdir(tmp_path)
    kernel = BlockedKernel.open("k.npy", block_rows=7)
    v = torch.linspace(-1, 1, 400, dtype=torch.float64).reshape(200, 2)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for original in (kernel, kernel.part(range(30, 200), range(10, 150))):
        payload = pickler.dumps(original)
        assert len(payload) < 5_000 < 4 * 200 * 200  # not the 160 kB of float32 values
        monkeypatch.chdir(elsewhere)
        copy = pickler.loads(payload)
        right = v[:original.shape[1]]
        assert copy.shape == original.shape
        assert copy.eps == original.eps == torch.finfo(torch.float32).eps
        assert torch.equal(copy.matmul(right), original.matmul(right))
        assert torch.equal(copy.take(np.array([5, 0, 9])), original.take(np.array([5, 0, 9])))
        monkeypatch.chdir(tmp_path)


def test_a_kernel_file_gone_where_a_copy_reads_it_is_named(tmp_path: Path) -> None:
    """A pickled kernel read where its file is not (another machine, or deleted) says so."""
    import pickle

    np.save(tmp_path / "k.npy", _kernel(20).numpy())
    payload = pickle.dumps(BlockedKernel.open(tmp_path / "k.npy"))
    (tmp_path / "k.npy").unlink()
    copy = pickle.loads(payload)
    with pytest.raises(WidenetError, match=r"kernel file .*k\.npy does not exist"):
        copy.matmul(torch.ones(20, 1, dtype=torch.float64))



@pytest.mark.parametrize("replacement", ["float64", "bigger", "cut"])
def test_a_kernel_file_rewritten_after_opening_is_refused_not_misread(
        replacement: str, tmp_path: Path) -> None:
    """The kernel (and a pickled copy) reads its file at each block with the header read when
    it was opened: a file rewritten since in float64 or with more rows was read as the old
    float32 rows (wrong values, no error), and one cut short gave its leading rows."""
    import pickle

    matrix = _kernel(40).float().numpy()
    path = tmp_path / "k.npy"
    np.save(path, matrix)
    kernel = BlockedKernel.open(path, block_rows=7)
    copy = pickle.loads(pickle.dumps(kernel))
    if replacement == "float64":
        np.save(path, matrix.astype(np.float64))
    elif replacement == "bigger":
        np.save(path, _kernel(60).float().numpy())
    else:
        os.truncate(path, path.stat().st_size - 4 * 40 * 20)
    for reader in (kernel, copy):
        with pytest.raises(WidenetError, match=r"k\.npy changed since the kernel was opened"):
            reader.matmul(torch.ones(40, 1, dtype=torch.float64))
        with pytest.raises(WidenetError, match=r"k\.npy changed since the kernel was opened"):
            reader.take(np.array([0, 1]))

def test_a_part_of_a_net_kernel_computes_only_its_columns(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """part(rows, cols) of from_net computes K(x[block], x2[cols]), not the whole rows (it
    computed every column and dropped those outside the part before the fix); the values are
    the dense ones."""
    import widenet.kernels.infinite as infinite

    net, x = relu_net(4, 3), sphere_points(40, 4, seed=2)
    dense = infinite_kernels(net, x).ntk
    widths = []
    real = infinite.infinite_kernels

    def recording(net: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor, **options):
        widths.append(x2.shape[0])
        return real(net, x1, x2, **options)

    monkeypatch.setattr(infinite, "infinite_kernels", recording)
    kernel = BlockedKernel.from_net(net, x, block_rows=8)
    part = kernel.part(range(30, 40), range(30)).part(range(2, 10), range(5, 25))
    v = _right(20)
    assert_product(part.matmul(v), dense[32:40, 5:25], v)
    torch.testing.assert_close(part.take(np.array([4, 1])), dense[[36, 33], 5:25],
                               rtol=1e-13, atol=0)
    assert widths == [20, 20]


def test_a_file_longer_than_its_header_says_is_refused_and_big_endian_is_read(
        tmp_path: Path) -> None:
    """A header that does not describe the data (float32 claimed for float64 values, or bytes
    after the matrix) was read as garbage or silently cut (before the fix); a big-endian file
    was refused, and is now read (its values converted exactly)."""
    matrix = _kernel(12)
    np.save(tmp_path / "k.npy", matrix.numpy())
    raw = (tmp_path / "k.npy").read_bytes()
    (tmp_path / "wrong.npy").write_bytes(raw.replace(b"'descr': '<f8'", b"'descr': '<f4'"))
    with pytest.raises(WidenetError, match=r"longer than its header says \(1280 bytes, a "
                                           r"\(12, 12\) float32 matrix takes 704\)"):
        BlockedKernel.open(tmp_path / "wrong.npy")
    (tmp_path / "junk.npy").write_bytes(raw + b"x")
    with pytest.raises(WidenetError, match="longer than its header says"):
        BlockedKernel.open(tmp_path / "junk.npy")
    for dtype in (">f8", ">f4"):
        np.save(tmp_path / "big.npy", matrix.numpy().astype(dtype))
        kernel = BlockedKernel.open(tmp_path / "big.npy", block_rows=5)
        stored = torch.from_numpy(matrix.numpy().astype(dtype).astype(np.float64))
        assert kernel.eps == np.finfo(dtype).eps
        assert_product(kernel.matmul(_right(12)), stored, _right(12))
        torch.testing.assert_close(kernel.part(range(3, 9), range(2, 7)).take(np.array([4, 0])),
                                   stored[[7, 3], 2:7], rtol=0, atol=0)


def test_numpy_integers_are_sizes_and_fractional_row_numbers_are_refused() -> None:
    """numpy integers for shape and block_rows were refused as not integers; row numbers 1.5
    were truncated to 1 (before the fix)."""
    matrix = _kernel(10)
    kernel = BlockedKernel.from_function(lambda index: matrix[index], (np.int64(10), 10),
                                         block_rows=np.int32(4))
    assert kernel.shape == (10, 10)
    assert kernel.block_rows == 4
    assert type(kernel.block_rows) is int
    with pytest.raises(WidenetError, match="row numbers must be integers, got float64"):
        kernel.take(np.array([1.5, 3.0]))
    torch.testing.assert_close(kernel.take(np.array([], dtype=float)),
                               torch.empty(0, 10, dtype=torch.float64))
