"""Study ``ntk-concentration``: the empirical NTK approaches its limit like m^{-1/2}.

docs/theory.md section 4 (Terjek & Gonzalez-Sanchez): for a bias-free MLP in the NTK parametrization
at the edge of chaos, with phi = a s + b|s| normalized to a^2 + b^2 = 1, inputs with
||x||^2 = d and k outputs, the NTK matrix K(theta) = [(1/n) K_theta(x_i, x_j)] in R^{nk x nk}
satisfies ||K(theta) - K_inf||_2 = O((Delta^-2 + sqrt(k) L) kappa^2 m^{-1/2}) with high
probability, where K_inf = (1/n) Theta (x) I_k (Theta: the NTK recursion of section 3).

Each task draws ``seeds`` networks of one width pattern, depth and width m, once per activation
with the same weights (a paired design: the activations are compared on identical draws), and
records the operator-norm error. The analysis fits the error's power law in m (predicted slope
-1/2), compares |s| with ReLU at matched networks (predicted: |s| concentrates better) and
reports the two width patterns at equal parameter counts. See docs/studies/ntk-concentration.md.
"""

from __future__ import annotations

import math
import zlib
from functools import partial
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, PositiveInt, field_validator

from widenet import activations, widths
from widenet.checks import Check, check_close, check_interval
from widenet.data import sphere_points
from widenet.errors import WidenetError
from widenet.kernels.empirical import empirical_ntk
from widenet.kernels.infinite import infinite_kernels
from widenet.models import MLP
from widenet.studies import Analysis, Study, StudyConfig, StudyContext, Tables, Task
from widenet.studies._ntk_concentration_figures import (
    abs_relu_figure,
    error_vs_params_figure,
    error_vs_width_figure,
)
from widenet.studies.base import MAX_SEED
from widenet.studies.fits import PowerLawFit, mean_stderr, power_law_fit
from widenet.studies.seeds import derived_seed
from widenet.studies.validators import distinct_values

Pattern = Literal["constant", "quadratic"]

PREDICTED_SLOPE = -0.5
SLOPE_TOLERANCE = 0.1
"""Accepted |fitted slope + 1/2|: room for the O(1/m) corrections at the smallest widths
(docs/studies/ntk-concentration.md, "Checks")."""


class ConcentrationConfig(StudyConfig):
    """The sizes of the concentration study (defaults: the DEFAULT preset)."""

    seed: int = Field(default=0, ge=0, le=MAX_SEED, description="seeds the inputs and, with "
                      "each task's parameters, every network's weights")
    points: PositiveInt = Field(default=16, description="n, the number of inputs x_i, drawn "
                                "uniformly on the sphere ||x||^2 = d (seeded by `seed`)")
    dim: PositiveInt = Field(default=8, description="d, the input dimension")
    outputs: PositiveInt = Field(default=1, description="k, the number of outputs; K(theta) "
                                 "is then nk x nk and K_inf = (1/n) Theta (x) I_k")
    activations: list[str] = Field(
        default=["abs", "relu"], description="activations of the family phi = a s + b|s| "
        "(abs, relu, identity, leaky_relu:SLOPE), each normalized to a^2 + b^2 = 1")
    patterns: list[Pattern] = Field(
        default=["constant", "quadratic"], description="width patterns: constant (m_l = m) "
        "and quadratic (m_l = l^2 m)")
    depths: list[PositiveInt] = Field(default=[2, 4], description="L, numbers of hidden layers")
    widths: list[PositiveInt] = Field(
        default=[16, 32, 64, 128, 256, 512, 1024, 2048],
        description="m for the constant pattern (at least 3 distinct values)")
    base_widths: list[PositiveInt] = Field(
        default=[8, 16, 32, 64, 128, 256],
        description="m for the quadratic pattern, whose last hidden layer is L^2 m wide "
        "(at least 3 distinct values)")
    seeds: PositiveInt = Field(default=24, description="networks drawn per (pattern, depth, m) "
                               "and activation")

    QUICK: ClassVar[dict[str, Any]] = {"depths": [2], "widths": [16, 32, 64, 128, 256, 512, 1024],
                                       "base_widths": [8, 16, 32, 64, 128, 256, 512],
                                       "seeds": 16}

    @field_validator("activations")
    @classmethod
    def _known_activations(cls, names: list[str]) -> list[str]:
        distinct_values(names)
        for name in names:
            normalized_activation(name)
        return names

    @field_validator("patterns", "depths")
    @classmethod
    def _distinct_values(cls, values: list[Any]) -> list[Any]:
        return distinct_values(values)

    @field_validator("widths", "base_widths")
    @classmethod
    def _fit_widths(cls, values: list[int]) -> list[int]:
        if len(distinct_values(values)) < 3:
            raise ValueError("a power-law fit needs at least 3 distinct widths")
        return sorted(values)


def normalized_activation(name: str) -> activations.AbsLinear:
    """The activation ``name`` of the family a s + b|s|, rescaled to a^2 + b^2 = 1.

    With a^2 + b^2 = 1 the edge of chaos is sigma_w = 1 (docs/theory.md section 2), the setting of
    the concentration bound (section 4); relu becomes (s + |s|) / sqrt(2). Raises
    WidenetError for an unknown name or one outside the family.
    """
    act = activations.get_activation(name)
    if not isinstance(act, activations.AbsLinear):
        raise WidenetError(f"activation {name!r} is not of the form a s + b|s|, which the "
                         "concentration bound covers; use abs, relu, identity or leaky_relu:SLOPE")
    norm = math.hypot(act.a, act.b)
    return activations.ab(act.a / norm, act.b / norm, name=name)


def hidden_widths(pattern: Pattern, m: int, depth: int) -> list[int]:
    """The hidden widths m_1..m_L of a pattern: constant m_l = m, quadratic m_l = l^2 m."""
    return widths.constant(m, depth) if pattern == "constant" else widths.polynomial(m, depth)


def task_seed(config: ConcentrationConfig, key: str, replicate: int) -> int:
    """The weight seed of network ``replicate`` of task ``key``: a function of ``config.seed``,
    the task's parameters (its key) and the replicate only, never of other tasks."""
    return derived_seed(config.seed, zlib.crc32(key.encode()), replicate)


def ntk_matrix(net: MLP, x: torch.Tensor) -> torch.Tensor:
    """K(theta) = [(1/n) K_theta(x_i, x_j)], the (nk, nk) matrix with entry (i k + a, j k + b)
    equal to (1/n) <d f_a(x_i)/d theta, d f_b(x_j)/d theta> (docs/theory.md section 4)."""
    n, k = x.shape[0], net.out_features
    full = empirical_ntk(net, x, outputs="full")  # (n, n, k, k)
    return full.permute(0, 2, 1, 3).reshape(n * k, n * k) / n


def limit_matrix(net: MLP, x: torch.Tensor) -> torch.Tensor:
    """K_inf = (1/n) Theta (x) I_k, Theta the infinite-width NTK (docs/theory.md sections 3-4),
    laid out like :func:`ntk_matrix`."""
    theta = infinite_kernels(net, x).ntk
    eye = torch.eye(net.out_features, dtype=theta.dtype, device=theta.device)
    return torch.kron(theta, eye) / x.shape[0]


def operator_error(net: MLP, x: torch.Tensor, limit: torch.Tensor) -> float:
    """||K(theta) - K_inf||_2, the operator norm (largest singular value) of the difference,
    with ``limit`` = :func:`limit_matrix` (the same for every width and draw of a net)."""
    return float(torch.linalg.matrix_norm(ntk_matrix(net, x) - limit, ord=2))


def _compute(config: ConcentrationConfig, pattern: Pattern, depth: int, m: int,
             context: StudyContext) -> Tables:
    key = _key(pattern, depth, m)
    x = sphere_points(config.points, config.dim, seed=config.seed).to(context.device)
    hidden = hidden_widths(pattern, m, depth)
    limits: dict[str, tuple[torch.Tensor, float]] = {}
    rows = []
    for replicate in range(config.seeds):
        seed = task_seed(config, key, replicate)
        for name in config.activations:
            act = normalized_activation(name)
            net = MLP(config.dim, hidden, config.outputs, act, weight_std=None, bias_std=0.0,
                      seed=seed, device=context.device, dtype=torch.float64)
            if name not in limits:
                limit = limit_matrix(net, x)
                limits[name] = limit, float(torch.linalg.matrix_norm(limit, ord=2))
            limit, limit_norm = limits[name]
            error = operator_error(net, x, limit)
            rows.append({"activation": name, "pattern": pattern, "depth": depth, "m": m,
                         "seed": replicate, "params": sum(p.numel() for p in net.parameters()),
                         "delta": act.delta, "kappa": act.kappa, "error": error,
                         "limit_norm": limit_norm, "relative_error": error / limit_norm})
    return {"errors": pd.DataFrame(rows)}


def _key(pattern: str, depth: int, m: int) -> str:
    return f"{pattern}/L={depth}/m={m}"


def pattern_widths(config: ConcentrationConfig, pattern: Pattern) -> list[int]:
    """The values of m swept for a pattern: ``widths`` (constant) or ``base_widths``."""
    return config.widths if pattern == "constant" else config.base_widths


def plan(config: ConcentrationConfig) -> list[Task]:
    """One task per (pattern, depth, m); each draws ``seeds`` networks per activation."""
    return [Task(_key(pattern, depth, m), partial(_compute, config, pattern, depth, m))
            for pattern in config.patterns for depth in config.depths
            for m in pattern_widths(config, pattern)]


# --- analysis -------------------------------------------------------------------------------

def slope_table(errors: pd.DataFrame) -> pd.DataFrame:
    """Per (activation, pattern, depth): the OLS fit log error = c + slope log m, pooled over
    seeds, with the slope's OLS standard error (:func:`widenet.studies.fits.power_law_fit`)."""
    rows = []
    for (act, pattern, depth), group in errors.groupby(["activation", "pattern", "depth"],
                                                       sort=False):
        fit = power_law_fit(group["m"], group["error"])
        rows.append({"activation": act, "pattern": pattern, "depth": depth, "slope": fit.slope,
                     "slope_stderr": fit.slope_stderr, "intercept": fit.intercept,
                     "points": fit.points, "m_min": group["m"].min(), "m_max": group["m"].max()})
    return pd.DataFrame(rows)


def log_ratio_table(errors: pd.DataFrame, first: str, second: str) -> pd.DataFrame:
    """Per (pattern, depth, m, seed): log(error_first / error_second) on the same weights, and
    the same for the relative errors error / ||K_inf||_2 (``log_ratio_relative``)."""
    keys = ["pattern", "depth", "m", "seed"]
    ratios = errors[keys].drop_duplicates().set_index(keys)
    for value, column in (("error", "log_ratio"), ("relative_error", "log_ratio_relative")):
        wide = errors.pivot_table(index=keys, columns="activation", values=value)
        ratios[column] = np.log(wide[first] / wide[second])
    return ratios.reset_index()


def ratio_summary(ratios: pd.DataFrame) -> pd.DataFrame:
    """Per (pattern, depth): the mean of the paired log ratios over widths and seeds (of the
    errors and of the relative errors), with its standard error std / sqrt(count): pairs at
    different widths and seeds are independent draws."""
    rows = []
    for (pattern, depth), group in ratios.groupby(["pattern", "depth"], sort=False):
        mean, stderr = mean_stderr(group["log_ratio"])
        relative, relative_stderr = mean_stderr(group["log_ratio_relative"])
        rows.append({"pattern": pattern, "depth": depth, "mean_log_ratio": mean,
                     "stderr": stderr, "pairs": len(group), "ratio": math.exp(mean),
                     "mean_log_ratio_relative": relative, "stderr_relative": relative_stderr})
    return pd.DataFrame(rows)


def _predict_log(fit: PowerLawFit, log_x: np.ndarray, at: float) -> tuple[float, float]:
    """The OLS prediction of log y at log x = ``at`` and its standard error
    s sqrt(1/N + (at - mean)^2 / Sxx), with s^2 = slope_stderr^2 Sxx."""
    sxx = float(((log_x - log_x.mean()) ** 2).sum())
    s2 = fit.slope_stderr**2 * sxx
    value = fit.intercept + fit.slope * at
    return value, math.sqrt(s2 / log_x.size + (at - log_x.mean()) ** 2 * s2 / sxx)


def equal_params_table(errors: pd.DataFrame) -> pd.DataFrame:
    """Per (activation, depth), both patterns' power-law fits of error against the parameter
    count P, evaluated at the geometric middle P0 of the P range both patterns cover; the
    quadratic/constant log ratio there, with the standard error of the two OLS predictions."""
    rows = []
    for (act, depth), group in errors.groupby(["activation", "depth"], sort=False):
        parts = {p: g for p, g in group.groupby("pattern")}
        if set(parts) != {"constant", "quadratic"}:
            continue
        low = max(g["params"].min() for g in parts.values())
        high = min(g["params"].max() for g in parts.values())
        at = 0.5 * (math.log(low) + math.log(high))
        row: dict[str, Any] = {"activation": act, "depth": depth, "params": math.exp(at),
                               "overlap": low <= high}
        variance = 0.0
        for pattern, part in parts.items():
            log_p = np.log(part["params"].to_numpy(dtype=float))
            fit = power_law_fit(part["params"], part["error"])
            value, stderr = _predict_log(fit, log_p, at)
            row[f"error_{pattern}"] = math.exp(value)
            row[f"slope_{pattern}"] = fit.slope
            variance += stderr**2
        row["log_ratio"] = math.log(row["error_quadratic"] / row["error_constant"])
        row["stderr"] = math.sqrt(variance)
        rows.append(row)
    return pd.DataFrame(rows)


def slope_checks(slopes: pd.DataFrame) -> list[Check]:
    """Fitted slope of log error against log m within SLOPE_TOLERANCE of -1/2."""
    return [check_close(
        f"slope {row.activation}/{row.pattern}/L={row.depth}",
        f"||K(theta) - K_inf||_2 ~ m^-1/2: log-log slope against m = -1/2 "
        f"(m = {row.m_min}..{row.m_max})",
        predicted=PREDICTED_SLOPE, measured=row.slope, tolerance=SLOPE_TOLERANCE,
        stderr=row.slope_stderr, note=f"{row.points} networks pooled; stderr from the OLS fit")
        for row in slopes.itertuples()]


def activation_checks(summary: pd.DataFrame) -> list[Check]:
    """Mean paired log(error_abs / error_relu) <= 0: |s| concentrates better than ReLU."""
    return [check_interval(
        f"abs vs relu {row.pattern}/L={row.depth}",
        "|s| concentrates better than ReLU: mean log(error_abs / error_relu) < 0",
        measured=row.mean_log_ratio, stderr=row.stderr, high=0.0, predicted=0.0,
        note=f"{row.pairs} pairs of networks with the same weights; error ratio exp(mean) = "
             f"{row.ratio:.3g}; relative-error ratio {math.exp(row.mean_log_ratio_relative):.3g}")
        for row in summary.itertuples()]


def analyze(config: ConcentrationConfig, tables: Tables) -> Analysis:
    """Slopes, abs/ReLU ratios and the equal-parameter comparison, with figures and checks."""
    errors = tables["errors"]
    slopes = slope_table(errors)
    derived = {"slopes": slopes}
    figures = {"error_vs_width": error_vs_width_figure(errors, slopes, PREDICTED_SLOPE)}
    checks = slope_checks(slopes)
    if {"abs", "relu"} <= set(config.activations):
        ratios = log_ratio_table(errors, "abs", "relu")
        summary = ratio_summary(ratios)
        derived["abs_vs_relu"] = summary
        figures["abs_vs_relu"] = abs_relu_figure(ratios, summary)
        checks += activation_checks(summary)
    equal = equal_params_table(errors)
    if not equal.empty:
        derived["equal_params"] = equal
        figures["error_vs_params"] = error_vs_params_figure(errors, equal)
    return Analysis(tables=derived, figures=figures, checks=checks)


STUDY = Study(name="ntk-concentration",
              summary="the empirical NTK approaches its limit like m^-1/2; |s| beats ReLU",
              config=ConcentrationConfig, plan=plan, analyze=analyze)
