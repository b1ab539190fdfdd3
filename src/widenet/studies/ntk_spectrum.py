"""Study ``ntk-spectrum``: the spectrum of K_inf = (1/n) Theta at the edge of chaos, vs depth.

docs/theory.md sections 2 and 4 (Terjek & Gonzalez-Sanchez): bias-free MLP, NTK parametrization, EOC
init, phi = a s + b|s| with a^2 + b^2 = 1 and b^2 = Delta, inputs with ||x||^2 = d. Then
Theta^{L+1}(x, x) = L + 1 exactly, Theta^{L+1}(x, x') / (L + 1) -> 1/4, so
Theta ~ (L + 1) [(3/4) I + (1/4) 1 1^T] and cond(K_inf) -> 1 + n/3, faster for larger Delta; the
angle between two inputs' activations shrinks like theta_l ~ 3 pi / (2 Delta (l + l_0)), and
off-diagonal entries are about a constant times the inverse of the last-layer angle.

Each ``spectrum`` task computes the limit kernels of one (Delta, L) on ``seeds`` input draws
(the same draws for every Delta and L: a paired design) and records the spectrum, the diagonal,
the off-diagonal entries and the inverse-angle approximation. Each ``angles`` task records the
angle of every layer of the deepest net from the per-layer NNGP kernels. The analysis and the
tolerances are explained in docs/studies/ntk-spectrum.md.
"""

from __future__ import annotations

import itertools
import math
from functools import partial
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from pydantic import Field, PositiveInt, field_validator, model_validator

from widenet import activations
from widenet.checks import Check, check_close, check_interval
from widenet.data.synthetic import sphere_points
from widenet.kernels.infinite import infinite_kernels
from widenet.kernels.spectra import spectrum
from widenet.models import MLP
from widenet.studies import Analysis, Study, StudyConfig, StudyContext, Tables, Task
from widenet.studies._ntk_spectrum_analysis import (
    REFERENCE_CONDITION,
    angle_figure,
    angle_fit_table,
    condition_figure,
    eigenvalue_figure,
    inverse_angle_figure,
    reference_table,
    summary_table,
)
from widenet.studies.fits import mean_stderr, power_law_fit_or_nan
from widenet.studies.seeds import derived_seed
from widenet.studies.validators import distinct_values

DIAGONAL_ROUNDOFF = 8.0
"""|Theta_ii - (L + 1) ||x_i||^2 / d| <= 8 (L + 1)^2 eps: L + 1 summands, each a product of
<= L + 1 factors equal to 1 up to a few roundings per layer (docs, "Checks and tolerances")."""
ASYMPTOTIC_FACTOR = 1.5
"""At the largest depth the off-diagonal excess may be at most 1.5 times its universal
leading-order term (3/8) ln L / L: the non-universal O(1/L) rest at most half of it."""


class SpectrumConfig(StudyConfig):
    """The sizes of the spectrum study (defaults: the DEFAULT preset)."""

    points: int = Field(default=100, ge=3, description="n, the number of inputs x_i, drawn "
                        "uniformly on the sphere ||x||^2 = d; K_inf is n x n; >= 3 (the "
                        "inverse-angle law fits one constant to the n(n-1)/2 pairs)")
    dim: int = Field(default=100, ge=2, description="d, the input dimension (>= 2: on the "
                     "sphere of R^1 two inputs are equal or opposite)")
    deltas: list[float] = Field(
        default=[0.25, 0.5, 0.75, 1.0], description="Delta = b^2 of phi(s) = a s + b|s| with "
        "a = sqrt(1 - Delta), b = sqrt(Delta) (1/2: ReLU up to scale, 1: |s|); each in (0, 1]")
    depths: list[PositiveInt] = Field(
        default=[1, 2, 3, 5, 9, 19, 49, 99, 199, 499, 999],
        description="L, numbers of hidden layers; at least 3 of them >= max(depths)/20, and "
        "max(depths) >= 20")
    seeds: PositiveInt = Field(default=3, description="input draws (the same for every Delta "
                               "and depth)")
    angle_points: int = Field(default=16, description="how many of the n inputs (the first) "
                              "the per-layer angle law is measured on; 2 <= angle_points <= n")
    compare_depth: PositiveInt = Field(default=99, description="the depth (one of `depths`) at "
                                       "which convergence is compared across Delta")

    QUICK: ClassVar[dict[str, Any]] = {"deltas": [0.5, 1.0],
                                       "depths": [1, 3, 9, 19, 49, 99],
                                       "seeds": 2, "angle_points": 8, "compare_depth": 19}

    @field_validator("deltas")
    @classmethod
    def _valid_deltas(cls, values: list[float]) -> list[float]:
        for value in distinct_values(values):
            if not 0.0 < value <= 1.0:
                raise ValueError(f"each Delta must be in (0, 1] (Delta = 0 is the identity, "
                                 f"whose angles never shrink), got {value}")
        return sorted(values)

    @field_validator("depths")
    @classmethod
    def _valid_depths(cls, values: list[int]) -> list[int]:
        values = sorted(distinct_values(values))
        if values[-1] < 20:
            raise ValueError("the depth asymptotics need max(depths) >= 20")
        if len(deep_depths(values)) < 3:
            raise ValueError("at least 3 depths must be >= max(depths)/20 for the fits")
        return values

    @model_validator(mode="after")
    def _consistent(self) -> SpectrumConfig:
        if not 2 <= self.angle_points <= self.points:
            raise ValueError(f"angle_points must be in [2, points={self.points}], "
                             f"got {self.angle_points}")
        if self.compare_depth not in self.depths:
            raise ValueError(f"compare_depth={self.compare_depth} must be one of the depths "
                             f"{self.depths}")
        return self


def deep_depths(depths: list[int]) -> list[int]:
    """The depths used for the asymptotic fits: those >= max(depths) / 20."""
    return [depth for depth in depths if 20 * depth >= max(depths)]


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


def _spectrum_task(config: SpectrumConfig, delta: float, depth: int,
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


def _angle_task(config: SpectrumConfig, delta: float, context: StudyContext) -> Tables:
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
                  partial(_spectrum_task, config, delta, depth))
             for delta in config.deltas for depth in config.depths]
    tasks += [Task(f"angles/Delta={delta:g}", partial(_angle_task, config, delta))
              for delta in config.deltas]
    return tasks


# --- analysis -------------------------------------------------------------------------------

def equicorrelated_condition(n: int, m: float) -> float:
    """cond of (1 - m) I + m 1 1^T (n x n, 0 <= m < 1): (1 + (n - 1) m) / (1 - m); at m = 1/4
    it is 1 + n/3, the limit of cond(K_inf) (docs/theory.md section 4)."""
    return (1.0 + (n - 1) * m) / (1.0 - m)


def universal_excess(depth: int) -> float:
    """(3/8) ln L / L: the leading, Delta-independent term of Theta_ij / (L + 1) - 1/4 at the
    EOC (derived in docs/studies/ntk-spectrum.md from theta_l ~ 3 pi / (2 Delta (l + 3/2 ln l
    + c)), docs/theory.md section 4)."""
    return 0.375 * math.log(depth) / depth


def diagonal_check(kernels: pd.DataFrame) -> Check:
    """max |Theta_ii - (L + 1) ||x_i||^2 / d| / ((L + 1)^2 eps) <= DIAGONAL_ROUNDOFF over every
    kernel (the ``diagonal_error`` of :func:`kernel_row`)."""
    eps = float(np.finfo(np.float64).eps)
    scaled = kernels["diagonal_error"] / ((kernels["depth"] + 1) ** 2 * eps)
    worst = kernels.loc[scaled.idxmax()]
    return check_interval(
        "diagonal", "Theta^{L+1}(x, x) = (L + 1) ||x||^2 / d exactly at the EOC (= L + 1 on "
        "the sphere): max |error| / ((L+1)^2 eps) over all Delta, L, draws, i",
        measured=float(scaled.max()), low=0.0, high=DIAGONAL_ROUNDOFF, predicted=0.0,
        note=f"float64 round-off bound; worst at Delta={worst['delta']:g}, "
             f"L={int(worst['depth'])}: |error| = {worst['diagonal_error']:.2e}")


def limit_checks(summary: pd.DataFrame) -> list[Check]:
    """At the largest depth L, per Delta: Theta_ij / (L + 1) - 1/4 in [0, 1.5 (3/8) ln L / L]
    and cond(K_inf) between 1 + n/3 and the equicorrelated cond at that off-diagonal bound."""
    depth = int(summary["depth"].max())
    bound = ASYMPTOTIC_FACTOR * universal_excess(depth)
    checks = []
    for row in summary[summary["depth"] == depth].itertuples():
        n = int(row.points)
        ratio = (row.offdiag_mean - 0.25) / universal_excess(depth)
        checks.append(check_interval(
            f"offdiag/Delta={row.delta:g}",
            f"Theta_ij/(L+1) -> 1/4 (Delta={row.delta:g}); at L={depth} the excess over 1/4 is "
            f"at most {ASYMPTOTIC_FACTOR} x the leading-order (3/8) ln L/L",
            measured=row.offdiag_mean - 0.25, stderr=row.offdiag_mean_stderr, low=0.0,
            high=bound, predicted=0.0,
            note=f"excess = {ratio:.2f} x (3/8) ln L/L; mean over pairs and draws"))
        checks.append(check_interval(
            f"cond/Delta={row.delta:g}",
            f"cond(K_inf) -> 1 + n/3 = {1 + n / 3:.4g} from above (Delta={row.delta:g}, "
            f"n={n}); at L={depth} within the off-diagonal bound's equicorrelated cond",
            measured=row.cond, stderr=row.cond_stderr, low=1.0 + n / 3.0,
            high=equicorrelated_condition(n, 0.25 + bound), predicted=1.0 + n / 3.0,
            note=f"relative excess {100 * row.cond_excess:.2f}%"))
    return checks


def ordering_check(kernels: pd.DataFrame, depth: int) -> Check:
    """|cond - (1 + n/3)| decreases with Delta at ``depth``: the largest mean (over draws) of
    the paired differences between neighbouring Deltas is < 0 (needs two Deltas or more)."""
    part = kernels[kernels["depth"] == depth]
    n = int(part["points"].iloc[0])
    excess = part.assign(excess=(part["cond"] - 1.0 - n / 3.0).abs()).pivot_table(
        index="seed", columns="delta", values="excess")
    deltas = sorted(excess.columns)
    steps = [mean_stderr(excess[b] - excess[a]) for a, b in itertools.pairwise(deltas)]
    worst = max(range(len(steps)), key=lambda i: steps[i][0])
    return check_interval(
        "faster for larger Delta",
        f"|cond(K_inf) - (1 + n/3)| at L={depth} decreases with Delta: largest change between "
        f"neighbouring Deltas < 0", measured=steps[worst][0], stderr=steps[worst][1], high=0.0,
        predicted=0.0, note="excess by Delta: " + ", ".join(
            f"{d:g}: {excess[d].mean():.3g}" for d in deltas))


def angle_checks(fits: pd.DataFrame) -> list[Check]:
    """The fitted rate beta_1 / k = 1 within ln(l_a) / l_a^2 (l_a: the first fitted layer)."""
    return [check_close(
        f"angle law/Delta={row.delta:g}",
        f"theta_l l -> 3 pi / (2 Delta) (Delta={row.delta:g}): slope of 1/theta_l over "
        f"l={row.fit_start}..{row.depth} (fit with ln l and 1) times 3 pi / (2 Delta) = 1",
        predicted=1.0, measured=row.rate, stderr=row.rate_stderr,
        tolerance=math.log(row.fit_start) / row.fit_start**2,
        note=f"theta_L L 2 Delta / (3 pi) = {row.product:.4f} at L={row.depth}; ln l "
             f"coefficient / slope = {row.log_coefficient:.3f} (derived 1.5); plain-law "
             f"l_0 = {row.plain_l0:.1f}")
        for row in fits.itertuples()]


def inverse_angle_checks(kernels: pd.DataFrame) -> list[Check]:
    """The relative error of Theta_ij ~ C_fit / theta_L decreases with L: the log-log slope
    over the deep depths (all draws pooled) is < 0."""
    deep = kernels[kernels["depth"].isin(deep_depths(sorted(kernels["depth"].unique())))]
    checks = []
    for delta, group in deep.groupby("delta", sort=True):
        fit = power_law_fit_or_nan(group["depth"], group["inverse_angle_error"])
        checks.append(check_interval(
            f"inverse angle/Delta={delta:g}",
            f"off-diagonal Theta_ij ~ C / theta_L(ij) (Delta={delta:g}): its relative error "
            f"decreases with depth, log-log slope over L={group['depth'].min()}.."
            f"{group['depth'].max()} < 0", measured=fit.slope, stderr=fit.slope_stderr,
            high=0.0, predicted=0.0, note="C fitted per kernel by least squares"))
    return checks


def analyze(config: SpectrumConfig, tables: Tables) -> Analysis:
    """Summaries, angle-law fits, figures and the checks of docs/studies/ntk-spectrum.md."""
    kernels, angles = tables["kernels"], tables["angles"]
    summary = summary_table(kernels)
    fits = angle_fit_table(angles, start=max(2, max(config.depths) // 10))
    derived = {"summary": summary, "angle_fits": fits}
    if config.points == 100 and set(REFERENCE_CONDITION) <= set(config.depths):
        derived["reference"] = reference_table(summary)
    figures = {"condition": condition_figure(summary, config.points),
               "eigenvalues": eigenvalue_figure(summary, config.points),
               "angles": angle_figure(angles, fits),
               "inverse_angle": inverse_angle_figure(summary)}
    checks = [diagonal_check(kernels), *limit_checks(summary)]
    if len(config.deltas) > 1:
        checks.append(ordering_check(kernels, config.compare_depth))
    checks += [*angle_checks(fits), *inverse_angle_checks(kernels)]
    return Analysis(tables=derived, figures=figures, checks=checks)


STUDY = Study(name="ntk-spectrum",
              summary="cond(K_inf) -> 1 + n/3 with depth at the EOC; angles shrink like 1/l",
              config=SpectrumConfig, plan=plan, analyze=analyze)
