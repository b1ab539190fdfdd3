"""Gradient flow by Lanczos: the dense eigendecomposition's predictions (widenet.predict) at
every time, exact termination on an invariant Krylov space, early stopping, bad times."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from widenet.dynamics.predict import KernelDynamics
from widenet.errors import WidenetError
from widenet.solvers.blocked import BlockedKernel
from widenet.solvers.flow import gradient_flow

from ..dynamics.test_predict import flow_test_reference, flow_train_reference

TIMES = [0.0, 1.0, 30.0, 1e3, 1e5]


def _relative(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor | None = None) -> float:
    """||a - b|| / ||scale|| (default scale b)."""
    return float((a - b).norm() / (b if scale is None else scale).norm())


def test_matches_the_dense_dynamics_at_every_time(ill_conditioned: dict) -> None:
    kernel, cross, y = ill_conditioned["train"], ill_conditioned["cross"], ill_conditioned["y"]
    result = gradient_flow(BlockedKernel(kernel, block_rows=64), y, TIMES, tol=1e-10)
    assert result.converged
    assert result.weights.shape == (len(TIMES), *y.shape)
    dynamics = KernelDynamics(kernel, y)
    assert bool((result.weights[0] == 0).all())
    for i, t in enumerate(TIMES):
        assert _relative(result.train[i], dynamics.train(t), y) < 1e-8
        if t > 0:
            assert _relative(cross @ result.weights[i], dynamics.test(cross, t)) < 1e-8


def test_the_error_estimate_falls_to_the_tolerance(ill_conditioned: dict) -> None:
    kernel, y = ill_conditioned["train"], ill_conditioned["y"][:, 0]
    loose = gradient_flow(BlockedKernel(kernel), y, 100.0, tol=1e-3)
    tight = gradient_flow(BlockedKernel(kernel), y, 100.0, tol=1e-10)
    assert loose.weights.shape == y.shape
    assert loose.changes[-1] <= 1e-3 < loose.changes[-2]
    assert loose.iterations < tight.iterations
    assert _relative(loose.weights, tight.weights) < 1e-2


def test_stops_exactly_on_an_invariant_krylov_space() -> None:
    features = torch.randn(50, 4, generator=torch.Generator().manual_seed(0),
                           dtype=torch.float64)
    kernel = features @ features.T  # rank 4: the Krylov space of any y has dimension <= 5
    y = torch.randn(50, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    result = gradient_flow(BlockedKernel(kernel), y, [2.0, 50.0], tol=1e-14)
    assert result.converged
    assert result.iterations <= 5
    dynamics = KernelDynamics(kernel, y)
    for i, t in enumerate([2.0, 50.0]):
        assert _relative(result.train[i], dynamics.train(t), y) < 1e-10
        assert _relative(kernel @ result.weights[i], dynamics.test(kernel, t)) < 1e-10


def test_a_rank_deficient_kernel_against_matrix_exponentials_and_t_inf() -> None:
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(60, 4, generator=generator, dtype=torch.float64)  # 50 train, 10 test
    kernel, cross = features[:50] @ features[:50].T, features[50:] @ features[:50].T  # rank 4
    y = torch.randn(50, 2, generator=generator, dtype=torch.float64)
    zeros, zeros_test = torch.zeros_like(y), torch.zeros(10, 2, dtype=torch.float64)
    times = [0.5, 5.0, 1e30]
    result = gradient_flow(BlockedKernel(kernel), y, times, tol=1e-14)
    assert result.converged
    assert result.iterations <= 5
    for i, t in enumerate(times[:2]):  # where the flow still moves: the brute force
        assert _relative(result.train[i], flow_train_reference(kernel, y, zeros, t), y) < 1e-10
        expected = flow_test_reference(kernel, cross, y, zeros, zeros_test, t)
        assert _relative(cross @ result.weights[i], expected) < 1e-10
    dynamics = KernelDynamics(kernel, y)  # t = 1e30 is t = inf: the null space stays put
    assert _relative(result.train[2], dynamics.train(float("inf")), y) < 1e-10
    assert _relative(cross @ result.weights[2], dynamics.test(cross, float("inf"))) < 1e-10


def test_a_zero_column_and_the_iteration_cap(ill_conditioned: dict) -> None:
    y = ill_conditioned["y"].clone()
    y[:, 2] = 0
    capped = gradient_flow(BlockedKernel(ill_conditioned["train"]), y, 1e4, max_iterations=4)
    assert (capped.iterations, capped.converged) == (4, False)
    assert bool((capped.weights[:, 2] == 0).all())
    assert bool((capped.train[:, 2] == 0).all())


@pytest.mark.parametrize("times", [-1.0, float("inf"), float("nan"), [[1.0]], [], "soon", "1",
                                   True, [1.0, None]])
def test_bad_times_are_refused(ill_conditioned: dict, times: object) -> None:
    with pytest.raises(WidenetError, match="times must be"):
        gradient_flow(BlockedKernel(ill_conditioned["train"]), ill_conditioned["y"], times)


def test_times_may_be_tensors_of_any_float_dtype_or_with_grad(ill_conditioned: dict) -> None:
    kernel, y = BlockedKernel(ill_conditioned["train"]), ill_conditioned["y"]
    expected = gradient_flow(kernel, y, [0.5, 2.0]).train
    for times in (torch.tensor([0.5, 2.0], dtype=torch.bfloat16),
                  torch.tensor([0.5, 2.0], requires_grad=True)):
        assert torch.equal(gradient_flow(kernel, y, times).train, expected)
    with pytest.raises(WidenetError, match="times must be"):
        gradient_flow(kernel, y, torch.tensor([True]))


def test_times_share_the_time_grid_rules(ill_conditioned: dict) -> None:
    kernel, y = BlockedKernel(ill_conditioned["train"]), ill_conditioned["y"]
    huge = gradient_flow(kernel, y, [2**70, 1.0])  # an integer beyond int64 is a finite time
    assert torch.equal(huge.times, torch.tensor([2.0**70, 1.0], dtype=torch.float64))
    with pytest.raises(WidenetError, match=r"times holds an integer beyond float64's range "
                                           r"\(1\.8e308\); for t = inf use conjugate_gradients"):
        gradient_flow(kernel, y, 10**400)
    with pytest.raises(WidenetError, match="times must be finite times >= 0, got inf; for t = "
                                           "inf use conjugate_gradients with ridge 0"):
        gradient_flow(kernel, y, float("inf"))


def test_bad_kernels_and_targets_are_refused(ill_conditioned: dict) -> None:
    kernel, y = ill_conditioned["train"], ill_conditioned["y"]
    with pytest.raises(WidenetError, match="must be square"):
        gradient_flow(BlockedKernel(kernel[:-1]), y, 1.0)
    with pytest.raises(WidenetError, match="to match the kernel"):
        gradient_flow(BlockedKernel(kernel), y[:-1], 1.0)
    with pytest.raises(WidenetError, match="tol must be > 0"):
        gradient_flow(BlockedKernel(kernel), y, 1.0, tol=-1.0)


@pytest.mark.parametrize("stored", ["numpy", "torch", "file", "function", "function, eps"])
def test_a_float32_kernel_has_the_null_space_of_its_float32_round_off(stored: str,
                                                                       tmp_path) -> None:
    """A rank-4 kernel stored in float32 has eigenvalues of order -eps32 ||K|| where its null
    space was: they are round-off, as KernelDynamics (eps of the kernel's dtype) counts them,
    not modes to grow like exp(|lambda| t/n) (NaN by t = 1e12 before the fix). A row function
    giving float32 rows has float32's eps, and one giving them in float64 the eps it is told
    (from_function took float64's for both before the fix)."""
    generator = torch.Generator().manual_seed(5)
    features = torch.randn(60, 4, generator=generator, dtype=torch.float64)
    kernel = (features[:50] @ features[:50].T).float()
    cross = (features[50:] @ features[:50].T).float()
    assert float(torch.linalg.eigvalsh(kernel.double())[0]) < 0  # the round-off at stake
    y = torch.randn(50, 2, generator=generator, dtype=torch.float64)
    if stored == "file":
        np.save(tmp_path / "kernel.npy", kernel.numpy())
        blocked = BlockedKernel.open(tmp_path / "kernel.npy", block_rows=7)
    elif stored == "function":
        blocked = BlockedKernel.from_function(lambda index: kernel[index], (50, 50))
    elif stored == "function, eps":
        blocked = BlockedKernel.from_function(lambda index: kernel[index].double(), (50, 50),
                                              eps=torch.finfo(torch.float32).eps)
    else:
        blocked = BlockedKernel(kernel.numpy() if stored == "numpy" else kernel)
    assert blocked.eps == torch.finfo(torch.float32).eps
    times = [5.0, 1e6, 1e12]
    result = gradient_flow(blocked, y, times, tol=1e-12)
    assert result.converged
    dynamics = KernelDynamics(kernel, y.float())
    for i, t in enumerate(times):
        train, test = dynamics.train(t).double(), dynamics.test(cross, t).double()
        assert _relative(result.train[i], train, y) < 1e-6  # float32 results of KernelDynamics
        assert _relative(cross.double() @ result.weights[i], test) < 1e-6


def test_a_kernel_that_is_not_positive_semi_definite_is_refused() -> None:
    """A Ritz value below -n eps max|theta| bounds lambda_min(K) below round-off: the flow
    would grow like exp(|lambda| t/n) (NaN, reported as converged, before the fix)."""
    generator = torch.Generator().manual_seed(6)
    matrix = torch.randn(40, 40, generator=generator, dtype=torch.float64)
    y = torch.randn(40, generator=generator, dtype=torch.float64)
    with pytest.raises(WidenetError, match="not positive semi-definite: a Ritz value is -"):
        gradient_flow(BlockedKernel(matrix + matrix.T), y, 1e5)
    features = torch.randn(40, 5, generator=generator, dtype=torch.float64)
    kernel = features @ features.T  # rank 5, with eigenvalues of order -eps ||K|| in float64
    values, vectors = torch.linalg.eigh(kernel)
    assert float(values[0]) < 0
    y = vectors[:, 0]  # the first Ritz value, y^T K y = lambda_min < 0, is round-off alone
    result = gradient_flow(BlockedKernel(kernel), y, [1.0, 1e6])
    assert float(result.train.abs().max()) < 1e-12  # a unit y that never moves: round-off
    assert float(result.weights.abs().max()) < 1e-12


def test_training_outputs_keep_their_relative_precision_at_a_tiny_time(
        ill_conditioned: dict) -> None:
    """f_train(t) = (I - exp(-K t/n)) y equals the series (t/n) K y - (t/n)^2 K^2 y / 2 up to
    (t ||K|| / n)^3 ||y|| / 6 and round-off, 10 n eps (t/n) ||K||_F ||y|| at t = 1e-12;
    y - exp(-K t/n) y cancelled to eps ||y||, 1e-4 relative (before the fix)."""
    kernel, y = ill_conditioned["train"], ill_conditioned["y"]
    n, t = kernel.shape[0], 1e-12
    scale = t / n
    series = scale * kernel @ y - scale**2 / 2 * kernel @ (kernel @ y)
    norm = float(torch.linalg.matrix_norm(kernel))
    bound = 10 * n * torch.finfo(torch.float64).eps * scale * norm * float(y.norm()) \
        + (scale * norm) ** 3 / 6 * float(y.norm())
    result = gradient_flow(BlockedKernel(kernel), y, [t, 1.0], tol=1e-12)
    assert result.converged
    assert float((result.train[0] - series).norm()) <= bound


@pytest.mark.parametrize("power", [-1040, 1000])
def test_targets_of_any_scale_flow(power: int) -> None:
    """Both results are linear in y: y 2^p gives 2^p times those of y. Targets of 2^-1040
    (subnormal) had norm 0 and did not move, targets of 2^1000 gave non-finite outputs
    (before the fix). Bound: the Lanczos tolerance, and 2^-33 for a subnormal's 34 bits."""
    generator = torch.Generator().manual_seed(11)
    a = torch.randn(12, 3, generator=generator, dtype=torch.float64)
    kernel = torch.eye(12, dtype=torch.float64) + a @ a.T / 3
    y = torch.randint(-4, 5, (12,), generator=generator).double()
    y[0] = 1.0
    result = gradient_flow(BlockedKernel(kernel), y * 2.0**power, [0.5, 20.0], tol=1e-12)
    assert result.converged
    dynamics = KernelDynamics(kernel, y)
    for i, t in enumerate([0.5, 20.0]):
        unscaled = torch.ldexp(result.train[i], torch.tensor(-power))  # exact
        assert _relative(unscaled, dynamics.train(t)) <= 1e-10 + 2.0**-33
        assert _relative(kernel @ torch.ldexp(result.weights[i], torch.tensor(-power)),
                         dynamics.test(kernel, t)) <= 1e-10 + 2.0**-33


def test_a_kernel_whose_products_overflow_is_refused() -> None:
    """Entries of 2^600: the squares in the Lanczos norms overflow; a clear error (NaN or inf
    outputs reported as converged before the fix)."""
    a = torch.randn(12, 3, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    kernel = (torch.eye(12, dtype=torch.float64) + a @ a.T) * 2.0**600
    y = torch.ones(12, dtype=torch.float64)
    with pytest.raises(WidenetError, match=r"Lanczos products K q overflow float64: .* divide "
                                           r"the kernel and the test kernel by .* c and "
                                           "multiply the times by c: the weights are then c "
                                           "times as large"):
        gradient_flow(BlockedKernel(kernel), y, 1.0)
    # the advice (it did not say to scale the times before the fix): exp(-(K/c) (c t)/n) is
    # exp(-K t/n), and phi_(c t)(K/c) = c phi_t(K)
    c = float(kernel.diagonal().max())
    result = gradient_flow(BlockedKernel(kernel / c), y, [c * 2.0**-600, c * 2.0**-590],
                           tol=1e-10)
    dynamics = KernelDynamics(kernel * 2.0**-600, y)  # of K t/n at t = 2^-600, 2^-590 (exact)
    for i, t in enumerate([1.0, 2.0**10]):
        assert _relative(result.train[i], dynamics.train(t), y) < 1e-8


def test_a_kernel_that_is_not_symmetric_is_refused(ill_conditioned: dict) -> None:
    """q_i^T K q_j of the Lanczos basis is tridiagonal and symmetric for a symmetric K; a
    square test-by-train kernel is refused (it went on with a wrong tridiagonal, or was
    called not positive semi-definite, before the fix)."""
    from widenet.kernels.infinite import infinite_kernels

    from .conftest import relu_net

    x = ill_conditioned["x"]
    cross = infinite_kernels(relu_net(3, 8), x[:40] + 0.1, x[:40]).ntk
    with pytest.raises(WidenetError, match="kernel is not symmetric: q_i"):
        gradient_flow(BlockedKernel(cross), torch.ones(40, dtype=torch.float64), 1.0)


def test_a_float32_kernel_stored_in_float64_is_not_refused_as_asymmetric() -> None:
    """A kernel computed in float32 and stored in float64 is symmetric to float32's round-off
    only: it was refused as not symmetric (sqrt(eps64) of the stored dtype) before the fix.
    f_train(t) moves by at most (t/n) ||dK||_2 ||y|| when K does by dK, so it matches the
    dynamics of K's symmetric part to (t/n) ||K - K^T||_2 ||y|| and the Lanczos tolerance."""
    from .conftest import float32_computed

    kernel = float32_computed()
    n, asymmetry = kernel.shape[0], float(torch.linalg.matrix_norm(kernel - kernel.T, 2))
    y = torch.randn(n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    times = [1.0, 100.0, 1e4]
    result = gradient_flow(BlockedKernel(kernel), y, times, tol=1e-10)
    dynamics = KernelDynamics(kernel, y)  # of (K + K^T) / 2
    for i, t in enumerate(times):
        assert _relative(result.train[i], dynamics.train(t), y) <= t / n * asymmetry + 1e-8


def test_a_time_so_large_that_theta_t_overflows_gives_the_interpolant() -> None:
    """phi_t(theta) = (1 - exp(-theta t/n)) / theta -> 1/theta: at t = 1e300 and theta of
    1e10, theta t/n is inf, and phi was computed as (t/n) (1 - e^-x) / x = 0 (before the
    fix). The weights are then K^-1 y, to the Lanczos tolerance times cond(K)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    kernel = (a @ a.T + torch.eye(6, dtype=torch.float64)) * 1e10
    y = torch.randn(6, generator=generator, dtype=torch.float64)
    result = gradient_flow(BlockedKernel(kernel), y, [1e290, 1e300], tol=1e-12)
    expected = torch.linalg.solve(kernel, y)
    condition = float(torch.linalg.cond(kernel))
    for weights in result.weights:
        assert _relative(weights, expected) <= condition * 1e-12
