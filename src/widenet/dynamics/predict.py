"""Closed-form kernel dynamics for MSE, kernel regression and GP posteriors.

Formulas: docs/theory.md section 5.

Conventions shared by every function here:

- Loss L = (1/(2n)) sum_i ||f(x_i) - y_i||^2 over the n training points; gradient-flow time
  t = lr * steps, so df(X)/dt = -(1/n) K (f(X) - y).
- A kernel is either (n1, n2), shared by all k outputs (infinite-width kernels, which are
  Theta x I_k), or full, (n1, n2, k, k) with entry [i, j, a, b] = <df_a(x_i), df_b(x_j)> (as
  from ``empirical_ntk(..., outputs="full").full``), flattened internally to (n1 k, n2 k)
  with row i k + a. All kernels of one call take the same form.
- Targets y are (n,) or (n, k); outputs on m points are (m,) or (m, k) likewise.
- Times (or step counts) are a scalar, giving results shaped like the outputs, or a 1-D
  sequence of T values, giving results stacked as (T, ...).
- Linear algebra runs in float64 on the symmetrized kernels; results take the inputs' dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from widenet.dynamics._shapes import (
    Layout,
    finish,
    result_dtype,
    rows_of,
    training_layout,
)
from widenet.errors import WidenetError
from widenet.kernels.spectra import spectrum, symmetric_part
from widenet.validation import finite_real, time_grid

__all__ = ["GaussianPrediction", "KernelDynamics", "gp_posterior", "kernel_regression",
           "max_stable_lr", "ntk_gp"]


@dataclass(frozen=True)
class GaussianPrediction:
    """A Gaussian over the outputs on m test points.

    ``mean`` is (m,) or (m, k), like the targets. ``covariance`` is (m, m) for shared kernels (the
    same for every output; outputs are independent) or (m, m, k, k) for full kernels, entry
    [i, j, a, b] = Cov(f_a(x_i), f_b(x_j)). Both get a leading time axis T where the times were
    a sequence.
    """

    mean: torch.Tensor
    covariance: torch.Tensor


def _gain(one_minus_decay: torch.Tensor, time: torch.Tensor, eigenvalues: torch.Tensor,
          n: int) -> torch.Tensor:
    """(1 - d) / lambda as (time/n) (1 - d) / x with x = lambda time / n, and time/n at x = 0.

    ``time`` is (T,), ``eigenvalues`` (N,); the result is (T, N).
    """
    scale = time[:, None] / n
    x = scale * eigenvalues
    zero = x == 0
    return scale * torch.where(zero, 1.0, one_minus_decay / torch.where(zero, 1.0, x))


class KernelDynamics:
    """Gradient flow and gradient descent on MSE with a fixed kernel, in closed form.

    With the (flattened, symmetrized) training kernel K = V diag(lambda) V^T, eigendecomposed
    once in float64, targets y and initial outputs f_0 (default 0) on the n training points:

    - gradient flow: f_train(t) = f_0 + V (I - exp(-Lambda t / n)) V^T (y - f_0),
      f_test(t) = f_test,0 + K_*X V Lambda^-1 (I - exp(-Lambda t / n)) V^T (y - f_0),
      where 1 - e^{-lambda t/n} is evaluated with expm1 (1/lambda at t = inf), so that the
      change f(t) - f_0 keeps its relative precision at small t (y + V exp(..) V^T (f_0 - y)
      would cancel to the round-off of y);
    - GD with step lr: r_{s+1} = (I - (lr/n) K) r_s, so f_train = f_0 + V (1 - q^s) V^T (y - f_0)
      with q = 1 - lr Lambda/n, and f_test = f_test,0 + K_*X V Lambda^-1 (I - q^s) V^T (y - f_0),
      the geometric sum (lr/n) sum_{j<s} q^j.

    The kernel must be positive semi-definite up to round-off: eigenvalues above
    -tol = -(n k) eps max|lambda| (eps of the kernel's dtype) are clipped at 0, lower ones raise.
    Eigenvalues <= tol count as zero, at every time and step count: the residual's component
    along them stays (factor 1) and they add nothing to test outputs (gain 0), so large finite
    t converges to t = inf, f_test = f_test,0 + K_*X K^+ (y - f_0) (the pseudo-inverse). That
    is exact whenever K_*X vanishes on K's null space, as it does for the cross block of any
    positive semi-definite joint kernel (J J^T, every NTK and NNGP): the exact flow's term
    (t/n) K_*X v v^T (y - f_0) of a null eigenvector v is then zero, and computing it would
    only multiply K_*X v's round-off by t (by 1/lambda for a round-off eigenvalue lambda). A
    K_*X that does not vanish there is no such block; its exact flow drifts linearly in t
    along the null space, without limit, and that drift is left out.

    ``eigenvalues``: lambda, float64, ascending, (n k,) for a full kernel and (n,) otherwise.
    """

    def __init__(self, ntk_train: torch.Tensor, y: torch.Tensor,
                 f0: torch.Tensor | None = None):
        self._layout, matrix = training_layout(ntk_train, y, "ntk_train")
        self._dtype = result_dtype(ntk_train, y, f0)
        self._targets = self._layout.values(y, self.n, "y")
        self._start = torch.zeros_like(self._targets) if f0 is None \
            else self._layout.values(f0, self.n, "f0")
        values, self._vectors = torch.linalg.eigh(symmetric_part(matrix))
        self._tolerance = values.numel() * torch.finfo(ntk_train.dtype).eps \
            * float(values.abs().max())
        if float(values[0]) < -self._tolerance:
            raise WidenetError(
                f"ntk_train is not positive semi-definite: its smallest eigenvalue is "
                f"{float(values[0]):.3g}, beyond round-off (tolerance {self._tolerance:.3g}); "
                "a kernel J J^T never is: check how it was computed and flattened")
        self.eigenvalues = values.clamp(min=0)
        self._residual = self._vectors.T @ (self._start - self._targets)

    @property
    def n(self) -> int:
        """The number of training points."""
        return self._layout.n

    @property
    def max_stable_lr(self) -> float:
        """2n / lambda_max(K): GD on this quadratic converges iff lr is below it (inf if K = 0)."""
        return _stable_lr(self.n, float(self.eigenvalues[-1]))

    def train(self, t: object) -> torch.Tensor:
        """Gradient-flow outputs on the training points at time(s) t = lr * steps.

        f_train(t) = f_0 + V (I - exp(-Lambda t / n)) V^T (y - f_0); shape like y, with a
        leading T axis for a sequence of times.
        """
        times, scalar = time_grid(t, "t", device=self._layout.device)
        moved, _ = self._flow_factors(times)
        return finish(self._train(moved), scalar, self._dtype)

    def test(self, ntk_test_train: torch.Tensor, t: object,
             f0_test: torch.Tensor | None = None) -> torch.Tensor:
        """Gradient-flow outputs on m test points at time(s) t.

        f_test(t) = f0_test + K_*X V Lambda^-1 (I - exp(-Lambda t / n)) V^T (y - f_0), with
        K_*X = ``ntk_test_train`` (m, n) (or (m, n, k, k)) and f0_test (default 0) shaped like
        the outputs on the test points; shape (m,) or (m, k), leading T for a sequence of times.
        """
        times, scalar = time_grid(t, "t", device=self._layout.device)
        _, gain = self._flow_factors(times)
        return self._test(ntk_test_train, gain, f0_test, scalar)

    def gd_train(self, steps: object, lr: float) -> torch.Tensor:
        """Outputs on the training points after ``steps`` full-batch GD steps of size lr.

        f_train = f_0 + V (I - (I - lr Lambda / n)^steps) V^T (y - f_0); shapes as in
        :meth:`train`.
        """
        counts, scalar = time_grid(steps, "steps", steps=True, device=self._layout.device)
        moved, _ = self._gd_factors(counts, lr)
        return self._representable(finish(self._train(moved), scalar, self._dtype), lr)

    def gd_test(self, ntk_test_train: torch.Tensor, steps: object, lr: float,
                f0_test: torch.Tensor | None = None) -> torch.Tensor:
        """Outputs on m test points after ``steps`` GD steps of size lr.

        f_test = f0_test + K_*X V Lambda^-1 (I - (1 - lr Lambda / n)^steps) V^T (y - f_0), which
        is what iterating f_test <- f_test - (lr/n) K_*X (f_train - y) gives; shapes as in
        :meth:`test`.
        """
        counts, scalar = time_grid(steps, "steps", steps=True, device=self._layout.device)
        _, gain = self._gd_factors(counts, lr)
        return self._representable(self._test(ntk_test_train, gain, f0_test, scalar), lr)

    def _representable(self, outputs: torch.Tensor, lr: float) -> torch.Tensor:
        """GD's ``outputs`` if they are finite; raises where they overflowed their dtype (the
        modes above max_stable_lr grow without bound, and inf - inf gives NaN)."""
        if not bool(torch.isfinite(outputs).all()):
            cause = (f"GD with lr={lr:.3g} above max_stable_lr={self.max_stable_lr:.3g} "
                     "diverges" if lr > self.max_stable_lr else "the outputs are too large")
            raise WidenetError(f"the outputs overflow {outputs.dtype} within the steps asked "
                               f"for: {cause}; use fewer steps, a smaller lr or float64 inputs")
        return outputs

    def _flow_factors(self, times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """1 - exp(-lambda t / n) = -expm1(-lambda t / n) and that divided by lambda
        (1/lambda at t = inf), each (T, N); 0 on the null space (class docstring)."""
        x = times[:, None] / self.n * self.eigenvalues  # NaN at 0 * inf: on the null space
        positive = torch.where(self.eigenvalues > 0, self.eigenvalues, 1.0)
        moved = -torch.expm1(-x)
        return self._off_null(moved, moved / positive)

    def _off_null(self, moved: torch.Tensor, gain: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """``moved`` and ``gain`` (T, N) with 0 at the eigenvalues <= tol: the null space
        neither moves nor reaches the test outputs (class docstring)."""
        null = self.eigenvalues <= self._tolerance
        return torch.where(null, 0.0, moved), torch.where(null, 0.0, gain)

    def _gd_factors(self, steps: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        """1 - q^s and (1 - q^s) / lambda with q = 1 - lr lambda / n, each (T, N).

        |q|^s = exp(s log|q|) with log|q| = log1p(-a) for a = lr lambda / n < 1, so that slow
        modes keep their precision; 1 - q^s uses expm1 unless q^s < 0 (q < 0, s odd).
        """
        lr = finite_real(lr, "lr", minimum=0, strict=True)
        a = lr * self.eigenvalues / self.n
        log_abs_q = torch.where(a < 1, torch.log1p(-a.clamp(max=1)), torch.log((a - 1).abs()))
        s = steps[:, None]
        exponent = torch.where(s == 0, 0.0, s * log_abs_q)
        negative = (a > 1) & (torch.remainder(s, 2) == 1)
        one_minus = torch.where(negative, 1 + torch.exp(exponent), -torch.expm1(exponent))
        return self._off_null(one_minus, _gain(one_minus, steps * lr, self.eigenvalues, self.n))

    def _train(self, moved: torch.Tensor) -> torch.Tensor:
        """f_0 + V diag(moved_t) V^T (y - f_0) for each row of ``moved``, in output form."""
        coefficients = moved[:, :, None] * self._residual
        return self._layout.unflatten(self._start - self._vectors @ coefficients, self.n)

    def _test(self, ntk_test_train: torch.Tensor, gain: torch.Tensor,
              f0_test: torch.Tensor | None, scalar: bool) -> torch.Tensor:
        """f0_test + K_*X V diag(gain_t) V^T (y - f_0), in output form."""
        m = rows_of(ntk_test_train, "ntk_test_train")
        projected = self._project(ntk_test_train, m)
        start = 0.0 if f0_test is None else self._layout.values(f0_test, m, "f0_test")
        values = start - projected @ (gain[:, :, None] * self._residual)
        dtype = result_dtype(self._dtype, ntk_test_train, f0_test)
        return finish(self._layout.unflatten(values, m), scalar, dtype)

    def _project(self, ntk_test_train: torch.Tensor, m: int) -> torch.Tensor:
        """K_*X V: the test-train kernel in the training kernel's eigenbasis, (m k or m, N)."""
        return self._layout.kernel(ntk_test_train, m, self.n, "ntk_test_train") @ self._vectors


def _stable_lr(n: int, lambda_max: float) -> float:
    """2n / lambda_max, and inf for a zero kernel (nothing moves, any lr is stable)."""
    return 2 * n / lambda_max if lambda_max > 0 else math.inf


def max_stable_lr(ntk_train: torch.Tensor) -> float:
    """The largest stable GD learning rate for MSE with this kernel: 2n / lambda_max(K).

    n = ntk_train.shape[0] training points; a full (n, n, k, k) kernel is flattened to (n k, n k).
    GD's residual follows r_{s+1} = (I - (lr/n) K) r_s, which converges from every start iff
    |1 - lr lambda/n| < 1 for every eigenvalue, i.e. lr < 2n / lambda_max (inf when K = 0).
    """
    _, matrix = training_layout(ntk_train, None, "ntk_train")
    return _stable_lr(ntk_train.shape[0], spectrum(matrix).lambda_max)


def ntk_gp(y: torch.Tensor, t: object = math.inf, *, ntk_train: torch.Tensor,
           ntk_test_train: torch.Tensor, nngp_train: torch.Tensor,
           nngp_test_train: torch.Tensor, nngp_test: torch.Tensor) -> GaussianPrediction:
    """The distribution over initializations of an infinitely wide net trained by gradient flow.

    Lee et al. (2019): with f_0 ~ GP(0, K) (K the NNGP) and the linearized dynamics
    f_t(X*) = f_0(X*) + A_t (y - f_0(X)), A_t = Theta_*X Theta^-1 (I - exp(-Theta t / n)),
    the test outputs at time t are Gaussian with
        mean       A_t y
        covariance K_** + A_t K A_t^T - (A_t K_X* + K_*X A_t^T).
    A_t = Theta_*X V Lambda^-1 (I - exp(-Lambda t/n)) V^T as in :class:`KernelDynamics` (0 on
    Theta's null space; t = inf, the default, gives Theta_*X Theta^+). Kernels: ``*_train``
    (n, n), ``*_test_train`` (m, n), ``nngp_test`` (m, m), or all full (..., k, k).
    """
    dynamics = KernelDynamics(ntk_train, y)
    layout, n = dynamics._layout, dynamics.n
    times, scalar = time_grid(t, "t", device=layout.device)
    _, gain = dynamics._flow_factors(times)
    m = rows_of(ntk_test_train, "ntk_test_train")
    projected = dynamics._project(ntk_test_train, m)
    operator = (projected * gain[:, None, :]) @ dynamics._vectors.T
    prior = layout.kernel(nngp_train, n, n, "nngp_train")
    cross = layout.kernel(nngp_test_train, m, n, "nngp_test_train")
    mixed = operator @ cross.T
    covariance = layout.kernel(nngp_test, m, m, "nngp_test") - mixed - mixed.mT \
        + operator @ prior @ operator.mT
    dtype = result_dtype(dynamics._dtype, ntk_test_train, nngp_train, nngp_test_train,
                          nngp_test)
    mean = layout.unflatten(operator @ dynamics._targets, m)
    covariance = layout.covariance((covariance + covariance.mT) / 2, m)
    return GaussianPrediction(finish(mean, scalar, dtype), finish(covariance, scalar, dtype))


@dataclass(frozen=True)
class _Regression:
    """K + jitter I factored for one training kernel, and the posterior mean on the test points."""

    layout: Layout
    factor: torch.Tensor
    cross: torch.Tensor
    mean: torch.Tensor
    points: int
    dtype: torch.dtype


def _regress(k_train: torch.Tensor, k_test_train: torch.Tensor, y: torch.Tensor,
             jitter: float, jitter_name: str) -> _Regression:
    """Cholesky-factor K + jitter I and return it with mean K_*X (K + jitter I)^-1 y.

    Raises when K + jitter I is singular to working precision: a Cholesky pivot p with
    p^2 <= (n k) eps max diag (eps of the kernel's dtype) or a failed factorization.
    """
    jitter = finite_real(jitter, jitter_name, minimum=0)
    layout, matrix = training_layout(k_train, y, "k_train")
    m = rows_of(k_test_train, "k_test_train")
    cross = layout.kernel(k_test_train, m, layout.n, "k_test_train")
    regularized = symmetric_part(matrix)
    regularized.diagonal().add_(jitter)
    factor, info = torch.linalg.cholesky_ex(regularized)
    threshold = regularized.shape[0] * torch.finfo(k_train.dtype).eps \
        * float(regularized.diagonal().max())
    if int(info) != 0 or float(factor.diagonal().min()) ** 2 <= threshold:
        raise WidenetError(
            f"k_train + {jitter_name} * I is singular (or not positive definite) to working "
            f"precision with {jitter_name}={jitter}; pass a positive {jitter_name}, e.g. "
            f"{jitter_name}=1e-6 * k_train's mean diagonal")
    mean = cross @ torch.cholesky_solve(layout.values(y, layout.n, "y"), factor)
    dtype = result_dtype(k_train, k_test_train, y)
    return _Regression(layout, factor, cross, mean, m, dtype)


def kernel_regression(k_train: torch.Tensor, k_test_train: torch.Tensor, y: torch.Tensor,
                      ridge: float = 0.0) -> torch.Tensor:
    """Kernel ridge regression: K_*X (K + ridge I)^-1 y on the m test points, via Cholesky.

    k_train (n, n), k_test_train (m, n) (or both full), y (n,) or (n, k); ridge >= 0, and ridge
    = 0 (interpolation, the t = inf limit of gradient flow from f_0 = 0) needs a nonsingular K.
    Returns (m,) or (m, k).
    """
    fit = _regress(k_train, k_test_train, y, ridge, "ridge")
    return fit.layout.unflatten(fit.mean, fit.points).to(fit.dtype)


def gp_posterior(k_train: torch.Tensor, k_test_train: torch.Tensor, k_test: torch.Tensor,
                 y: torch.Tensor, noise_variance: float = 0.0) -> GaussianPrediction:
    """The posterior of a GP prior f ~ GP(0, K) given y = f(X) + N(0, noise_variance I).

    mean K_*X (K + s^2 I)^-1 y, covariance K_** - K_*X (K + s^2 I)^-1 K_X* (of f, without the
    noise), with s^2 = noise_variance >= 0, by Cholesky. Kernels: k_train (n, n), k_test_train
    (m, n), k_test (m, m), or all full; shapes of the result as in :class:`GaussianPrediction`.
    """
    fit = _regress(k_train, k_test_train, y, noise_variance, "noise_variance")
    whitened = torch.linalg.solve_triangular(fit.factor, fit.cross.T, upper=False)
    covariance = fit.layout.kernel(k_test, fit.points, fit.points, "k_test") \
        - whitened.T @ whitened
    dtype = result_dtype(fit.dtype, k_test)
    return GaussianPrediction(fit.layout.unflatten(fit.mean, fit.points).to(dtype),
                              fit.layout.covariance((covariance + covariance.T) / 2,
                                                    fit.points).to(dtype))
