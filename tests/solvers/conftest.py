"""Kernels for the solver tests: exact infinite-width NTKs of MLPs, in float64."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from widenet.data import sphere_points
from widenet.kernels.infinite import infinite_kernels
from widenet.models import MLP


def relu_net(dim: int, depth: int) -> MLP:
    return MLP(dim, [32] * depth, 1, "relu", seed=0, dtype=torch.float64)


@pytest.fixture(scope="session")
def ill_conditioned() -> dict[str, torch.Tensor]:
    """A deep ReLU NTK on 300 training and 40 test points of the sphere in d = 3:
    its spectrum decays fast (condition number about 6e3)."""
    net = relu_net(3, 8)
    x, x_test = sphere_points(300, 3, seed=0), sphere_points(40, 3, seed=1)
    labels = torch.randint(0, 3, (300,), generator=torch.Generator().manual_seed(2))
    return {"train": infinite_kernels(net, x).ntk, "cross": infinite_kernels(net, x_test, x).ntk,
            "labels": labels, "y": torch.nn.functional.one_hot(labels, 3).double(),
            "x": x, "x_test": x_test}


def float32_computed(n: int = 50) -> torch.Tensor:
    """A positive definite kernel (Gaussian + 1 + 0.1 I on n points of the sphere, so that
    float32 round-off cannot make it indefinite) computed in float32 and stored in float64:
    its upper triangle one float32 ulp above the lower one, K - K^T of the round-off that
    rows computed in float32 one block at a time give."""
    x = sphere_points(n, 3, seed=0)
    kernel = (torch.exp(-torch.cdist(x, x) ** 2) + 1.0
              + 0.1 * torch.eye(n, dtype=torch.float64)).float()
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool), 1)
    return torch.where(upper, torch.nextafter(kernel, torch.tensor(float("inf"))),
                       kernel).double()


def dense_solve(kernel: torch.Tensor, y: torch.Tensor, ridge: float) -> torch.Tensor:
    return torch.linalg.solve(kernel + ridge * torch.eye(kernel.shape[0], dtype=kernel.dtype), y)


def assert_product(product: torch.Tensor, matrix: torch.Tensor, v: torch.Tensor) -> None:
    """product = matrix @ v in float64, up to round-off: |error| <= 1e-13 (|matrix| @ |v|)."""
    assert product.dtype == torch.float64
    exact = matrix.double() @ v
    bound = 1e-13 * (matrix.double().abs() @ v.abs())
    assert bool(((product - exact).abs() <= bound).all()), float((product - exact).abs().max())


class InlineEngine:
    """A sweep engine that runs each job in this process (the blocks' output is what these
    tests read; tests/sweeps covers the engines)."""

    def check(self, device: str = "cpu") -> None:
        """Runs here, on the CPU."""

    def run(self, jobs: list, on_result: Callable) -> None:
        from widenet.sweeps.engines import Outcome

        for job in jobs:
            on_result(job, Outcome("done", result=job.function(*job.args)))


@pytest.fixture(scope="session")
def disk_kernel(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The NTK of a 6-hidden-layer ReLU MLP on 120 points of the sphere in d = 3, written by
    ``kernel_to_disk`` in blocks of 48 (float64), with the net and points."""
    from widenet.sweeps.kernel import kernel_to_disk

    net, x = relu_net(3, 6), sphere_points(120, 3, seed=4)
    path = tmp_path_factory.mktemp("kernel") / "ntk.npy"
    kernel_to_disk(net, x, path, block=48, engine=InlineEngine())
    return {"path": path, "net": net, "x": x, "ntk": infinite_kernels(net, x).ntk}
