"""Argument checks shared by the blocked solvers."""

from __future__ import annotations

import numpy as np
import torch

from widenet.errors import WidenetError
from widenet.solvers.blocked import BlockedKernel
from widenet.validation import finite_real


def square_size(kernel: BlockedKernel) -> int:
    """n for a square (n, n) kernel; raises for another shape or a non-kernel."""
    if not isinstance(kernel, BlockedKernel):
        raise WidenetError(f"kernel must be a widenet.solvers.BlockedKernel, got "
                           f"{type(kernel).__name__}; wrap an array with BlockedKernel(matrix) "
                           "or open a file with BlockedKernel.open(path)")
    if kernel.shape[0] != kernel.shape[1]:
        raise WidenetError(f"the training kernel must be square (n, n), got shape "
                           f"{kernel.shape}")
    return kernel.shape[0]


def targets_matrix(y: torch.Tensor | np.ndarray, n: int, name: str = "y") -> torch.Tensor:
    """``y`` as an (n, k) float64 CPU tensor; raises unless it is finite, (n,) or (n, k)."""
    if not isinstance(y, torch.Tensor | np.ndarray):
        raise WidenetError(f"{name} must be a tensor or numpy array, got {type(y).__name__}")
    try:
        y = torch.as_tensor(y)
    except (TypeError, RuntimeError):
        raise WidenetError(f"{name} must hold real numbers, got {y.dtype}") from None
    if y.ndim not in (1, 2) or y.shape[0] != n or (y.ndim == 2 and y.shape[1] == 0):
        raise WidenetError(f"{name} must have shape ({n},) or ({n}, k) to match the kernel's "
                           f"{n} points, got {tuple(y.shape)}")
    if y.dtype.is_complex:
        raise WidenetError(f"{name} must hold real numbers, got {y.dtype}")
    if y.device.type == "meta":
        raise WidenetError(f"{name} is a meta tensor, which holds no values")
    y = y.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(y).all()):
        raise WidenetError(f"{name} contains NaN or inf values; drop or fix those points")
    return y.reshape(n, -1).clone()


def column_scales(y: torch.Tensor) -> torch.Tensor:
    """Powers of two s, shape (k,), with max |y[:, j]| / s_j in [1, 2) (1 for a zero column):
    dividing by them is exact, and the norms of y / s neither overflow (y of 1e200) nor
    underflow to 0 (y of 1e-310, taken for a zero column otherwise)."""
    peak = y.abs().amax(0)
    exponent = torch.frexp(peak).exponent - 1  # peak = m 2^e with m in [1/2, 1)
    return torch.where(peak > 0, torch.ldexp(torch.ones_like(peak), exponent), 1.0)


def asymmetry_tolerance(eps: float) -> float:
    """The relative asymmetry a training kernel whose values have round-off ``eps`` may show
    before it is refused as not symmetric: sqrt(eps), but at least float32's sqrt(eps) (3.5e-4).
    A kernel stored in float64 is often computed in float32 (a float32 net, a GPU, one block
    of rows at a time), which leaves K - K^T of order 1e-7 ||K||; a kernel that is not
    symmetric (a square test-by-train kernel) is off by far more."""
    return max(eps, float(torch.finfo(torch.float32).eps)) ** 0.5


def overflow_error(what: str, flow: bool = False) -> WidenetError:
    """The error for a solver whose float64 arithmetic overflowed in ``what``, with the
    rescaling that avoids it: K / c (and ridge / c) gives c times the weights and the same
    predictions with the test kernel divided by c too; gradient flow (``flow``) on K / c
    also needs the times c t, since phi_(c t)(K / c) = c phi_t(K)."""
    rescale = "multiply the times by c" if flow else "divide the ridge by c"
    return WidenetError(f"{what} overflow float64: the kernel's values (or the weights they "
                        "give) are too large or too small; divide the kernel and the test "
                        "kernel by the kernel's largest diagonal value c and "
                        f"{rescale}: the weights are then c times as large and the "
                        "predictions the same")


def relative_tolerance(tol: object) -> float:
    """``tol`` as a float in (0, 1): a relative residual or error of 1 or more is met by the
    zero solution before any work (it returned zero weights, "converged")."""
    tol = finite_real(tol, "tol", minimum=0.0, strict=True)
    if tol >= 1:
        raise WidenetError(f"tol is a relative residual (or error) and must be below 1, got "
                           f"{tol!r}: zero weights already meet it; 1e-6 is the default")
    return tol
