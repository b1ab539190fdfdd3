"""Closed-form kernel dynamics, kernel regression and GP posteriors against independent references.

References: torch.linalg.matrix_exp for gradient flow (the test-side integral by Van Loan's block
exponential), the GD recurrence iterated step by step, torch.linalg.solve / pinv for regression,
and a Monte Carlo over initializations for the NTK-GP.
"""

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import functional_call, jacrev

from widenet.dynamics import predict
from widenet.errors import WidenetError
from widenet.kernels.empirical import empirical_ntk
from widenet.models import MLP

F64 = torch.float64


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def joint_kernel(points: int, rank: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    """A PSD kernel J J^T of rank <= ``rank`` on ``points`` points (train then test)."""
    j = torch.randn(points, rank, generator=generator(seed), dtype=F64)
    return scale * j @ j.T / max(rank, 1)


def split(kernel: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(K_XX, K_*X, K_**) of a joint kernel on n training points followed by test points."""
    return kernel[:n, :n], kernel[n:, :n], kernel[n:, n:]


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=generator(seed), dtype=F64)


def flow_train_reference(k: torch.Tensor, y: torch.Tensor, f0: torch.Tensor, t: float,
                         n: int | None = None) -> torch.Tensor:
    """y + exp(-K t / n) (f_0 - y), n the number of training points (default K's size)."""
    n = n or k.shape[0]
    return y + torch.linalg.matrix_exp(-k * t / n) @ (f0 - y)


def flow_test_reference(k: torch.Tensor, k_cross: torch.Tensor, y: torch.Tensor,
                        f0: torch.Tensor, f0_test: torch.Tensor, t: float,
                        n: int | None = None) -> torch.Tensor:
    """f0_test + K_*X (1/n) int_0^t exp(-K s / n) ds (y - f_0), the integral by Van Loan:
    exp([[-K/n, I], [0, 0]] t) has it as its top-right block."""
    n, size = n or k.shape[0], k.shape[0]
    block = torch.zeros(2 * size, 2 * size, dtype=F64)
    block[:size, :size] = -k / n
    block[:size, size:] = torch.eye(size, dtype=F64)
    integral = torch.linalg.matrix_exp(block * t)[:size, size:]
    return f0_test + k_cross @ integral @ (y - f0) / n


def gd_reference(k: torch.Tensor, k_cross: torch.Tensor, y: torch.Tensor, f0: torch.Tensor,
                 f0_test: torch.Tensor, steps: int, lr: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Iterate f <- f - (lr/n) K (f - y) and f_test <- f_test - (lr/n) K_*X (f - y)."""
    n = k.shape[0]
    f, f_test = f0.clone(), f0_test.clone()
    for _ in range(steps):
        residual = f - y
        f, f_test = f - lr / n * k @ residual, f_test - lr / n * k_cross @ residual
    return f, f_test


# --- gradient flow ------------------------------------------------------------------------


@pytest.mark.parametrize("rank", [9, 3, 0])  # positive definite, singular, zero kernel
@pytest.mark.parametrize("outputs", [None, 3])
def test_gradient_flow_matches_matrix_exponentials(rank: int, outputs: int | None) -> None:
    n, m = 6, 4
    k, k_cross, _ = split(joint_kernel(n + m, rank, seed=rank, scale=5.0), n)
    shape = (n,) if outputs is None else (n, outputs)
    test_shape = (m,) if outputs is None else (m, outputs)
    y, f0 = randn(*shape, seed=1), randn(*shape, seed=2)
    f0_test = randn(*test_shape, seed=3)
    times = [0.0, 0.3, 2.0, 40.0]
    dynamics = predict.KernelDynamics(k, y, f0)
    train, test = dynamics.train(times), dynamics.test(k_cross, times, f0_test)
    assert train.shape == (len(times), *shape)
    assert test.shape == (len(times), *test_shape)
    for i, t in enumerate(times):
        y2, f02 = y.reshape(n, -1), f0.reshape(n, -1)
        expected = flow_train_reference(k, y2, f02, t).reshape(shape)
        torch.testing.assert_close(train[i], expected, rtol=1e-10, atol=1e-10)
        expected = flow_test_reference(k, k_cross, y2, f02, f0_test.reshape(m, -1), t)
        torch.testing.assert_close(test[i], expected.reshape(test_shape), rtol=1e-9, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), rank=st.integers(0, 6), seed=st.integers(0, 10**6),
       scale=st.floats(1e-3, 1e3), t=st.floats(0, 20))
def test_gradient_flow_property(n: int, rank: int, seed: int, scale: float, t: float) -> None:
    k, k_cross, _ = split(joint_kernel(n + 2, rank, seed, scale), n)
    y, f0 = randn(n, seed=seed + 1), randn(n, seed=seed + 2)
    time = t / scale  # keep lambda t / n of order one, where the flow still moves
    dynamics = predict.KernelDynamics(k, y, f0)
    torch.testing.assert_close(dynamics.train(time), flow_train_reference(k, y, f0, time),
                               rtol=1e-9, atol=1e-9)
    expected = flow_test_reference(k, k_cross, y, f0, torch.zeros(2, dtype=F64), time)
    torch.testing.assert_close(dynamics.test(k_cross, time), expected, rtol=1e-8, atol=1e-8)


def test_the_null_space_neither_moves_nor_reaches_the_test_outputs() -> None:
    # K = diag(0, 2): the null mode's residual stays and its test gain is 0 at every t (a
    # K_*X not vanishing there, as here, is no cross block of a PSD kernel: its drift is left
    # out); the other mode's gain is (1 - e^{-2t/n}) / 2, 1/2 at t = inf.
    k_cross = torch.tensor([[1.0, 1.0]], dtype=F64)
    y = torch.tensor([1.0, 1.0], dtype=F64)
    times = [3.0, 1e300, math.inf]
    expected = torch.tensor([(1 - math.exp(-3.0)) / 2, 0.5, 0.5], dtype=F64)[:, None]
    for zero in (0.0, 1e-300):  # an eigenvalue below round-off counts as zero
        dynamics = predict.KernelDynamics(torch.diag(torch.tensor([zero, 2.0], dtype=F64)), y)
        torch.testing.assert_close(dynamics.test(k_cross, times), expected, rtol=1e-14, atol=0)
        assert bool((dynamics.train(times)[:, 0] == 0).all())
        assert bool((dynamics.gd_train([1, 10**300], 0.5)[:, 0] == 0).all())


def test_large_finite_times_and_step_counts_reach_t_inf_on_a_rank_deficient_kernel() -> None:
    n, m = 12, 3
    k, k_cross, _ = split(joint_kernel(n + m, 3, seed=16), n)
    y, f0, f0_test = randn(n, 2, seed=17), randn(n, 2, seed=18), randn(m, 2, seed=19)
    dynamics = predict.KernelDynamics(k, y, f0)
    assert int((dynamics.eigenvalues > dynamics._tolerance).sum()) == 3
    at_inf = dynamics.train(math.inf), dynamics.test(k_cross, math.inf, f0_test)
    # lambda t / n >= 1e20 tol / n > 745 for every eigenvalue above tol: exp(-x) is exactly 0
    for t in (1e20, 1e30):
        assert torch.equal(dynamics.train(t), at_inf[0])
        assert torch.equal(dynamics.test(k_cross, t, f0_test), at_inf[1])
    # GD's gain (s lr/n)(1 - q^s)/(s lr lambda/n) is 1/lambda within 4 eps, for each of the
    # 3 modes, whose terms are at most ||K_*X|| ||y - f0|| / lambda
    lr = 0.5 * dynamics.max_stable_lr
    assert torch.equal(dynamics.gd_train(10**30, lr), at_inf[0])
    smallest = float(dynamics.eigenvalues[dynamics.eigenvalues > dynamics._tolerance].min())
    bound = 4 * 3 * torch.finfo(F64).eps * float(k_cross.norm() * (y - f0).norm()) / smallest
    error = float((dynamics.gd_test(k_cross, 10**30, lr, f0_test) - at_inf[1]).abs().max())
    assert error <= bound


def test_infinite_time_interpolates_on_a_positive_definite_kernel() -> None:
    n, m = 7, 3
    k, k_cross, _ = split(joint_kernel(n + m, 12, seed=4), n)
    y, f0 = randn(n, 2, seed=5), torch.zeros(n, 2, dtype=F64)
    dynamics = predict.KernelDynamics(k, y, f0)
    torch.testing.assert_close(dynamics.train(math.inf), y, rtol=0, atol=1e-12)
    interpolant = dynamics.test(k_cross, math.inf)
    torch.testing.assert_close(interpolant, k_cross @ torch.linalg.solve(k, y))
    for ridge in [1e-6, 1e-9]:
        ridge_fit = predict.kernel_regression(k, k_cross, y, ridge=ridge)
        torch.testing.assert_close(ridge_fit, interpolant, rtol=0, atol=1e3 * ridge)
    torch.testing.assert_close(dynamics.test(k_cross, 1e6), interpolant)


def test_infinite_time_on_a_singular_kernel_uses_the_pseudo_inverse() -> None:
    n, m = 6, 3
    k, k_cross, _ = split(joint_kernel(n + m, 3, seed=6), n)
    y, f0 = randn(n, seed=7), randn(n, seed=8)
    dynamics = predict.KernelDynamics(k, y, f0)
    pinv = torch.linalg.pinv(k, hermitian=True, rtol=1e-10)
    null_projector = torch.eye(n, dtype=F64) - pinv @ k
    torch.testing.assert_close(dynamics.train(math.inf), y + null_projector @ (f0 - y))
    torch.testing.assert_close(dynamics.test(k_cross, math.inf), k_cross @ pinv @ (y - f0))
    # and it is the limit of large finite times
    torch.testing.assert_close(dynamics.test(k_cross, 1e7), dynamics.test(k_cross, math.inf))


# --- gradient descent ---------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.2, 0.7, 0.95, 1.05])  # of 2n / lambda_max
def test_gd_matches_the_recurrence(fraction: float) -> None:
    n, m = 5, 3
    k, k_cross, _ = split(joint_kernel(n + m, 4, seed=9, scale=3.0), n)
    y, f0, f0_test = randn(n, 2, seed=10), randn(n, 2, seed=11), randn(m, 2, seed=12)
    dynamics = predict.KernelDynamics(k, y, f0)
    lr = fraction * dynamics.max_stable_lr
    steps = [0, 1, 2, 7, 30]
    train, test = dynamics.gd_train(steps, lr), dynamics.gd_test(k_cross, steps, lr, f0_test)
    for i, s in enumerate(steps):
        f, f_test = gd_reference(k, k_cross, y, f0, f0_test, s, lr)
        torch.testing.assert_close(train[i], f, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(test[i], f_test, rtol=1e-10, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5), rank=st.integers(0, 5), seed=st.integers(0, 10**6),
       fraction=st.floats(0.01, 0.99), steps=st.integers(0, 40))
def test_gd_property(n: int, rank: int, seed: int, fraction: float, steps: int) -> None:
    k, k_cross, _ = split(joint_kernel(n + 2, rank, seed), n)
    y, f0 = randn(n, seed=seed + 1), randn(n, seed=seed + 2)
    dynamics = predict.KernelDynamics(k, y, f0)
    lr = fraction * min(dynamics.max_stable_lr, 1e3)
    f, f_test = gd_reference(k, k_cross, y, f0, torch.zeros(2, dtype=F64), steps, lr)
    torch.testing.assert_close(dynamics.gd_train(steps, lr), f, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(dynamics.gd_test(k_cross, steps, lr), f_test,
                               rtol=1e-9, atol=1e-9)


def test_gd_with_a_mode_killed_in_one_step() -> None:
    # lr lambda / n = 1 exactly for lambda = 3: q = 0, a case for 0^0 = 1 and 0^s = 0.
    k = torch.diag(torch.tensor([0.75, 1.5, 3.0], dtype=F64))
    y, f0 = randn(3, seed=13), randn(3, seed=14)
    k_cross = randn(2, 3, seed=15)
    dynamics = predict.KernelDynamics(k, y, f0)
    for s in range(4):
        f, f_test = gd_reference(k, k_cross, y, f0, torch.zeros(2, dtype=F64), s, 1.0)
        torch.testing.assert_close(dynamics.gd_train(s, 1.0), f, rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(dynamics.gd_test(k_cross, s, 1.0), f_test,
                                   rtol=1e-14, atol=1e-14)


def test_gd_tends_to_gradient_flow_as_lr_shrinks() -> None:
    n, m, t = 5, 2, 4.0
    k, k_cross, _ = split(joint_kernel(n + m, 6, seed=16, scale=4.0), n)
    y = randn(n, seed=17)
    dynamics = predict.KernelDynamics(k, y)
    flow_train, flow_test = dynamics.train(t), dynamics.test(k_cross, t)
    errors = []
    for steps in [10, 100, 1000]:
        lr = t / steps
        errors.append(max(float((dynamics.gd_train(steps, lr) - flow_train).abs().max()),
                          float((dynamics.gd_test(k_cross, steps, lr) - flow_test).abs().max())))
    assert errors[2] < 1e-3
    for coarse, fine in itertools.pairwise(errors):  # first order in lr
        assert 7 < coarse / fine < 13


def test_max_stable_lr_separates_shrinking_from_growing_residuals() -> None:
    n = 6
    k = joint_kernel(n, 8, seed=18, scale=2.0)
    lam_max = float(torch.linalg.eigvalsh(k)[-1])
    bound = predict.max_stable_lr(k)
    assert bound == pytest.approx(2 * n / lam_max, rel=1e-12)
    y, f0 = randn(n, seed=19), randn(n, seed=20)
    dynamics = predict.KernelDynamics(k, y, f0)
    assert dynamics.max_stable_lr == pytest.approx(bound, rel=1e-12)
    start = float((f0 - y).norm())
    for factor, shrinks in [(0.99, True), (1.01, False)]:
        lr = factor * bound
        f, _ = gd_reference(k, k[:1], y, f0, torch.zeros(1, dtype=F64), 600, lr)
        assert (float((f - y).norm()) < start / 10) is shrinks
        assert (float((f - y).norm()) > start * 10) is not shrinks
        torch.testing.assert_close(dynamics.gd_train(600, lr), f, rtol=1e-8, atol=1e-8)
    assert predict.max_stable_lr(torch.zeros(3, 3, dtype=F64)) == math.inf


# --- full (n, n, k, k) kernels ------------------------------------------------------------


def unflatten_kernel(flat: torch.Tensor, rows: int, cols: int, k: int) -> torch.Tensor:
    """(rows k, cols k) with row i k + a -> (rows, cols, k, k) with entry [i, j, a, b]."""
    return flat.reshape(rows, k, cols, k).permute(0, 2, 1, 3)


def test_full_kernel_times_identity_agrees_with_the_shared_kernel() -> None:
    n, m, k = 5, 3, 2
    joint = joint_kernel(n + m, 7, seed=21)
    shared = split(joint, n)
    eye = torch.eye(k, dtype=F64)
    full = [s[:, :, None, None] * eye for s in shared]
    y, f0, f0_test = randn(n, k, seed=22), randn(n, k, seed=23), randn(m, k, seed=24)
    a = predict.KernelDynamics(shared[0], y, f0)
    b = predict.KernelDynamics(full[0], y, f0)
    times = [0.5, 3.0, math.inf]
    torch.testing.assert_close(b.train(times), a.train(times))
    torch.testing.assert_close(b.test(full[1], times, f0_test), a.test(shared[1], times, f0_test))
    torch.testing.assert_close(b.gd_train([1, 9], 0.7), a.gd_train([1, 9], 0.7))
    torch.testing.assert_close(b.gd_test(full[1], 4, 0.7), a.gd_test(shared[1], 4, 0.7))
    assert b.max_stable_lr == pytest.approx(a.max_stable_lr, rel=1e-12)
    torch.testing.assert_close(predict.kernel_regression(full[0], full[1], y, 0.1),
                               predict.kernel_regression(shared[0], shared[1], y, 0.1))
    posterior_full = predict.gp_posterior(*full, y, 0.1)
    posterior = predict.gp_posterior(*shared, y, 0.1)
    torch.testing.assert_close(posterior_full.mean, posterior.mean)
    torch.testing.assert_close(posterior_full.covariance,
                               posterior.covariance[:, :, None, None] * eye)
    gp_full = predict.ntk_gp(y, times, ntk_train=full[0], ntk_test_train=full[1],
                             nngp_train=full[0] / 2, nngp_test_train=full[1] / 2,
                             nngp_test=full[2] / 2)
    gp = predict.ntk_gp(y, times, ntk_train=shared[0], ntk_test_train=shared[1],
                        nngp_train=shared[0] / 2, nngp_test_train=shared[1] / 2,
                        nngp_test=shared[2] / 2)
    torch.testing.assert_close(gp_full.mean, gp.mean)
    torch.testing.assert_close(gp_full.covariance, gp.covariance[..., None, None] * eye)


def test_full_kernel_matches_the_flattened_matrix_exponential() -> None:
    n, m, k = 4, 2, 3
    flat = joint_kernel((n + m) * k, 10, seed=25, scale=3.0)  # PSD on (point, output) pairs
    k_train = unflatten_kernel(flat[:n * k, :n * k], n, n, k)
    k_cross = unflatten_kernel(flat[n * k:, :n * k], m, n, k)
    y, f0 = randn(n, k, seed=26), randn(n, k, seed=27)
    dynamics = predict.KernelDynamics(k_train, y, f0)
    t = 1.5
    expected = flow_train_reference(flat[:n * k, :n * k], y.reshape(-1), f0.reshape(-1), t, n)
    torch.testing.assert_close(dynamics.train(t), expected.reshape(n, k))
    expected = flow_test_reference(flat[:n * k, :n * k], flat[n * k:, :n * k], y.reshape(-1),
                                   f0.reshape(-1), torch.zeros(m * k, dtype=F64), t, n)
    torch.testing.assert_close(dynamics.test(k_cross, t), expected.reshape(m, k))
    assert predict.max_stable_lr(k_train) == pytest.approx(
        2 * n / float(torch.linalg.eigvalsh(flat[:n * k, :n * k])[-1]), rel=1e-12)


# --- regression and Gaussian processes ----------------------------------------------------


@pytest.mark.parametrize("jitter", [0.0, 0.3])
def test_regression_and_gp_posterior_match_direct_solves(jitter: float) -> None:
    n, m = 6, 4
    k, k_cross, k_test = split(joint_kernel(n + m, 10, seed=28), n)
    y = randn(n, 2, seed=29)
    regularized = k + jitter * torch.eye(n, dtype=F64)
    mean = k_cross @ torch.linalg.solve(regularized, y)
    covariance = k_test - k_cross @ torch.linalg.solve(regularized, k_cross.T)
    torch.testing.assert_close(predict.kernel_regression(k, k_cross, y, ridge=jitter), mean)
    posterior = predict.gp_posterior(k, k_cross, k_test, y, noise_variance=jitter)
    torch.testing.assert_close(posterior.mean, mean)
    torch.testing.assert_close(posterior.covariance, covariance)
    assert torch.equal(posterior.covariance, posterior.covariance.T)


def test_ntk_gp_with_equal_kernels_at_infinite_time_is_the_gp_posterior() -> None:
    n, m = 5, 3
    k, k_cross, k_test = split(joint_kernel(n + m, 9, seed=30), n)
    y = randn(n, seed=31)
    result = predict.ntk_gp(y, ntk_train=k, ntk_test_train=k_cross, nngp_train=k,
                            nngp_test_train=k_cross, nngp_test=k_test)
    torch.testing.assert_close(result.mean, k_cross @ torch.linalg.solve(k, y))
    torch.testing.assert_close(result.covariance,
                               k_test - k_cross @ torch.linalg.solve(k, k_cross.T))


def test_ntk_gp_matches_a_monte_carlo_over_initializations() -> None:
    n, m, samples = 4, 3, 40_000
    nngp = joint_kernel(n + m, 9, seed=32)
    ntk_train, ntk_cross, _ = split(joint_kernel(n + m, 9, seed=33, scale=2.0), n)
    y = randn(n, seed=34)
    # f_0 ~ N(0, NNGP) jointly on train and test points
    f0 = randn(samples, n + m, seed=35) @ torch.linalg.cholesky(nngp).T
    f0_train, f0_test = f0[:, :n], f0[:, n:]
    times = [0.0, 0.7, 5.0, math.inf]
    result = predict.ntk_gp(y, times, ntk_train=ntk_train, ntk_test_train=ntk_cross,
                            nngp_train=nngp[:n, :n], nngp_test_train=nngp[n:, :n],
                            nngp_test=nngp[n:, n:])
    assert result.mean.shape == (len(times), m)
    assert result.covariance.shape == (len(times), m, m)
    eye = torch.eye(n, dtype=F64)
    for i, t in enumerate(times):
        decay = torch.zeros_like(eye) if math.isinf(t) \
            else torch.linalg.matrix_exp(-ntk_train * t / n)
        operator = ntk_cross @ torch.linalg.solve(ntk_train, eye - decay)
        outputs = f0_test + (y - f0_train) @ operator.T  # the linearized dynamics, per sample
        mean, covariance = result.mean[i], result.covariance[i]
        variances = covariance.diagonal()
        mean_error = (outputs.mean(0) - mean).abs()
        assert bool((mean_error <= 5 * (variances / samples).sqrt() + 1e-12).all())
        sample_covariance = torch.cov(outputs.T)
        # standard error of a Gaussian sample covariance: sqrt((S_ii S_jj + S_ij^2) / samples)
        standard_error = ((variances[:, None] * variances + covariance**2) / samples).sqrt()
        assert bool(((sample_covariance - covariance).abs() <= 5 * standard_error + 1e-12).all())


# --- shapes, dtypes and bad input ---------------------------------------------------------


def test_shapes_and_dtypes_follow_the_inputs() -> None:
    n, m = 4, 2
    k, k_cross, k_test = split(joint_kernel(n + m, 6, seed=36), n)
    y = randn(n, seed=37)
    dynamics = predict.KernelDynamics(k.float(), y.float())
    assert dynamics.train(1.0).dtype == torch.float32
    assert dynamics.eigenvalues.dtype == F64
    assert dynamics.train(torch.tensor(1.0)).shape == (n,)
    assert dynamics.train(np.array([1.0, 2.0])).shape == (2, n)
    assert dynamics.test(k_cross.float(), (1.0,)).shape == (1, m)
    assert dynamics.test(k_cross, 1.0).dtype == F64  # promoted with the float64 test kernel
    assert dynamics.gd_train(torch.tensor([1, 2, 3]), 0.1).shape == (3, n)
    assert predict.kernel_regression(k.float(), k_cross.float(), y.float()).dtype == torch.float32
    assert predict.gp_posterior(k, k_cross, k_test, y).covariance.shape == (m, m)
    # the float32 path agrees with float64 to float32 precision
    torch.testing.assert_close(dynamics.train([0.5, 2.0]),
                               predict.KernelDynamics(k, y).train([0.5, 2.0]).float())


def _kernel() -> torch.Tensor:
    return joint_kernel(3, 5, seed=38)


def _y() -> torch.Tensor:
    return randn(3, seed=39)


def _nan_kernel() -> torch.Tensor:
    k = _kernel()
    k[0, 1] = math.nan
    return k


def _indefinite() -> torch.Tensor:
    return torch.diag(torch.tensor([1.0, -0.5, 2.0], dtype=F64))


def _dynamics() -> predict.KernelDynamics:
    return predict.KernelDynamics(_kernel(), _y(), randn(3, seed=40))


def _singular() -> torch.Tensor:
    return torch.ones(3, 3, dtype=F64)


BAD_CALLS = {
    "class labels": (lambda: predict.kernel_regression(_kernel(), randn(2, 3, seed=0),
                                                       torch.tensor([0, 2, 1])),
                     r"one-hot encode class labels, e.g. torch.nn.functional.one_hot\(y\)"
                     r"\.double\(\)"),
    "non-square": (lambda: predict.KernelDynamics(torch.ones(3, 4, dtype=F64), _y()), "square"),
    "3-d kernel": (lambda: predict.KernelDynamics(torch.ones(3, 3, 2, dtype=F64), _y()),
                   "square"),
    "uneven outputs": (lambda: predict.KernelDynamics(torch.ones(3, 3, 2, 3, dtype=F64), _y()),
                       "square"),
    "empty": (lambda: predict.max_stable_lr(torch.ones(0, 0, dtype=F64)), "square"),
    "nan kernel": (lambda: predict.KernelDynamics(_nan_kernel(), _y()), "NaN"),
    "int kernel": (lambda: predict.KernelDynamics(torch.eye(3, dtype=torch.int64), _y()),
                   "floating-point"),
    "list kernel": (lambda: predict.max_stable_lr([[1.0]]), "torch.Tensor"),
    "indefinite": (lambda: predict.KernelDynamics(_indefinite(), _y()),
                   "not positive semi-definite"),
    "y rows": (lambda: predict.KernelDynamics(_kernel(), randn(4, seed=0)), "y must have shape"),
    "y 3-d": (lambda: predict.KernelDynamics(_kernel(), randn(3, 1, 1, seed=0)),
              "y must have shape"),
    "y nan": (lambda: predict.KernelDynamics(_kernel(), torch.full((3,), math.nan)), "y contains"),
    "full y": (lambda: predict.KernelDynamics(torch.ones(3, 3, 2, 2, dtype=F64), _y()),
               r"shape \(n, k\)"),
    "f0 shape": (lambda: predict.KernelDynamics(_kernel(), _y(), randn(3, 2, seed=0)),
                 "f0 must have shape"),
    "test cols": (lambda: predict.KernelDynamics(_kernel(), _y()).test(randn(2, 4, seed=0), 1.0),
                  "ntk_test_train must have shape"),
    "test nan": (lambda: predict.KernelDynamics(_kernel(), _y()).test(
        torch.full((2, 3), math.nan, dtype=F64), 1.0), "ntk_test_train contains"),
    "f0_test": (lambda: predict.KernelDynamics(_kernel(), _y()).test(
        randn(2, 3, seed=0), 1.0, randn(3, seed=0)), "f0_test must have shape"),
    "t beyond float64": (lambda: _dynamics().test(randn(2, 3, seed=0), 10**400),
                         r"t holds an integer beyond float64's range .* use math\.inf"),
    "steps beyond float64": (lambda: _dynamics().gd_train([1, 10**400], 0.1),
                             r"steps holds an integer beyond float64's range \(1\.8e308\)$"),
    "ridge beyond float64": (lambda: predict.kernel_regression(_kernel(), randn(2, 3, seed=0),
                                                               _y(), 10**400),
                             "ridge must be a finite real number, got an integer beyond"),
    "negative t": (lambda: predict.KernelDynamics(_kernel(), _y()).train([1.0, -1.0]),
                   "t must be times >= 0"),
    "nan t": (lambda: predict.KernelDynamics(_kernel(), _y()).train(math.nan), "t must be"),
    "2-d t": (lambda: predict.KernelDynamics(_kernel(), _y()).train([[1.0]]), "1-D"),
    "empty t": (lambda: predict.KernelDynamics(_kernel(), _y()).train([]), "non-empty"),
    "text t": (lambda: predict.KernelDynamics(_kernel(), _y()).train("soon"), "t must be"),
    # numpy would read these as 1.0: text, booleans in a list or numpy booleans are no times
    "numeric text t": (lambda: predict.KernelDynamics(_kernel(), _y()).train("1"),
                       "t must be a real number or a non-empty 1-D sequence"),
    "boolean list t": (lambda: predict.KernelDynamics(_kernel(), _y()).train([True, False]),
                       "t must be a real number"),
    "numpy boolean steps": (lambda: predict.KernelDynamics(_kernel(), _y()).gd_train(
        np.bool_(True), 0.1), "steps must be a real number"),
    "fractional steps": (lambda: predict.KernelDynamics(_kernel(), _y()).gd_train(1.5, 0.1),
                         "whole numbers"),
    "negative steps": (lambda: predict.KernelDynamics(_kernel(), _y()).gd_train(-1, 0.1),
                       "whole numbers"),
    "infinite steps": (lambda: predict.KernelDynamics(_kernel(), _y()).gd_train(math.inf, 0.1),
                       "whole numbers"),
    "zero lr": (lambda: predict.KernelDynamics(_kernel(), _y()).gd_train(1, 0.0), "lr must be >"),
    "GD overflowing": (lambda: _dynamics().gd_train([10, 10**6], 3 * _dynamics().max_stable_lr),
                       "overflow torch.float64 .* above max_stable_lr"),
    "GD overflowing on test points": (lambda: _dynamics().gd_test(
        randn(2, 3, seed=0), 10**6, 3 * _dynamics().max_stable_lr), "diverges"),
    "nan lr": (lambda: predict.KernelDynamics(_kernel(), _y()).gd_test(
        randn(2, 3, seed=0), 1, math.nan), "lr must be a finite"),
    "negative ridge": (lambda: predict.kernel_regression(_kernel(), randn(2, 3, seed=0), _y(),
                                                         -1.0), "ridge must be >= 0"),
    "singular ridge": (lambda: predict.kernel_regression(_singular(), randn(2, 3, seed=0),
                                                         _y()), "singular.*positive ridge"),
    "negative noise": (lambda: predict.gp_posterior(_kernel(), randn(2, 3, seed=0),
                                                    torch.eye(2, dtype=F64), _y(), -0.1),
                       "noise_variance must be >= 0"),
    "singular noise": (lambda: predict.gp_posterior(_singular(), randn(2, 3, seed=0),
                                                    torch.eye(2, dtype=F64), _y()),
                       "positive noise_variance"),
    "k_test shape": (lambda: predict.gp_posterior(_kernel(), randn(2, 3, seed=0),
                                                  torch.eye(3, dtype=F64), _y()),
                     "k_test must have shape"),
    "ntk_gp nngp": (lambda: predict.ntk_gp(_y(), ntk_train=_kernel(),
                                           ntk_test_train=randn(2, 3, seed=0),
                                           nngp_train=torch.eye(2, dtype=F64),
                                           nngp_test_train=randn(2, 3, seed=0),
                                           nngp_test=torch.eye(2, dtype=F64)),
                    "nngp_train must have shape"),
    "ntk_gp negative t": (lambda: predict.ntk_gp(_y(), -1.0, ntk_train=_kernel(),
                                                 ntk_test_train=randn(2, 3, seed=0),
                                                 nngp_train=_kernel(),
                                                 nngp_test_train=randn(2, 3, seed=0),
                                                 nngp_test=torch.eye(2, dtype=F64)),
                          "t must be"),
}


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_input_raises_a_widenet_error(case: str) -> None:
    call, message = BAD_CALLS[case]
    with pytest.raises(WidenetError, match=message):
        call()


def test_gd_on_a_linearized_network_matches_its_empirical_ntk() -> None:
    # Parameter-space GD on the linearized MLP with L = (1/(2n)) sum_i ||f(x_i) - y_i||^2,
    # predicted from empirical_ntk(..., outputs="full"): checks the loss, time and flattening
    # conventions against a real model.
    net = MLP(3, [16], 2, seed=0, dtype=F64)
    x, x_test = randn(5, 3, seed=40), randn(3, 3, seed=41)
    y = randn(5, 2, seed=42)
    params = {name: p.detach() for name, p in net.named_parameters()}

    def jacobian(points: torch.Tensor) -> torch.Tensor:
        jac = jacrev(lambda p: functional_call(net, p, (points,)))(params)
        return torch.cat([j.reshape(*j.shape[:2], -1) for j in jac.values()], dim=2)

    j_train, j_test = jacobian(x), jacobian(x_test)
    with torch.no_grad():
        f0, f0_test = net(x), net(x_test)
    dynamics = predict.KernelDynamics(empirical_ntk(net, x, outputs="full").full, y, f0)
    lr, steps = 0.5 * dynamics.max_stable_lr, 25
    delta = torch.zeros(j_train.shape[2], dtype=F64)  # w - w_0
    for _ in range(steps):
        residual = f0 + j_train @ delta - y
        delta = delta - lr / 5 * torch.einsum("ikp,ik->p", j_train, residual)
    cross = empirical_ntk(net, x_test, x, outputs="full").full
    torch.testing.assert_close(dynamics.gd_train(steps, lr), f0 + j_train @ delta)
    torch.testing.assert_close(dynamics.gd_test(cross, steps, lr, f0_test),
                               f0_test + j_test @ delta)


@pytest.mark.parametrize("t", [1e-12, 1e-7])
def test_training_outputs_keep_their_relative_precision_at_tiny_times(t: float) -> None:
    """From f_0 = 0, f_train(t) = V (1 - exp(-Lambda t/n)) V^T y equals the series
    (t/n) K y - (t/n)^2 K^2 y / 2 up to (t ||K|| / n)^3 ||y|| / 6 and the eigendecomposition's
    round-off, 10 n eps (t/n) ||K||_F ||y||. y + V exp(..) V^T (0 - y) cancelled to eps ||y||,
    1e-4 relative at t = 1e-12 (before the fix); one GD step of size lr = t is exactly
    (t/n) K y."""
    n = 30
    kernel = joint_kernel(n, n, seed=21)
    y = torch.randn(n, 2, generator=generator(22), dtype=F64)
    scale = t / n
    series = scale * kernel @ y - scale**2 / 2 * kernel @ (kernel @ y)
    norm = float(torch.linalg.matrix_norm(kernel))
    bound = 10 * n * torch.finfo(F64).eps * scale * norm * float(y.norm()) \
        + (scale * norm) ** 3 / 6 * float(y.norm())
    dynamics = predict.KernelDynamics(kernel, y)
    assert float((dynamics.train(t) - series).norm()) <= bound
    assert float((dynamics.train([0.0, t])[1] - series).norm()) <= bound
    assert float((dynamics.gd_train(1, t) - scale * kernel @ y).norm()) <= bound
