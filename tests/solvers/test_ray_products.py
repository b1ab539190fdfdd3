"""Products on Ray (a local instance with 2 CPUs): each block computed and multiplied in a task
gives K V and the conjugate-gradient solve of the in-process kernel, to round-off."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from widenet.data import sphere_points
from widenet.errors import WidenetError
from widenet.kernels.infinite import infinite_kernels
from widenet.solvers.blocked import BlockedKernel
from widenet.solvers.cg import conjugate_gradients

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
