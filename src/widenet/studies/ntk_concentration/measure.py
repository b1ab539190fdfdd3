"""The tasks of the ``ntk-concentration`` study: operator-norm errors of empirical NTKs
against their limit, one task per (pattern, depth, m)."""

from __future__ import annotations

import zlib
from functools import partial

import pandas as pd
import torch

from widenet import widths
from widenet.data import sphere_points
from widenet.kernels.empirical import empirical_ntk
from widenet.kernels.infinite import infinite_kernels
from widenet.models import MLP
from widenet.studies.common.base import StudyContext, Tables, Task
from widenet.studies.common.seeds import derived_seed
from widenet.studies.ntk_concentration.config import (
    ConcentrationConfig,
    Pattern,
    normalized_activation,
)


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


def compute_task(config: ConcentrationConfig, pattern: Pattern, depth: int, m: int,
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
    return [Task(_key(pattern, depth, m), partial(compute_task, config, pattern, depth, m))
            for pattern in config.patterns for depth in config.depths
            for m in pattern_widths(config, pattern)]
