"""Eigenvalues and conditioning of kernel matrices, robust to round-off."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from widenet.errors import WidenetError


@dataclass(frozen=True)
class Spectrum:
    """Eigenvalues (ascending, float64) of a symmetric kernel matrix and what follows from them.

    condition_number = lambda_max / lambda_min, and inf when lambda_min <= 0 (a singular
    matrix, or round-off pushing a PSD matrix's smallest eigenvalue below zero).
    """

    eigenvalues: torch.Tensor

    @property
    def lambda_min(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def lambda_max(self) -> float:
        return float(self.eigenvalues[-1])

    @property
    def condition_number(self) -> float:
        return self.lambda_max / self.lambda_min if self.lambda_min > 0 else math.inf


def symmetric_part(kernel: torch.Tensor) -> torch.Tensor:
    """(K + K^T) / 2 in float64, after checking K is a finite square matrix."""
    if not isinstance(kernel, torch.Tensor) or kernel.ndim != 2 \
            or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] == 0:
        shape = tuple(kernel.shape) if isinstance(kernel, torch.Tensor) else type(kernel).__name__
        raise WidenetError(f"expected a non-empty square kernel matrix, got {shape}; flatten "
                           "multi-output kernels to (n k, n k) first")
    if kernel.is_complex():
        raise WidenetError(f"the kernel matrix is complex ({kernel.dtype}); a kernel is real: "
                           "pass its real part, kernel.real, if that is what you mean")
    if not bool(torch.isfinite(kernel).all()):
        raise WidenetError("the kernel matrix contains NaN or inf; its spectrum is undefined")
    kernel = kernel.to(torch.float64)
    return (kernel + kernel.T) / 2


def spectrum(kernel: torch.Tensor) -> Spectrum:
    """The eigenvalues of the symmetric part of ``kernel``, computed in float64."""
    return Spectrum(torch.linalg.eigvalsh(symmetric_part(kernel)))


def condition_number(kernel: torch.Tensor) -> float:
    """lambda_max / lambda_min of the symmetric part of ``kernel`` (inf if lambda_min <= 0)."""
    return spectrum(kernel).condition_number
