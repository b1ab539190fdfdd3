"""Diagnostics of a kernel matrix during training, on given matrices (docs/theory.md section 5).

The kernels are passed in, not computed: typically the empirical NTK K_t on the training set
(n, n), the ``.ntk`` (per output unit) of :func:`widenet.kernels.empirical.empirical_ntk`.

    kernel movement          ||K_t - K_0||_F / ||K_0||_F
    kernel-target alignment  A(K, Y) = <K, Y Y^T>_F / (||K||_F ||Y Y^T||_F)
    lambda_min, lambda_max   extreme eigenvalues of (K + K^T) / 2
    information / nuisance   I = span of K's eigenvectors with eigenvalue >= alpha (or of the top
                             r), N = its orthogonal complement (Oymak et al. 2019); reported:
                             ||P_I r|| / ||r_0||, ||P_N r|| / ||r_0|| and ||P_I y|| / ||y||

Targets and residuals are vectors (n,) or matrices (n, k), one column per output; norms of
matrices are Frobenius norms (each column projected separately). Everything is float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from widenet.diagnostics.movement import relative_change
from widenet.errors import WidenetError
from widenet.kernels.spectra import spectrum, symmetric_part
from widenet.validation import finite_real, nonnegative_int


def _matrix(kernel: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(kernel, torch.Tensor) or kernel.ndim != 2 or kernel.numel() == 0:
        shape = tuple(kernel.shape) if isinstance(kernel, torch.Tensor) else type(kernel).__name__
        raise WidenetError(f"{name} must be a non-empty 2-D kernel matrix, got {shape}")
    if kernel.is_complex():
        raise WidenetError(f"{name} is complex ({kernel.dtype}); a kernel is real: pass its "
                           f"real part, {name}.real, if that is what you mean")
    if not bool(torch.isfinite(kernel).all()):
        raise WidenetError(f"{name} contains NaN or inf; the diagnostic is undefined")
    return kernel.to(torch.float64)


def _columns(values: torch.Tensor, rows: int, name: str) -> torch.Tensor:
    """``values`` (n,) or (n, k) as a float64 (n, k) matrix, after checking n = ``rows``."""
    if not isinstance(values, torch.Tensor) or values.ndim not in (1, 2) \
            or values.shape[0] != rows or values.numel() == 0:
        shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise WidenetError(f"{name} must have shape ({rows},) or ({rows}, k), one row per kernel "
                           f"row, got {shape}")
    if values.is_complex() or not bool(torch.isfinite(values).all()):
        raise WidenetError(f"{name} must be real and finite (no NaN or inf)")
    values = values.to(torch.float64)
    return values.unsqueeze(1) if values.ndim == 1 else values


def kernel_movement(kernel: torch.Tensor, initial_kernel: torch.Tensor) -> float:
    """||K_t - K_0||_F / ||K_0||_F, for K_t = ``kernel`` and K_0 = ``initial_kernel``.

    Any matching 2-D shapes (a train-train or a test-train kernel); 0.0 if K_t = K_0 = 0 and inf
    if only K_0 = 0.
    """
    current, initial = _matrix(kernel, "kernel"), _matrix(initial_kernel, "initial_kernel")
    if current.shape != initial.shape:
        raise WidenetError(f"kernel has shape {tuple(current.shape)} but initial_kernel has "
                           f"{tuple(initial.shape)}; compute both on the same inputs")
    return relative_change(current, initial)


def kernel_target_alignment(kernel: torch.Tensor, targets: torch.Tensor) -> float:
    """A(K, Y) = <K, Y Y^T>_F / (||K||_F ||Y Y^T||_F) = tr(Y^T K Y) / (||K||_F ||Y^T Y||_F).

    The uncentered alignment (Cristianini et al. 2001), in [-1, 1]; 1 iff K = c Y Y^T, c > 0.
    Y = ``targets``, shape (n,) or (n, k) (e.g. one-hot), K of shape (n, n). Returns 0.0 for
    K = 0; Y = 0 raises.
    """
    k = _matrix(kernel, "kernel")
    if k.shape[0] != k.shape[1]:
        raise WidenetError(f"kernel must be square (n, n), got {tuple(k.shape)}")
    y = _columns(targets, k.shape[0], "targets").to(k.device)
    # A is invariant to scaling K and Y by positive constants: both are divided by their
    # largest entry first, so that the norms' squares neither overflow nor underflow.
    y_largest, k_largest = float(y.abs().max()), float(k.abs().max())
    if y_largest == 0.0:
        raise WidenetError("targets are all zero, so Y Y^T = 0 and the alignment is undefined")
    if k_largest == 0.0:
        return 0.0
    k, y = k / k_largest, y / y_largest
    target_norm = float(torch.linalg.matrix_norm(y.T @ y))
    kernel_norm = float(torch.linalg.matrix_norm(k))
    return float(((k @ y) * y).sum()) / (kernel_norm * target_norm)


def lambda_min(kernel: torch.Tensor) -> float:
    """The smallest eigenvalue of (K + K^T) / 2, in float64 (see :func:`widenet.spectrum`)."""
    return spectrum(kernel).lambda_min


def lambda_max(kernel: torch.Tensor) -> float:
    """The largest eigenvalue of (K + K^T) / 2, in float64 (see :func:`widenet.spectrum`)."""
    return spectrum(kernel).lambda_max


@dataclass(frozen=True)
class InformationSpace:
    """The eigendecomposition K = V diag(lambda) V^T (ascending, float64) split in two.

    The information space I is spanned by the last ``dimension`` columns of ``eigenvectors``
    (the largest eigenvalues), the nuisance space N by the others; ``cutoff`` is the threshold
    alpha that chose I (None when it was chosen as the top r).
    """

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    dimension: int
    cutoff: float | None

    @property
    def information_basis(self) -> torch.Tensor:
        """V_I, (n, dim I), orthonormal columns: P_I = V_I V_I^T."""
        return self.eigenvectors[:, self.eigenvectors.shape[1] - self.dimension:]

    @property
    def nuisance_basis(self) -> torch.Tensor:
        """V_N, (n, n - dim I), orthonormal columns: P_N = V_N V_N^T = I - P_I."""
        return self.eigenvectors[:, :self.eigenvectors.shape[1] - self.dimension]


@dataclass(frozen=True)
class ResidualProjections:
    """information = ||P_I r||_F / ||r_0||_F and nuisance = ||P_N r||_F / ||r_0||_F.

    information^2 + nuisance^2 = (||r||_F / ||r_0||_F)^2.
    """

    information: float
    nuisance: float


def information_space(kernel: torch.Tensor, *, cutoff: float | None = None,
                      top: int | None = None) -> InformationSpace:
    """Split R^n by the eigenvectors of the symmetric part of K (n, n); give exactly one of:

    ``cutoff`` = alpha >= 0: I = span{v_i : lambda_i >= alpha} (absolute eigenvalue threshold);
    ``top`` = r in [0, n]: I = span of the eigenvectors of the r largest eigenvalues (ties at the
    boundary broken by the eigensolver's order).
    N = I^perp in both cases.
    """
    if (cutoff is None) == (top is None):
        raise WidenetError("give exactly one of cutoff= (an eigenvalue threshold alpha) or top= "
                           "(the number r of leading eigenvectors spanning I)")
    eigenvalues, eigenvectors = torch.linalg.eigh(symmetric_part(kernel))
    n = eigenvalues.shape[0]
    if cutoff is not None:
        cutoff = finite_real(cutoff, "cutoff", minimum=0.0)
        dimension = int((eigenvalues >= cutoff).sum())
    else:
        dimension = nonnegative_int(top, "top")
        if dimension > n:
            raise WidenetError(f"top must be at most the kernel's size {n}, got {dimension}")
    return InformationSpace(eigenvalues, eigenvectors, dimension, cutoff)


def _projection_norms(space: InformationSpace, values: torch.Tensor,
                      name: str) -> tuple[float, float, float, float]:
    """(||P_I u||_F, ||P_N u||_F, ||u||_F, c) for v = c u, v (n,) or (n, k), c = max |v_ij| (1 for
    v = 0), from the coefficients V^T u: the ratios of these norms are those of v's, and u's
    squares neither overflow nor underflow as v's can."""
    if not isinstance(space, InformationSpace):
        raise WidenetError(f"space must be an InformationSpace from information_space(kernel, "
                           f"...), got {type(space).__name__}")
    n = space.eigenvectors.shape[0]
    v = _columns(values, n, name).to(space.eigenvectors.device)
    scale = float(v.abs().max()) or 1.0
    v = v / scale
    coefficients = space.eigenvectors.T @ v
    split = n - space.dimension
    information = float(torch.linalg.matrix_norm(coefficients[split:]))
    nuisance = float(torch.linalg.matrix_norm(coefficients[:split]))
    return information, nuisance, float(torch.linalg.matrix_norm(v)), scale


def residual_projections(space: InformationSpace, residual: torch.Tensor,
                         reference: torch.Tensor | None = None) -> ResidualProjections:
    """||P_I r||_F / ||r_0||_F and ||P_N r||_F / ||r_0||_F for r = ``residual`` (f_t - y).

    r_0 = ``reference`` (usually the residual at initialization, f_0 - y), r itself when None;
    shapes (n,) or (n, k), each column projected. A zero reference raises.
    """
    information, nuisance, norm, scale = _projection_norms(space, residual, "residual")
    if reference is None:
        scale = 1.0  # r / r_0 = u / u
    else:
        _, _, norm, reference_scale = _projection_norms(space, reference, "reference")
        scale /= reference_scale
    if norm == 0.0:
        raise WidenetError("the reference residual r_0 is zero, so ||P r|| / ||r_0|| is "
                           "undefined; pass the residual at initialization as reference")
    return ResidualProjections(information=information / norm * scale,
                               nuisance=nuisance / norm * scale)


def label_information(space: InformationSpace, labels: torch.Tensor) -> float:
    """||P_I y||_F / ||y||_F: the share of the labels y ((n,) or (n, k)) lying in I.

    A zero y raises.
    """
    information, _, norm, _ = _projection_norms(space, labels, "labels")
    if norm == 0.0:
        raise WidenetError("labels are all zero, so ||P_I y|| / ||y|| is undefined")
    return information / norm

