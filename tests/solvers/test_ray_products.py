"""Products on Ray (a local instance with 2 CPUs): each block computed and multiplied in a task
gives K V and the conjugate-gradient solve of the in-process kernel, to round-off; the parts of
a Ray kernel and its chosen rows are computed in tasks too, with the bits of the in-process
ones."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from widenet.data import sphere_points
from widenet.errors import WidenetError
from widenet.kernels.infinite import infinite_kernels
from widenet.solvers.blocked import BlockedKernel
from widenet.solvers.cg import conjugate_gradients
from widenet.solvers.fit import fit

from .conftest import assert_product, relu_net

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_products_and_solves_on_ray_equal_those_in_process(local_ray) -> None:
    net, x = relu_net(3, 4), sphere_points(60, 3, seed=7)
    dense = infinite_kernels(net, x).ntk
    here = BlockedKernel.from_net(net, x, block_rows=16)
    remote = BlockedKernel.from_net(net, x, block_rows=16, ray=True)
    v = torch.randn(60, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert_product(remote.matmul(v), dense, v)

    y = torch.nn.functional.one_hot(torch.arange(60) % 3, 3).double()
    expected = conjugate_gradients(here, y, ridge=1e-3, rank=20)
    solved = conjugate_gradients(remote, y, ridge=1e-3, rank=20)
    assert solved.converged
    assert solved.iterations == expected.iterations
    error = (solved.weights - expected.weights).norm() / expected.weights.norm()
    assert error <= 1e-12, float(error)


def _ntk_rows(net: torch.nn.Module, x: torch.Tensor, refuse_pid: int):
    """The NTK's rows K(x[index], x), refusing to run in the process ``refuse_pid``."""

    def rows(index: np.ndarray) -> torch.Tensor:
        if os.getpid() == refuse_pid:
            raise AssertionError("a row of the Ray kernel was computed in the calling process")
        return infinite_kernels(net, x[torch.as_tensor(index)], x).ntk

    return rows


@pytest.fixture
def one_thread():
    """One torch thread here, as in each Ray task (a task with num_cpus=1 runs one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_parts_of_a_ray_kernel_run_on_ray_with_the_bits_of_the_parts_in_process(
        local_ray, one_thread) -> None:
    net, x = relu_net(3, 4), sphere_points(70, 3, seed=3)
    dense = infinite_kernels(net, x).ntk
    remote = BlockedKernel.from_function(_ntk_rows(net, x, os.getpid()), (70, 70),
                                         block_rows=16, ray=True)
    here = BlockedKernel.from_function(_ntk_rows(net, x, -1), (70, 70), block_rows=16)
    with pytest.raises(AssertionError, match="calling process"):  # the guard works
        remote.part(range(50), range(50)).blocks().__next__()
    assert remote.part(range(50), range(50)).eps == torch.finfo(torch.float64).eps  # on Ray
    v = torch.randn(50, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for rows, cols in ((range(50), range(50)), (range(50, 70), range(50)),
                       (range(13, 45), range(7, 57))):
        kernel, reference = remote.part(rows, cols), here.part(rows, cols)
        assert kernel.block_rows == 16
        part_v = v[:len(cols)]
        product = kernel.matmul(part_v)
        assert torch.equal(product, reference.matmul(part_v))
        assert_product(product, dense[rows.start:rows.stop, cols.start:cols.stop], part_v)
    inner, inner_here = (k.part(range(50), range(50)).part(range(4, 40), range(9, 30))
                         for k in (remote, here))
    assert torch.equal(inner.matmul(v[:21]), inner_here.matmul(v[:21]))
    index = np.array([33, 2, 47, 19, 0, 25, 8, 41, 12, 30, 5, 49, 16, 38, 22, 44, 3, 27])
    rows_here = here.part(range(50), range(50)).take(index)
    assert torch.equal(remote.part(range(50), range(50)).take(index), rows_here)
    torch.testing.assert_close(rows_here, dense[index][:, :50], rtol=1e-13, atol=0)

    labels = torch.arange(70) % 3
    fits = [fit(k.part(range(50), range(50)), labels[:50], ridge=1e-3, rank=20,
                test_kernel=k.part(range(50, 70), range(50))) for k in (remote, here)]
    assert fits[0].converged
    assert fits[0].iterations == fits[1].iterations
    assert torch.equal(fits[0].weights, fits[1].weights)
    assert torch.equal(fits[0].test, fits[1].test)


@pytest.mark.slow
def test_a_block_that_is_not_finite_fails_the_product_naming_its_rows(local_ray) -> None:
    def rows(index: np.ndarray) -> torch.Tensor:
        values = torch.ones(len(index), 20, dtype=torch.float64)
        values[torch.as_tensor(index) == 13] = float("nan")
        return values

    kernel = BlockedKernel.from_function(rows, (20, 20), block_rows=8, ray=True)
    with pytest.raises(WidenetError, match=r"not finite in rows 8\.\.15"):
        kernel.matmul(torch.ones(20, 1, dtype=torch.float64))


def test_ray_must_be_a_flag() -> None:
    with pytest.raises(WidenetError, match="ray must be True or False"):
        BlockedKernel.from_function(lambda index: torch.zeros(len(index), 2), (2, 2), ray=1)


@pytest.mark.slow
def test_a_part_of_a_ray_net_kernel_gives_the_bits_of_the_part_in_process(
        local_ray, one_thread) -> None:
    """The tasks of a part of from_net(..., ray=True) compute the part's columns only, as the
    part in process does: the same bits."""
    net, x = relu_net(3, 3), sphere_points(50, 3, seed=8)
    parts = [BlockedKernel.from_net(net, x, block_rows=12, ray=ray_).part(range(30, 50),
                                                                        range(10, 40))
             for ray_ in (True, False)]
    v = torch.randn(30, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.equal(parts[0].matmul(v), parts[1].matmul(v))
    assert_product(parts[1].matmul(v), infinite_kernels(net, x).ntk[30:50, 10:40], v)
    assert torch.equal(parts[0].take(np.array([7, 2])), parts[1].take(np.array([7, 2])))
    assert parts[0].eps == torch.finfo(torch.float64).eps
