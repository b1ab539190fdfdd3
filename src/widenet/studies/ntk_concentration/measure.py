"""The tasks of the ``ntk-concentration`` study: operator-norm errors of empirical NTKs
against their limit, one task per (pattern, depth, m) of the main grid and one per point of
the structure sweeps (depth, outputs, points, activation family) at the probe width."""

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
from widenet.seeds import derived_seed
from widenet.studies.common.base import StudyContext, Tables, Task
from widenet.studies.ntk_concentration.config import (
    SWEEPS,
    ConcentrationConfig,
    Pattern,
    Sweep,
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
    full = empirical_ntk(net, x, outputs="full").full  # (n, n, k, k)
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


def network_errors(config: ConcentrationConfig, key: str, *, pattern: Pattern, depth: int,
                   m: int, outputs: int, points: int, names: list[str], seeds: int,
                   device: torch.device) -> list[dict[str, object]]:
    """One row per (replicate, activation): ``seeds`` networks of the given pattern, depth L,
    width m and k = ``outputs``, on ``points`` inputs, each drawn once and evaluated with every
    activation of ``names`` on the same weights (a paired design), with the operator-norm
    error ||K(theta) - K_inf||_2 and the relative error error / ||K_inf||_2."""
    x = sphere_points(points, config.dim, seed=config.seed).to(device)
    hidden = hidden_widths(pattern, m, depth)
    limits: dict[str, tuple[torch.Tensor, float]] = {}
    rows = []
    for replicate in range(seeds):
        seed = task_seed(config, key, replicate)
        for name in names:
            act = normalized_activation(name)
            net = MLP(config.dim, hidden, outputs, act, weight_std=None, bias_std=0.0,
                      seed=seed, device=device, dtype=torch.float64)
            if name not in limits:
                limit = limit_matrix(net, x)
                limits[name] = limit, float(torch.linalg.matrix_norm(limit, ord=2))
            limit, limit_norm = limits[name]
            error = operator_error(net, x, limit)
            rows.append({"activation": name, "pattern": pattern, "depth": depth, "m": m,
                         "outputs": outputs, "points": points, "seed": replicate,
                         "params": sum(p.numel() for p in net.parameters()),
                         "delta": act.delta, "kappa": act.kappa, "error": error,
                         "limit_norm": limit_norm, "relative_error": error / limit_norm})
    return rows


def compute_task(config: ConcentrationConfig, pattern: Pattern, depth: int, m: int,
                 context: StudyContext) -> Tables:
    """The main grid's task: ``seeds`` networks of (pattern, L, m) with ``outputs`` outputs on
    ``points`` inputs, every activation of ``activations``."""
    rows = network_errors(config, _key(pattern, depth, m), pattern=pattern, depth=depth, m=m,
                          outputs=config.outputs, points=config.points,
                          names=config.activations, seeds=config.seeds, device=context.device)
    return {"errors": pd.DataFrame(rows).drop(columns=["outputs", "points"])}


def compute_probe_task(config: ConcentrationConfig, sweep: Sweep, value: int,
                       context: StudyContext) -> Tables:
    """One point of a structure sweep at the probe width m = ``probe_width`` (table ``probes``,
    column ``sweep``): ``depth`` sweeps L over both patterns of ``patterns``, ``outputs`` sweeps
    k and ``points`` sweeps n (quadratic pattern, L = ``probe_depth``), each with every
    activation of ``activations``; ``family`` (value unused) evaluates every activation of
    ``family`` on the same quadratic networks at L = ``probe_depth``."""
    base = {"depth": config.probe_depth, "outputs": config.outputs, "points": config.points}
    names = config.family if sweep == "family" else config.activations
    if sweep != "family":
        base[sweep] = value
    patterns = config.patterns if sweep == "depth" else ["quadratic"]
    rows = [row for pattern in patterns for row in network_errors(
        config, f"probe/{sweep}/{pattern}/{value}", pattern=pattern, m=config.probe_width,
        names=names, seeds=config.probe_seeds, device=context.device, **base)]
    return {"probes": pd.DataFrame(rows).assign(sweep=sweep)}


def _key(pattern: str, depth: int, m: int) -> str:
    return f"{pattern}/L={depth}/m={m}"


def pattern_widths(config: ConcentrationConfig, pattern: Pattern) -> list[int]:
    """The values of m swept for a pattern: ``widths`` (constant) or ``base_widths``."""
    return config.widths if pattern == "constant" else config.base_widths


def probe_values(config: ConcentrationConfig, sweep: Sweep) -> list[int]:
    """The values a structure sweep runs over (``[0]`` for ``family``, one task)."""
    return {"depth": config.depth_sweep, "outputs": config.outputs_sweep,
            "points": config.points_sweep, "family": [0] if config.family else []}[sweep]


def plan(config: ConcentrationConfig) -> list[Task]:
    """One task per (pattern, depth, m), each drawing ``seeds`` networks per activation, then
    one per point of each structure sweep (:func:`compute_probe_task`)."""
    grid = [Task(_key(pattern, depth, m), partial(compute_task, config, pattern, depth, m))
            for pattern in config.patterns for depth in config.depths
            for m in pattern_widths(config, pattern)]
    probes = [Task(f"probe/{sweep}={value}" if sweep != "family" else "probe/family",
                   partial(compute_probe_task, config, sweep, value))
              for sweep in SWEEPS for value in probe_values(config, sweep)]
    return grid + probes
