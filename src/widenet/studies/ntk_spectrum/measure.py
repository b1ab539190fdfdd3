"""The tasks of the ``ntk-spectrum`` study: limit kernels, their spectra and the inverse-angle
approximation per (Delta, L), and the per-layer angles per Delta."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pandas as pd
import torch

from widenet import activations
from widenet.data.synthetic import sphere_points
from widenet.kernels.infinite import infinite_kernels
from widenet.kernels.spectra import spectrum
from widenet.models import MLP
from widenet.seeds import derived_seed
from widenet.studies.common.base import StudyContext, Tables, Task
from widenet.studies.ntk_spectrum.config import SpectrumConfig


def normalized_ab(delta: float) -> activations.AbsLinear:
    """phi(s) = a s + b|s| with a = sqrt(1 - Delta), b = sqrt(Delta): a^2 + b^2 = 1, so
    Delta_phi = b^2 = Delta and the edge of chaos is sigma_w = 1 (docs/theory.md section 2)."""
    return activations.ab(math.sqrt(1.0 - delta), math.sqrt(delta))


def limit_net(delta: float, depth: int, dim: int) -> MLP:
    """The bias-free EOC MLP(d, [1] * L, 1) in the NTK parametrization with phi =
    :func:`normalized_ab`. Its widths are 1: the infinite-width limit does not depend on them
    (docs/theory.md section 3), and no large weight matrix is allocated even at L = 1000."""
    return MLP(dim, [1] * depth, 1, normalized_ab(delta), weight_std=None, bias_std=0.0)


def input_seed(config: SpectrumConfig, replicate: int) -> int:
    """The seed of input draw ``replicate``: a function of ``config.seed`` and the replicate
    only, so every Delta and depth sees the same inputs and a resumed run the same numbers."""
    return derived_seed(config.seed, replicate)


def pair_angles(sigma: torch.Tensor) -> torch.Tensor:
    """arccos(Sigma_ij / sqrt(Sigma_ii Sigma_jj)) for i < j (row-major upper triangle).

    For Sigma = Sigma^{l+1} this is the angle between the two inputs' activations h_l at
    infinite width, since Sigma^{l+1} = E[phi(z_l) phi(z_l')] with sigma_w = 1."""
    rows, cols = torch.triu_indices(*sigma.shape, offset=1, device=sigma.device)
    diagonal = sigma.diagonal()
    rho = sigma[rows, cols] / torch.sqrt(diagonal[rows] * diagonal[cols])
    return torch.arccos(rho.clamp(-1.0, 1.0))


def off_diagonal(matrix: torch.Tensor) -> torch.Tensor:
    """The entries M_ij, i < j, in the order of :func:`pair_angles`."""
    rows, cols = torch.triu_indices(*matrix.shape, offset=1, device=matrix.device)
    return matrix[rows, cols]


def inverse_angle_constant(delta: float) -> float:
    """C = 3 pi / (8 Delta): Theta_ij ~ C / theta_L, from theta_L ~ 3 pi / (2 Delta L) and
    Theta_ij / (L + 1) -> 1/4 (docs/theory.md section 4)."""
    return 3.0 * math.pi / (8.0 * delta)


def inverse_angle_errors(theta_off: torch.Tensor, angles: torch.Tensor, delta: float
                         ) -> tuple[float, float, float]:
    """The approximation Theta_ij ~ C / theta_ij on the off-diagonal entries.

    Returns (C_fit / C, error_fit, error_theory) with C = :func:`inverse_angle_constant` and
    C_fit = <1/theta, Theta> / <1/theta, 1/theta>, the least-squares constant; error =
    ||Theta - c / theta|| / ||Theta|| over the pairs (Euclidean norms), for c = C_fit and c = C
    (NaN when every Theta_ij is 0).
    """
    inverse = 1.0 / angles
    fitted, theory = float(inverse @ theta_off / (inverse @ inverse)), inverse_angle_constant(delta)
    norm = float(theta_off.norm())
    errors = [float((theta_off - c * inverse).norm()) / norm if norm > 0 else math.nan
              for c in (fitted, theory)]
    return fitted / theory, errors[0], errors[1]


def kernel_row(theta: torch.Tensor, nngp: torch.Tensor, x: torch.Tensor, delta: float,
               depth: int) -> dict[str, float]:
    """What is measured on the NTK Theta = Theta^{L+1} and NNGP Sigma^{L+1} of the rows of x.

    lambda_min, lambda_max, cond: of K_inf = Theta / n (float64 eigenvalues);
    diagonal_error = max_i |Theta_ii - (L + 1) ||x_i||^2 / d|, the distance from the exact
    value at the EOC (L + 1 when ||x_i||^2 = d, which float64 inputs meet only up to
    round-off); offdiag_mean, offdiag_std: mean and standard
    deviation of Theta_ij / (L + 1) over i < j; angle_mean: mean last-layer angle theta_L;
    inverse-angle approximation: see :func:`inverse_angle_errors`.
    """
    n = theta.shape[0]
    eigen = spectrum(theta / n)
    theta_off, angles = off_diagonal(theta), pair_angles(nngp)
    scaled = theta_off / (depth + 1)
    c_ratio, error_fit, error_theory = inverse_angle_errors(theta_off, angles, delta)
    return {"lambda_min": eigen.lambda_min, "lambda_max": eigen.lambda_max,
            "cond": eigen.condition_number,
            "diagonal_error": float((theta.diagonal() - (depth + 1) * (x * x).mean(dim=1))
                                    .abs().max()),
            "offdiag_mean": float(scaled.mean()), "offdiag_std": float(scaled.std()),
            "angle_mean": float(angles.mean()), "inverse_angle_c_ratio": c_ratio,
            "inverse_angle_error": error_fit, "inverse_angle_error_theory": error_theory}


def _inputs(config: SpectrumConfig, replicate: int, device: torch.device) -> torch.Tensor:
    return sphere_points(config.points, config.dim, seed=input_seed(config, replicate),
                         dtype=torch.float64).to(device)


def compute_spectrum_task(config: SpectrumConfig, delta: float, depth: int,
                          context: StudyContext) -> Tables:
    net = limit_net(delta, depth, config.dim)
    rows = []
    for replicate in range(config.seeds):
        x = _inputs(config, replicate, context.device)
        kernels = infinite_kernels(net, x, dtype=torch.float64)
        rows.append({"delta": delta, "depth": depth, "seed": replicate, "points": config.points,
                     **kernel_row(kernels.ntk, kernels.nngp, x, delta, depth)})
    return {"kernels": pd.DataFrame(rows)}


def layer_angles(net: MLP, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per layer l = 0..L: the mean angle theta_l between the activations h_l (h_0 = x) of
    two inputs, and the mean of 1/theta_l, over the pairs of rows of x; from the per-layer
    NNGP kernels Sigma^{l+1} of :func:`widenet.infinite_kernels`. They are computed between
    x and a second copy of x: only the upper triangles are used, and the rectangular path skips
    mirroring the 2L + 1 per-layer matrices (thousands of small ``torch.triu`` calls at L = 1000,
    which are slow when the CPU is oversubscribed)."""
    layers = infinite_kernels(net, x, x, dtype=torch.float64, per_layer=True).layers
    angles = torch.stack([pair_angles(sigma) for sigma in layers.sigma])
    return angles.mean(dim=1).cpu().numpy(), (1.0 / angles).mean(dim=1).cpu().numpy()


def compute_angle_task(config: SpectrumConfig, delta: float, context: StudyContext) -> Tables:
    depth = max(config.depths)
    net = limit_net(delta, depth, config.dim)
    frames = []
    for replicate in range(config.seeds):
        x = _inputs(config, replicate, context.device)[:config.angle_points]
        mean, inverse = layer_angles(net, x)
        frames.append(pd.DataFrame({"delta": delta, "seed": replicate,
                                    "layer": np.arange(depth + 1), "angle_mean": mean,
                                    "inverse_angle_mean": inverse}))
    return {"angles": pd.concat(frames, ignore_index=True)}


def plan(config: SpectrumConfig) -> list[Task]:
    """One ``spectrum`` task per (Delta, L) and one ``angles`` task per Delta."""
    tasks = [Task(f"spectrum/Delta={delta:g}/L={depth}",
                  partial(compute_spectrum_task, config, delta, depth))
             for delta in config.deltas for depth in config.depths]
    tasks += [Task(f"angles/Delta={delta:g}", partial(compute_angle_task, config, delta))
              for delta in config.deltas]
    return tasks
