"""Hessian-vector products that sharpness needs along a training run, cold vs warm start.

An MLP (8 -> 128 -> 128 -> 1, tanh, NTK parametrization, float64) is trained by full-batch GD on
a small regression set with lr = 1.8 / S_0, which takes it past the edge of stability (S lr / 2
rises above 1, with catapults). Every ``--every`` steps the top-k Hessian eigenvalues are
measured by each method, and compared with a reference from widenet's Lanczos at tol 1e-10:

- widenet cold: ``sharpness(..., tol)`` from a random start;
- widenet warm: ``SharpnessTracker(k, tol)``, seeded with the previous call's eigenvectors;
- eigsh cold / warm: scipy's ARPACK (``which='LA'``, same tol, default ncv), from a random v0
  or from the previous call's top eigenvector;
- power cold / warm: power iteration on H with the Rayleigh quotient as the estimate, stopped
  when it changes by less than tol (relative), the rule PyHessian uses; k = 1 only.

"stop" columns count the products each method's own stopping rule used (and report the largest
relative error it left); "1e-4" columns count the products until the top-k estimates were first
all within 1e-4 relative of the reference (for widenet by rerunning with max_hvps = m, which
repeats the same iterations, and bisecting on m: the top Ritz values only grow with m).

``--peers``: instead, the top eigenvalue of the same model's Hessian at initialization, timed in
one process beside curvlinops (the ``bench`` extra): its HessianLinearOperator (curvlinops 3.x,
loss ``MSELoss()``, whose mean over points is twice widenet's mse, so its eigenvalue is halved)
with scipy's ``eigsh(which='LA')``, the way curvlinops' documentation finds eigenvalues; both at
the same tol, the repeats interleaved, against a reference from widenet's Lanczos at tol 1e-10.

Usage: OPENBLAS_NUM_THREADS=1 python benchmarks/bench_sharpness.py [--steps 400] [--every 10]
[--k 1 3] [--tol 1e-4]; OPENBLAS_NUM_THREADS=1 python benchmarks/bench_sharpness.py --peers
[--repeats 7] [--tol 1e-4]. (Without OPENBLAS_NUM_THREADS=1, the threads of scipy's BLAS keep
spinning after each eigsh call and slow torch down on a small machine; counts are unaffected.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh

import widenet
from widenet.diagnostics._functional_loss import FlatLoss
from widenet.diagnostics.sharpness import SharpnessTracker, sharpness
from widenet.dynamics.losses import mse

ACCURACY = 1e-4


def problem() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """512 Gaussian points in R^8 with y = sin(x.w / 2) + tanh(x_1 x_2) / 2, and the MLP."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 8, generator=g, dtype=torch.float64)
    w = torch.randn(8, generator=g, dtype=torch.float64)
    y = (torch.sin(x @ w / 2) + 0.5 * torch.tanh(x[:, 0] * x[:, 1])).unsqueeze(1)
    net = widenet.MLP(8, [128, 128], 1, "tanh", bias_std=0.1, seed=0, dtype=torch.float64)
    return net, x, y


class Counted:
    """H v by the same product as widenet's Lanczos (FlatLoss.hessian_product), counted."""

    def __init__(self, loss: FlatLoss):
        self.product, self.count = loss.hessian_product(), 0

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        self.count += 1
        return self.product(v)


def run_eigsh(loss: FlatLoss, k: int, tol: float, v0: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, int]:
    """ARPACK's top-k (largest algebraic) eigenpairs, with the number of products."""
    hvp = Counted(loss)
    operator = LinearOperator((loss.numel, loss.numel), dtype=np.float64,
                              matvec=lambda v: hvp(torch.from_numpy(v.reshape(-1))).numpy())
    values, vectors = eigsh(operator, k=k, which="LA", tol=tol, v0=v0)
    order = np.argsort(values)[::-1]
    return values[order], vectors[:, order[0]], hvp.count


def run_power(loss: FlatLoss, tol: float, v0: torch.Tensor, reference: float,
              max_hvps: int = 1000) -> tuple[float, torch.Tensor, int, int | None]:
    """Power iteration: v <- H v / ||H v||, estimate v.H v, stop at a relative change < tol.

    Returns the estimate, the vector, the products used and the first product count at which
    the estimate was within ACCURACY of ``reference`` (None if never).
    """
    hvp = Counted(loss)
    v, previous, first = v0 / v0.norm(), None, None
    for count in range(1, max_hvps + 1):
        w = hvp(v)
        estimate = float(v @ w)
        if first is None and abs(estimate - reference) <= ACCURACY * abs(reference):
            first = count
        if previous is not None and abs(estimate - previous) < tol * abs(previous):
            break
        previous, v = estimate, w / w.norm()
    return estimate, v, count, first


def error(values: torch.Tensor | np.ndarray, reference: torch.Tensor) -> float:
    """max_i |values_i - reference_i| / |reference_i|."""
    values = torch.as_tensor(np.asarray(values), dtype=torch.float64)
    return float(((values - reference).abs() / reference.abs()).max())


def first_within(estimate: Callable[[int], torch.Tensor], reference: torch.Tensor,
                 start: int) -> int:
    """The least m with error(estimate(m)) <= ACCURACY, by doubling then bisection."""
    high = start
    while error(estimate(high), reference) > ACCURACY:
        high *= 2
    low = 0
    while high - low > 1:
        middle = (low + high) // 2
        if error(estimate(middle), reference) <= ACCURACY:
            high = middle
        else:
            low = middle
    return high


def measure(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, tol: float,
            state: dict, call: int) -> dict:
    """One measurement by every method; ``state`` carries the warm starts between calls."""
    loss = FlatLoss(net, mse, x, y)
    reference = sharpness(net, mse, x, y, k, tol=1e-10, max_hvps=5000).eigenvalues
    row: dict = {}
    seed = 1000 + call

    def widenet_estimate(init) -> Callable[[int], torch.Tensor]:
        return lambda m: sharpness(net, mse, x, y, k, tol=1e-14, max_hvps=max(m, k),
                                   init=init, seed=seed).eigenvalues

    cold, seconds = timed(lambda: sharpness(net, mse, x, y, k, tol=tol, seed=seed))
    row["widenet cold"] = (cold.hvps, error(cold.eigenvalues, reference),
                           first_within(widenet_estimate(None), reference, cold.hvps), seconds)
    previous = state["tracker"].last
    warm, seconds = timed(lambda: state["tracker"](net, mse, x, y))
    row["widenet warm"] = (warm.hvps, error(warm.eigenvalues, reference),
                           first_within(widenet_estimate(previous), reference, warm.hvps)
                           if previous is not None else None, seconds)

    random_v0 = np.random.default_rng(seed).standard_normal(loss.numel)
    (values, _, count), seconds = timed(lambda: run_eigsh(loss, k, tol, random_v0))
    row["eigsh cold"] = (count, error(values, reference), None, seconds)
    (values, vector, count), seconds = timed(
        lambda: run_eigsh(loss, k, tol, state.get("eigsh", random_v0)))
    state["eigsh"] = vector
    row["eigsh warm"] = (count, error(values, reference), None, seconds)

    if k == 1:
        top = float(reference[0])
        random_t0 = torch.from_numpy(random_v0)
        (estimate, _, count, first), seconds = timed(
            lambda: run_power(loss, tol, random_t0, top))
        row["power cold"] = (count, error([estimate], reference), first, seconds)
        (estimate, vector, count, first), seconds = timed(
            lambda: run_power(loss, tol, state.get("power", random_t0), top))
        state["power"] = vector
        row["power warm"] = (count, error([estimate], reference), first, seconds)
    return row


def timed(function: Callable[[], object]) -> tuple[object, float]:
    """function() and its wall time in seconds."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def hvp_seconds(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Median wall time of one Hessian-vector product (after a warm-up)."""
    loss = FlatLoss(net, mse, x, y)
    hvp = loss.hessian_product()
    v = torch.randn(loss.numel, dtype=torch.float64)
    hvp(v)
    times = []
    for _ in range(20):
        start = time.perf_counter()
        hvp(v)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(k: int, steps: int, every: int, tol: float) -> None:
    net, x, y = problem()
    lr = 1.8 / sharpness(net, mse, x, y, tol=1e-10).value
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    state = {"tracker": SharpnessTracker(k, tol=tol)}
    rows, ratios = [], []
    for step in range(steps + 1):
        if step % every == 0:
            rows.append(measure(net, x, y, k, tol, state, step // every))
            ratios.append(state["tracker"].last.value * lr / 2)
        optimizer.zero_grad()
        mse(net(x), y).backward()
        optimizer.step()
    print(f"\nk = {k}, tol = {tol}: {len(rows)} calls, one every {every} GD steps (lr = {lr:.4f});"
          f" S lr / 2 from {min(ratios):.2f} to {max(ratios):.2f}, last {ratios[-1]:.2f}\n")
    print("| method | stop: mean HVPs | median | max | max rel. error | median ms | "
          "to 1e-4: mean HVPs | median | max | stopped > 1e-4 off |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for method in rows[0]:
        # Warm methods are summarized over the calls that had a previous call to start from.
        measured = [row[method] for row in rows[1:]] if "warm" in method else \
            [row[method] for row in rows]
        stops = [m[0] for m in measured]
        firsts = [m[2] for m in measured if m[2] is not None]
        oracle = (f"{statistics.mean(firsts):.1f} | {statistics.median(firsts):g} | "
                  f"{max(firsts)}") if firsts else "- | - | -"
        missed = sum(m[1] > ACCURACY for m in measured)
        print(f"| {method} | {statistics.mean(stops):.1f} | {statistics.median(stops):g} | "
              f"{max(stops)} | {max(m[1] for m in measured):.1e} | "
              f"{1e3 * statistics.median(m[3] for m in measured):.0f} | {oracle} | {missed} |",
              flush=True)


def peers(tol: float, repeats: int) -> None:
    """widenet's sharpness beside curvlinops' Hessian operator + eigsh, one process."""
    net, x, y = problem()
    reference = float(sharpness(net, mse, x, y, tol=1e-10, max_hvps=5000).value)
    cases = {"widenet sharpness": lambda: float(sharpness(net, mse, x, y, tol=tol).value)}
    try:
        from curvlinops import HessianLinearOperator
    except ImportError:
        print("curvlinops is not installed (pip install curvlinops-for-pytorch==3.0.1, as "
              "pinned in the bench extra): widenet only")
    else:
        params = [p for p in net.parameters() if p.requires_grad]

        def curvlinops_top() -> float:
            hessian = HessianLinearOperator(net, torch.nn.MSELoss(), params, [(x, y)],
                                            check_deterministic=False)
            values, _ = eigsh(hessian.to_scipy(), k=1, which="LA", tol=tol)
            return float(values[0]) / 2  # MSELoss = mean (f - y)^2 = 2 x widenet's mse
        cases["curvlinops HessianLinearOperator + eigsh"] = curvlinops_top
    values = {label: compute() for label, compute in cases.items()}  # also the warm-up
    times: dict[str, list[float]] = {label: [] for label in cases}
    for _ in range(repeats):
        for label, compute in cases.items():
            times[label].append(timed(compute)[1])
    base = statistics.median(times["widenet sharpness"])
    print(f"top Hessian eigenvalue at initialization, tol = {tol}, reference {reference:.6f}; "
          f"{torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f}\n")
    print("| implementation | runs | median ms | / widenet | eigenvalue | rel. error |")
    print("|---|---|---|---|---|---|")
    for label, measured in times.items():
        median = statistics.median(measured)
        print(f"| {label} | {len(measured)} | {1e3 * median:.1f} | {median / base:.2f} | "
              f"{values[label]:.6f} | {abs(values[label] - reference) / reference:.1e} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--peers", action="store_true",
                        help="only: widenet beside curvlinops at initialization, one process")
    parser.add_argument("--repeats", type=int, default=7, help="--peers: timed runs each")
    args = parser.parse_args()
    if args.peers:
        peers(args.tol, args.repeats)
        return
    net, x, y = problem()
    print(f"P = {sum(p.numel() for p in net.parameters())} parameters, n = {x.shape[0]} points;"
          f" one HVP takes {1e3 * hvp_seconds(net, x, y):.1f} ms (the gradient graph built"
          f" once per call; {torch.get_num_threads()} torch threads, OPENBLAS_NUM_THREADS ="
          f" {os.environ.get('OPENBLAS_NUM_THREADS')})")
    for k in args.k:
        run(k, args.steps, args.every, args.tol)


if __name__ == "__main__":
    main()
