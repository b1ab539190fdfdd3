"""Conjugate gradients on blocked kernels: the dense solution to 1e-6 (several right-hand
sides, ridges, files on disk), honest residuals, early stopping, fewer iterations with the
Nystrom preconditioner, and clear refusals of bad input."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from widenet.errors import WidenetError
from widenet.kernels.infinite import infinite_kernels
from widenet.solvers.blocked import BlockedKernel
from widenet.solvers.cg import conjugate_gradients

from .conftest import dense_solve


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _true_residuals(kernel: torch.Tensor, y: torch.Tensor, alpha: torch.Tensor,
                    ridge: float) -> torch.Tensor:
    n = kernel.shape[0]
    y, alpha = y.reshape(n, -1), alpha.reshape(n, -1)
    residual = y - (kernel + ridge * torch.eye(n, dtype=torch.float64)) @ alpha
    return residual.norm(dim=0) / y.norm(dim=0)


@pytest.mark.parametrize("ridge", [0.0, 1e-3, 1.0])
@pytest.mark.parametrize("preconditioner", [None, "nystrom"])
def test_agrees_with_a_dense_solve(ill_conditioned: dict, ridge: float,
                                   preconditioner: str | None) -> None:
    kernel, y = ill_conditioned["train"], ill_conditioned["y"]
    result = conjugate_gradients(BlockedKernel(kernel, block_rows=64), y, ridge=ridge,
                                 preconditioner=preconditioner, tol=1e-11)
    assert result.converged
    assert result.weights.shape == y.shape
    assert _relative(result.weights, dense_solve(kernel, y, ridge)) < 1e-6
    assert float(_true_residuals(kernel, y, result.weights, ridge).max()) < 1e-10


def test_columns_are_solved_as_if_alone(ill_conditioned: dict) -> None:
    kernel, y = ill_conditioned["train"], ill_conditioned["y"]
    blocked = BlockedKernel(kernel)
    together = conjugate_gradients(blocked, y, ridge=1e-2, tol=1e-10)
    for column in range(y.shape[1]):
        alone = conjugate_gradients(blocked, y[:, column], ridge=1e-2, tol=1e-10)
        assert alone.weights.shape == (y.shape[0],)
        assert _relative(together.weights[:, column], alone.weights) < 1e-8


def test_the_recorded_residual_is_the_true_one(ill_conditioned: dict) -> None:
    kernel, y = ill_conditioned["train"], ill_conditioned["y"]
    for iterations in (1, 5, 40):
        result = conjugate_gradients(BlockedKernel(kernel), y, ridge=1e-3, tol=1e-12,
                                     max_iterations=iterations)
        true = _true_residuals(kernel, y, result.weights, 1e-3)
        torch.testing.assert_close(result.residuals[-1], true, rtol=1e-6, atol=1e-12)
        assert result.residuals.shape == (iterations + 1, 3)
        assert bool((result.residuals[0] == 1).all())


def test_early_stopping(ill_conditioned: dict) -> None:
    kernel, y = ill_conditioned["train"], ill_conditioned["y"]
    capped = conjugate_gradients(BlockedKernel(kernel), y, ridge=1e-3, max_iterations=3,
                                 preconditioner=None)
    assert (capped.iterations, capped.converged) == (3, False)
    assert capped.residual > 1e-6
    loose = conjugate_gradients(BlockedKernel(kernel), y, ridge=1e-3, tol=1e-2)
    assert loose.converged
    assert loose.residual <= 1e-2 < float(loose.residuals[-2].max())
    assert float(_true_residuals(kernel, y, loose.weights, 1e-3).max()) <= 1e-2 * (1 + 1e-6)


def test_progress_reports_each_iteration(ill_conditioned: dict) -> None:
    seen: list[tuple[int, float]] = []
    result = conjugate_gradients(BlockedKernel(ill_conditioned["train"]), ill_conditioned["y"],
                                 ridge=1e-3, progress=lambda i, r: seen.append((i, r)))
    assert [i for i, _ in seen] == list(range(1, result.iterations + 1))
    assert [r for _, r in seen] == result.residuals[1:].amax(dim=1).tolist()


def test_the_preconditioner_needs_fewer_iterations(ill_conditioned: dict) -> None:
    blocked = BlockedKernel(ill_conditioned["train"])
    y = ill_conditioned["y"]
    plain = conjugate_gradients(blocked, y, ridge=1e-3, preconditioner=None, tol=1e-8)
    nystrom = conjugate_gradients(blocked, y, ridge=1e-3, rank=60, tol=1e-8)
    assert plain.converged
    assert nystrom.converged
    assert nystrom.iterations < 0.75 * plain.iterations


def test_a_zero_column_has_zero_weights(ill_conditioned: dict) -> None:
    y = ill_conditioned["y"].clone()
    y[:, 1] = 0
    result = conjugate_gradients(BlockedKernel(ill_conditioned["train"]), y, ridge=1e-3)
    assert result.converged
    assert bool((result.weights[:, 1] == 0).all())
    assert bool((result.residuals[:, 1] == 0).all())


def test_solves_a_kernel_on_disk_block_by_block(disk_kernel: dict) -> None:
    x, net = disk_kernel["x"], disk_kernel["net"]
    y = torch.sin(3 * x[:, :2])
    blocked = BlockedKernel.open(disk_kernel["path"], block_rows=50)
    result = conjugate_gradients(blocked, y, ridge=1e-4, tol=1e-11)
    assert _relative(result.weights, dense_solve(disk_kernel["ntk"], y, 1e-4)) < 1e-6
    on_demand = conjugate_gradients(BlockedKernel.from_net(net, x[:80], block_rows=30),
                                    y[:80], ridge=1e-2, tol=1e-10)
    reference = dense_solve(infinite_kernels(net, x[:80]).ntk, y[:80], 1e-2)
    assert _relative(on_demand.weights, reference) < 1e-6


def test_bad_input_is_refused(ill_conditioned: dict) -> None:
    kernel, y = ill_conditioned["train"], ill_conditioned["y"]
    blocked = BlockedKernel(kernel)
    with pytest.raises(WidenetError, match=r"must have shape \(300,\) or \(300, k\)"):
        conjugate_gradients(blocked, y[:-1])
    with pytest.raises(WidenetError, match="must be square"):
        conjugate_gradients(BlockedKernel(kernel[:, :-1]), y)
    bad = y.clone()
    bad[4, 0] = float("nan")
    with pytest.raises(WidenetError, match="NaN or inf"):
        conjugate_gradients(blocked, bad)
    with pytest.raises(WidenetError, match="ridge must be >= 0"):
        conjugate_gradients(blocked, y, ridge=-1.0)
    with pytest.raises(WidenetError, match="tol must be > 0"):
        conjugate_gradients(blocked, y, tol=0.0)
    with pytest.raises(WidenetError, match="max_iterations"):
        conjugate_gradients(blocked, y, max_iterations=0)
    with pytest.raises(WidenetError, match="preconditioner must be"):
        conjugate_gradients(blocked, y, preconditioner="eigenpro")
    with pytest.raises(WidenetError, match="BlockedKernel"):
        conjugate_gradients(kernel, y)
    with pytest.raises(WidenetError, match=r"residual of shape \(300, 3\) to a tensor of that "
                                           r"shape, got \(10, 3\)"):
        conjugate_gradients(blocked, y, preconditioner=lambda r: r[:10])
    with pytest.raises(WidenetError, match="got ndarray"):
        conjugate_gradients(blocked, y, preconditioner=lambda r: r.numpy())
    with pytest.raises(WidenetError, match="preconditioner gave NaN or inf"):
        conjugate_gradients(blocked, y, preconditioner=lambda r: r / 0)
    with pytest.raises(WidenetError, match=r"V must be a tensor of shape \(300, k\)"):
        blocked.matmul(y[:-1])
    with pytest.raises(WidenetError, match="V contains NaN or inf"):
        blocked.matmul(bad)
    with pytest.raises(WidenetError, match="not positive definite"):
        conjugate_gradients(BlockedKernel(-kernel), y, preconditioner=None)
    with pytest.raises(WidenetError, match="real numbers"):
        conjugate_gradients(blocked, np.array(["a"] * 300))


def _small_problem() -> tuple[torch.Tensor, torch.Tensor, float]:
    """A 12-point kernel I + A A^T (condition number below 40), targets that are small
    integers (exact at any power-of-two scale, subnormals of 2^-1040 included) and the
    condition number."""
    generator = torch.Generator().manual_seed(11)
    a = torch.randn(12, 3, generator=generator, dtype=torch.float64)
    kernel = torch.eye(12, dtype=torch.float64) + a @ a.T / 3
    y = torch.randint(-4, 5, (12, 2), generator=generator).double()
    y[0] = 1.0  # no zero column
    values = torch.linalg.eigvalsh(kernel)
    return kernel, y, float(values[-1] / values[0])


@pytest.mark.parametrize("power", [-1040, -600, 1000])
def test_targets_of_any_scale_are_solved(power: int) -> None:
    """alpha is linear in y: y 2^p gives alpha 2^p. Targets of 2^-1040 (subnormal) had norm 0
    and got alpha = 0, targets of 2^1000 a norm of inf and non-finite weights, each reported
    as converged (before the fix). Error bound: cond(K) tol of the residual, and 2^-33 for
    the 34 bits of a subnormal 2^-1040."""
    kernel, y, condition = _small_problem()
    expected = torch.linalg.solve(kernel, y)
    for preconditioner in ("nystrom", None):
        solved = conjugate_gradients(BlockedKernel(kernel), y * 2.0**power, tol=1e-12,
                                     preconditioner=preconditioner)
        assert solved.converged
        error = (torch.ldexp(solved.weights, torch.tensor(-power)) - expected).norm() / (
            expected.norm())  # ldexp: exact
        assert float(error) <= condition * 1e-12 + 2.0**-33


def test_a_kernel_of_huge_values_is_solved() -> None:
    """K 2^1000 (entries near 1e301): the Nystrom preconditioner's norms overflowed (a
    ValueError of scipy before the fix); it works with K / c for a power of two c."""
    kernel, y, condition = _small_problem()
    solved = conjugate_gradients(BlockedKernel(kernel * 2.0**1000), y, tol=1e-12)
    expected = torch.linalg.solve(kernel, y)
    unscaled = torch.ldexp(solved.weights, torch.tensor(1000))  # exact
    assert solved.converged
    assert float((unscaled - expected).norm() / expected.norm()) <= condition * 1e-12


def test_weights_that_overflow_are_refused_with_a_rescaling_that_works() -> None:
    """K 2^-1020 and targets up to 2^8: the weights (K^-1 y, up to 2^1028) overflow. The error
    says to divide K by its largest diagonal value c (it said that this divides the weights,
    which it multiplies, before the fix); done, the weights are c K^-1 y and K alpha = y."""
    kernel, y, condition = _small_problem()
    tiny = kernel * 2.0**-1020
    with pytest.raises(WidenetError, match=r"weights .* overflow float64: .* divide the kernel "
                                           r"and the test kernel by .* c and divide the ridge "
                                           "by c: the weights are then c times as large"):
        conjugate_gradients(BlockedKernel(tiny), y * 2.0**8)
    c = float(tiny.diagonal().max())
    solved = conjugate_gradients(BlockedKernel(tiny / c), y * 2.0**8, tol=1e-12)
    assert solved.converged
    assert float(((tiny / c) @ solved.weights - y * 2.0**8).norm() / (y * 2.0**8).norm()) <= (
        1e-12 * condition)


def test_a_tolerance_of_one_or_more_is_refused() -> None:
    """A relative residual of 1 is met by alpha = 0: tol >= 1 returned zero weights,
    "converged", after no iteration (before the fix); Lanczos likewise."""
    from widenet.solvers.flow import gradient_flow

    kernel, y, _ = _small_problem()
    for tol in (1.0, 10.0):
        with pytest.raises(WidenetError, match=r"tol .* must be below 1"):
            conjugate_gradients(BlockedKernel(kernel), y, tol=tol)
        with pytest.raises(WidenetError, match=r"tol .* must be below 1"):
            gradient_flow(BlockedKernel(kernel), y, 1.0, tol=tol)


def test_progress_that_is_neither_a_flag_nor_none_nor_a_function_is_refused() -> None:
    """progress="yes" (or 1) was taken for False, silently (before the fix)."""
    from widenet.solvers.flow import gradient_flow

    kernel, y, _ = _small_problem()
    for progress in ("yes", 1):
        with pytest.raises(WidenetError, match="progress must be True, False, None or a"):
            conjugate_gradients(BlockedKernel(kernel), y, progress=progress)
        with pytest.raises(WidenetError, match="progress must be True, False, None or a"):
            gradient_flow(BlockedKernel(kernel), y, 1.0, progress=progress)


def test_progress_none_means_no_progress_output(capsys: pytest.CaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """None, which train accepts, was refused by the solvers; it is False: the same results,
    nothing printed, even on a terminal (where True prints a bar)."""
    from widenet.solvers.fit import fit
    from widenet.solvers.flow import gradient_flow

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    kernel, y, _ = _small_problem()
    for solve in (lambda **kw: conjugate_gradients(BlockedKernel(kernel), y, **kw).weights,
                  lambda **kw: gradient_flow(BlockedKernel(kernel), y, 1.0, **kw).weights,
                  lambda **kw: fit(BlockedKernel(kernel), y, ridge=1e-3, **kw).train):
        assert torch.equal(solve(progress=None), solve(progress=False))
        assert capsys.readouterr() == ("", "")
        solve(progress=True)
        assert capsys.readouterr().err
