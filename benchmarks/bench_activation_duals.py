"""Accuracy and speed of the numerical activation duals (tanh, softplus, any callable; gelu and
erf through the series, against their closed forms).

Accuracy: both duals E[phi(u) phi(v)] and E[phi'(u) phi'(v)] against a brute-force reference,
a composite Gauss-Legendre rule in the Cholesky coordinates (z1, z2) of (u, v) on [-12, 12]^2
(100 panels of 20 nodes per axis, 4e6 points; panels of width 0.24 resolve tanh(sqrt(q) z)
to round-off for q <= 25: checked against erf's closed form, 4e-15), and erf through the
generic class against its closed form. Errors are relative to sqrt(E[f(u)^2] E[f(v)^2]),
maximized over a grid of (q1, q2, rho).
Speed: ``infinite_kernels`` of a tanh MLP (3 hidden layers, sigma_b = 0.1, edge of chaos) on n
points of norm sqrt(d), d = 10, one thread.

Run it against any source tree (e.g. main's and a branch's) to compare:
    PYTHONPATH=src python benchmarks/bench_activation_duals.py [--points 300]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import time

import numpy as np
import torch

import widenet as wn
import widenet.activations as A

VARIANCES = [0.25, 1.0, 4.0, 25.0]
CORRELATIONS = [-0.999, -0.6, 0.0, 0.3, 0.9, 0.999, 1.0]


@functools.cache
def reference_rule() -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (times the normal density) of the composite rule on [-12, 12]."""
    nodes, weights = np.polynomial.legendre.leggauss(20)
    edges = np.linspace(-12.0, 12.0, 101)
    half = np.diff(edges)[:, None] / 2.0
    z = ((edges[:-1, None] + edges[1:, None]) / 2.0 + half * nodes).ravel()
    w = (half * weights).ravel() * np.exp(-z * z / 2.0) / math.sqrt(2.0 * math.pi)
    return z, w


@functools.cache
def reference_dual(f, q1: float, q2: float, rho: float) -> float:
    """E[f(u) f(v)] with u = sqrt(q1) z1, v = sqrt(q2) (rho z1 + sqrt(1 - rho^2) z2)."""
    z, w = reference_rule()
    zt, wt = torch.from_numpy(z), torch.from_numpy(w)
    outer = f(math.sqrt(q1) * zt) * wt
    total = 0.0
    complement = math.sqrt(max(0.0, (1.0 - rho) * (1.0 + rho)))
    for rows in torch.split(torch.arange(z.shape[0]), 400):
        v = math.sqrt(q2) * (rho * zt[rows, None] + complement * zt[None, :])
        total += float(outer[rows] @ (f(v) @ wt))
    return total


def accuracy() -> None:
    print("max error relative to sqrt(E[f(u)^2] E[f(v)^2]) over q1, q2 <= Q, rho in grid")
    generic_erf = A.Quadrature(torch.erf, "erf (generic)", derivative=A.erf.derivative)
    series_gelu = A.Quadrature(torch.nn.functional.gelu, "gelu (series)",
                               derivative=A.gelu.derivative)
    closed = {generic_erf: A.erf, series_gelu: A.gelu}
    for act in (A.tanh, series_gelu, A.softplus, generic_erf):
        worst: dict[tuple[float, int], float] = {}
        for q1, q2 in itertools.combinations_with_replacement(VARIANCES, 2):
            for rho in CORRELATIONS:
                c = torch.tensor(rho * math.sqrt(q1 * q2), dtype=torch.float64)
                t1, t2 = (torch.tensor(q, dtype=torch.float64) for q in (q1, q2))
                computed = act.duals(t1, t2, c)
                exact = (closed[act].duals(t1, t2, c) if act in closed else
                         [reference_dual(f, q1, q2, rho) for f in (act.function, act.derivative)])
                for which, f in enumerate((act.function, act.derivative)):
                    scale = math.sqrt(reference_dual(f, q1, q1, 1.0)
                                      * reference_dual(f, q2, q2, 1.0))
                    error = abs(float(computed[which]) - float(exact[which])) / scale
                    key = (max(q1, q2), which)
                    worst[key] = max(worst.get(key, 0.0), error)
        for which, label in enumerate(("dual", "derivative dual")):
            cells = "  ".join(f"Q={q:g}: {worst[(q, which)]:.1e}" for q in VARIANCES)
            print(f"  {act.name:>14} {label:>15}: {cells}")


def speed(points: int, repeats: int) -> None:
    torch.set_num_threads(1)
    x = torch.randn(points, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True) * math.sqrt(10)
    net = wn.MLP(10, [1] * 3, 1, "tanh", bias_std=0.1)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        wn.infinite_kernels(net, x)
        times.append(time.perf_counter() - start)
    print(f"tanh MLP depth 3, n={points}, float64, one thread: median {np.median(times):.2f} s, "
          f"min {min(times):.2f} s over {repeats}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()
    if not args.skip_accuracy:
        accuracy()
    speed(args.points, args.repeats)


if __name__ == "__main__":
    main()
