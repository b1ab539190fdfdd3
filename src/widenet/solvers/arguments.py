"""Argument checks shared by the blocked solvers."""

from __future__ import annotations

import numpy as np
import torch

from widenet.errors import WidenetError
from widenet.solvers.blocked import BlockedKernel


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
    y = y.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(y).all()):
        raise WidenetError(f"{name} contains NaN or inf values; drop or fix those points")
    return y.reshape(n, -1).clone()
