"""A Nystrom preconditioner for (K + ridge I) alpha = y, from m random columns of K.

The idea of Falkon (Rudi, Carratino & Rosasco 2017) and EigenPro (Ma & Belkin 2017): a kernel
matrix has a few large eigenvalues that make conjugate gradients slow, and m columns of it
chosen at random already see them. With S a uniform random subset of m points,

    K_hat = K_nS K_SS^+ K_Sn                               (the Nystrom approximation of K)

and, K being symmetric, the columns K_nS are the rows K_Sn read back: m rows of the file, not
a pass over it. K_hat is computed in the stable form of Frangella, Tropp & Udell (2023,
"Randomized Nystrom preconditioning", Algorithm 2.1, with the sketch Omega = the columns S of
the identity): with a shift nu = max(n eps ||K_Sn||_F, eps_K ||K_SS||_F) (eps float64's, eps_K
that of the stored values, ``kernel.eps``: their rounding E has ||E||_2 <= eps_K ||K_SS||_F / 2,
so K_SS + nu I is positive definite even where a float32 K_SS of duplicated points has
eigenvalues of order -eps32 ||K||),

    C C^T = K_SS + nu I           (Cholesky),    X = C^-1 K_Sn        (m x n),
    X X^T = W Sigma^2 W^T         (eigendecomposition, m x m),
    U = X^T W Sigma^-1            (n x l, orthonormal columns),   Lambda = Sigma^2 - nu,

so that U Lambda U^T = K_nS (K_SS + nu I)^-1 K_Sn - nu U U^T ~ K_hat; the l directions kept
are those with Lambda_i above round-off (m eps Sigma_max^2 and nu). The preconditioner is the
inverse of

    P = U (Lambda + ridge I) U^T / (lambda_l + ridge) + (I - U U^T),

    P^-1 = (lambda_l + ridge) U (Lambda + ridge I)^-1 U^T + (I - U U^T),

with lambda_l the smallest kept eigenvalue. On the span of U, P is (K_hat + ridge I), scaled;
on its complement, where K's eigenvalues lie below about lambda_l, P is the identity scaled the
same way. Hence P^-1 (K + ridge I) has its top eigenvalues near 1 and the rest in
[ridge / (lambda_l + ridge), 1 + ||K - K_hat|| / (lambda_l + ridge)]: the condition number
drops from (lambda_1 + ridge) / (lambda_n + ridge) to about (lambda_l + ridge + ||K - K_hat||)
/ (lambda_n + ridge) (Frangella et al., Proposition 5.3). Since U Lambda U^T -> K_nS K_SS^-1
K_Sn as nu -> 0, this is Falkon's (K_nm K_mm^-1 K_mn + ridge I)^-1 on the span of U; the
Woodbury form (1/ridge)(I - K_nm (ridge K_mm + K_mn K_nm)^-1 K_mn) of the same inverse is not
used because it fails at ridge = 0 and squares the condition number of K_mm.

Cost: m rows of K, three (m, n) x (n, m)-sized products and two m x m factorizations; memory
two (m, n) float64 matrices while building, one after. Applying P^-1 costs O(n l k).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

from widenet.errors import WidenetError
from widenet.seeds import check_seed
from widenet.solvers.arguments import asymmetry_tolerance, column_scales, square_size
from widenet.solvers.blocked import BlockedKernel
from widenet.validation import finite_real, positive_int

MAX_DEFAULT_RANK = 500


def default_rank(n: int) -> int:
    """The default number of columns m: a quarter of the points, at most 500."""
    return max(1, min(MAX_DEFAULT_RANK, n // 4))


class NystromPreconditioner:
    """P^-1 of the module docstring for the kernel ``kernel`` and ``ridge``, from ``rank``
    random columns (default :func:`default_rank`) drawn with ``seed``. Call it on a residual
    R of shape (n, k) to get P^-1 R."""

    def __init__(self, kernel: BlockedKernel, ridge: float = 0.0, *, rank: int | None = None,
                 seed: int = 0):
        n = square_size(kernel)
        ridge = finite_real(ridge, "ridge", minimum=0.0)
        rank = default_rank(n) if rank is None else positive_int(rank, "rank")
        if rank > n:
            raise WidenetError(f"rank must be at most the number of points ({n}), got {rank}")
        seed = check_seed(seed)
        subset = np.sort(np.random.default_rng(seed).choice(n, size=rank, replace=False))
        rows = kernel.take(subset).numpy()  # K_Sn, (m, n)
        if not np.isfinite(rows).all():
            raise WidenetError("the kernel has values that are not finite in the preconditioner's "
                               "rows; recompute it")
        # K / c and ridge / c for a power of two c ~ max |K_Sn| (exact): P^-1 is the same, and
        # the norms below neither overflow (K of 1e300) nor underflow
        c = float(column_scales(torch.from_numpy(rows.reshape(-1, 1)))[0])
        rows /= c
        inner = rows[:, subset]
        asymmetry, size = float(np.linalg.norm(inner - inner.T)), float(np.linalg.norm(inner))
        allowed = asymmetry_tolerance(kernel.eps)
        if asymmetry > allowed * size:
            raise WidenetError(
                f"the kernel is not symmetric: on the preconditioner's {rank} points, "
                f"||K_SS - K_SS^T||_F is {asymmetry / size:.3g} times ||K_SS||_F, beyond round-off "
                f"({allowed:.3g}); a training kernel K(x, x) is symmetric: check that it is "
                "not a test-by-train kernel")
        shift = max(n * np.finfo(np.float64).eps * float(np.linalg.norm(rows)),
                    kernel.eps * float(np.linalg.norm(inner)), np.finfo(np.float64).tiny)
        inner = (inner + inner.T) / 2 + shift * np.eye(rank)
        try:
            factor = scipy.linalg.cholesky(inner, lower=True)
        except np.linalg.LinAlgError:
            raise WidenetError("the kernel restricted to the preconditioner's columns is not "
                               "positive semi-definite; check that the file holds a kernel "
                               "matrix (symmetric, from one set of points)") from None
        x = scipy.linalg.solve_triangular(factor, rows, lower=True, overwrite_b=True)
        squares, w = np.linalg.eigh(x @ x.T)
        floor = max(shift, rank * np.finfo(np.float64).eps * float(squares[-1]))
        keep = np.flatnonzero(squares - shift > floor)[::-1]  # descending
        scaled = torch.from_numpy(squares[keep] - shift)
        self.eigenvalues = scaled * c
        """Lambda, the kept eigenvalues of K_hat, descending."""
        self._basis_t = torch.from_numpy((w[:, keep] / np.sqrt(squares[keep])).T @ x)  # U^T
        smallest = float(scaled[-1]) if len(keep) else 0.0
        self._scale = (smallest + ridge / c) / (scaled + ridge / c) - 1.0
        self.rank, self.ridge, self.subset = rank, ridge, subset

    def __call__(self, residual: torch.Tensor) -> torch.Tensor:
        """P^-1 R = R + U diag((lambda_l + ridge) / (Lambda + ridge) - 1) U^T R."""
        projected = self._basis_t @ residual
        return residual + self._basis_t.T @ (self._scale[:, None] * projected)
