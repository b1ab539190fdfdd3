"""The Nystrom preconditioner: its eigenvalues are those of K_nS K_SS^-1 K_Sn, it inverts
K + ridge I when it sees every column, and it shrinks the condition number within the bound
(lambda_l + ridge + ||K - K_hat||) / ridge."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from widenet.errors import WidenetError
from widenet.solvers.blocked import BlockedKernel
from widenet.solvers.cg import conjugate_gradients
from widenet.solvers.nystrom import NystromPreconditioner, default_rank


def _dense(preconditioner: NystromPreconditioner, n: int) -> torch.Tensor:
    """P^-1 as a matrix, applied to the identity."""
    return preconditioner(torch.eye(n, dtype=torch.float64))


def _condition(matrix: torch.Tensor) -> float:
    values = torch.linalg.eigvalsh((matrix + matrix.T) / 2)
    return float(values[-1] / values[0])


def test_eigenvalues_are_those_of_the_nystrom_approximation(ill_conditioned: dict) -> None:
    kernel = ill_conditioned["train"]
    preconditioner = NystromPreconditioner(BlockedKernel(kernel), rank=40, seed=3)
    s = torch.from_numpy(preconditioner.subset)
    columns = kernel[:, s]
    nystrom = columns @ torch.linalg.pinv(kernel[s][:, s], hermitian=True) @ columns.T
    exact = torch.linalg.eigvalsh(nystrom).flip(0)[:len(preconditioner.eigenvalues)]
    large = exact > 1e-6 * exact[0]
    torch.testing.assert_close(preconditioner.eigenvalues[large], exact[large], rtol=1e-7, atol=0)


def test_with_every_column_it_inverts_the_regularized_kernel(ill_conditioned: dict) -> None:
    kernel, ridge = ill_conditioned["train"], 1e-3
    n = kernel.shape[0]
    preconditioner = NystromPreconditioner(BlockedKernel(kernel), ridge, rank=n)
    product = _dense(preconditioner, n) @ (kernel + ridge * torch.eye(n, dtype=torch.float64))
    smallest = float(preconditioner.eigenvalues[-1])
    torch.testing.assert_close(product, (smallest + ridge) * torch.eye(n, dtype=torch.float64),
                               rtol=0, atol=1e-6 * (smallest + ridge))


@pytest.mark.parametrize("rank", [20, 60])
def test_it_shrinks_the_condition_number_within_the_bound(ill_conditioned: dict,
                                                          rank: int) -> None:
    kernel, ridge = ill_conditioned["train"], 1e-3
    n = kernel.shape[0]
    regularized = kernel + ridge * torch.eye(n, dtype=torch.float64)
    preconditioner = NystromPreconditioner(BlockedKernel(kernel), ridge, rank=rank)
    inverse = _dense(preconditioner, n)
    values, vectors = torch.linalg.eigh((inverse + inverse.T) / 2)
    root = vectors @ torch.diag(values.sqrt()) @ vectors.T  # P^-1/2
    preconditioned = _condition(root @ regularized @ root)
    s = torch.from_numpy(preconditioner.subset)
    approximation = kernel[:, s] @ torch.linalg.pinv(kernel[s][:, s], hermitian=True) @ kernel[s]
    error = float(torch.linalg.matrix_norm(kernel - approximation, ord=2))
    bound = (float(preconditioner.eigenvalues[-1]) + ridge + error) / ridge
    assert preconditioned <= bound * (1 + 1e-6)
    assert preconditioned < _condition(regularized) / 10


def test_default_rank_and_bad_arguments() -> None:
    assert default_rank(300) == 75
    assert default_rank(40_000) == 500
    assert default_rank(2) == 1
    kernel = BlockedKernel(torch.eye(5, dtype=torch.float64))
    with pytest.raises(WidenetError, match="at most the number of points"):
        NystromPreconditioner(kernel, rank=6)
    with pytest.raises(WidenetError, match="ridge must be >= 0"):
        NystromPreconditioner(kernel, -1.0)
    with pytest.raises(WidenetError, match="square"):
        NystromPreconditioner(BlockedKernel(torch.ones(5, 4, dtype=torch.float64)))
    with pytest.raises(WidenetError, match="wrap an array with BlockedKernel"):
        NystromPreconditioner(torch.eye(5, dtype=torch.float64))
    with pytest.raises(WidenetError, match="positive semi-definite"):
        NystromPreconditioner(BlockedKernel(-torch.eye(5, dtype=torch.float64)), rank=3)
    identity = NystromPreconditioner(BlockedKernel(torch.zeros(5, 5, dtype=torch.float64)), 1.0,
                                     rank=2)
    r = torch.from_numpy(np.arange(10.0).reshape(5, 2))
    torch.testing.assert_close(identity(r), r)


@pytest.mark.parametrize("stored", ["array", "function"])
def test_a_rank_deficient_float32_kernel_with_a_ridge(stored: str) -> None:
    """Duplicated points stored in float32: K_SS has eigenvalues of order -eps32 ||K||, which
    the shift nu = n eps ||K_Sn||_F must cover with float32's eps (the preconditioner refused
    the kernel as not positive semi-definite before the fix, and still did for float32 rows
    of a function, given float64's eps). K + ridge I is well posed, and conjugate gradients
    solve it."""
    generator = torch.Generator().manual_seed(7)
    features = torch.randn(100, 4, generator=generator, dtype=torch.float64)
    points = torch.cat([features, features])
    kernel = ((1 + points @ points.T) ** 2).float()  # rank 15 at most, on 200 points
    y = torch.randn(200, generator=generator, dtype=torch.float64)
    blocked = (BlockedKernel(kernel.numpy()) if stored == "array"
               else BlockedKernel.from_function(lambda index: kernel[index], (200, 200)))
    preconditioner = NystromPreconditioner(blocked, 1e-3, rank=50, seed=0)
    assert 0 < len(preconditioner.eigenvalues) <= 15
    solved = conjugate_gradients(blocked, y, ridge=1e-3, rank=50, tol=1e-10)
    assert solved.converged
    expected = torch.linalg.solve(kernel.double() + 1e-3 * torch.eye(200, dtype=torch.float64), y)
    assert float((solved.weights - expected).norm() / expected.norm()) < 1e-8


def test_a_kernel_that_is_not_symmetric_is_refused(ill_conditioned: dict) -> None:
    """A square test-by-train kernel (as many test as training points) passed as the training
    kernel: K_SS - K_SS^T is of the order of K_SS, where a symmetric kernel's is round-off
    (the preconditioner symmetrized it silently before the fix)."""
    from widenet.kernels.infinite import infinite_kernels

    from .conftest import relu_net

    x = ill_conditioned["x"]
    cross = infinite_kernels(relu_net(3, 8), x[:40] + 0.1, x[:40]).ntk
    with pytest.raises(WidenetError, match=r"not symmetric: on the preconditioner's 10 points"):
        NystromPreconditioner(BlockedKernel(cross), rank=10)
    NystromPreconditioner(BlockedKernel(ill_conditioned["train"].float()), rank=60)  # round-off


def test_a_float32_kernel_stored_in_float64_is_not_refused_as_asymmetric() -> None:
    """A kernel computed in float32 and stored in float64 is symmetric to float32's round-off
    only: the preconditioner refused it as not symmetric (sqrt(eps64) of the stored dtype)
    before the fix. The weights solve K alpha = y to the tolerance, hence (first-order
    perturbation) those of K's symmetric part to cond(K) ||K - K^T||_2 / ||K||_2."""
    from .conftest import float32_computed

    kernel = float32_computed()
    y = torch.randn(kernel.shape[0], 2, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0))
    solved = conjugate_gradients(BlockedKernel(kernel), y, tol=1e-10)
    assert solved.converged
    condition = float(torch.linalg.cond(kernel))
    asymmetry = float(torch.linalg.matrix_norm(kernel - kernel.T, 2)
                      / torch.linalg.matrix_norm(kernel, 2))
    expected = torch.linalg.solve((kernel + kernel.T) / 2, y)
    assert float((solved.weights - expected).norm() / expected.norm()) <= (
        condition * (asymmetry + 1e-10))
