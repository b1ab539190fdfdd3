"""Cost of each monitor relative to a training step, and the overhead of the default set.

A widenet MLP 32 -> 512 -> 512 -> 1 (ReLU, NTK parametrization) trained by full-batch GD on
n = 512 points (float32). For each monitor: the median time of one measurement divided by the
median time of one training step (default_monitors() at their cadence, then optional
monitors at every=100; the sharpness tracker is warm after its first call). Then the same run
of 500 steps with and without ``default_monitors()``.
Usage: python benchmarks/bench_monitors.py [--steps 500]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from timing import wall_times

import widenet as wn
from widenet.diagnostics import builtin
from widenet.dynamics.losses import mse
from widenet.dynamics.monitor import Monitor, RunState


def problem() -> tuple[wn.MLP, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 32, generator=g)
    return wn.MLP(32, [512, 512], 1, "relu", seed=0), x, torch.sin(x[:, :1])


def median_time(function, repeats: int = 7) -> float:
    return statistics.median(wall_times(function, repeats))


def step_time(model: wn.MLP, x: torch.Tensor, y: torch.Tensor) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def step() -> None:
        optimizer.zero_grad()
        mse(model(x), y).backward()
        optimizer.step()
    return median_time(step, repeats=21)


def monitor_time(monitor: Monitor, model: wn.MLP, x: torch.Tensor, y: torch.Tensor) -> float:
    names, parameters = zip(*model.named_parameters(), strict=True)
    gradients = dict(zip(names, torch.autograd.grad(mse(model(x), y), parameters), strict=True))
    state = RunState(model, x, y, mse, 0.1, 0, gradients)
    monitor.start(state)
    state.step = 10
    return median_time(lambda: monitor.measure(state))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    model, x, y = problem()
    step = step_time(model, x, y)
    print(f"training step: {step * 1e3:.1f} ms\n")
    print("| monitor | default every | ms per call | calls per step at default | cost / step |")
    print("|---|---|---|---|---|")
    optional = [builtin.SharpnessMonitor(every=100), builtin.TaylorMonitor(every=100),
                builtin.InfoNuisanceMonitor(top=10, every=100)]
    for monitor in builtin.default_monitors() + optional:
        cost = monitor_time(monitor, *problem())
        every = monitor.every or 10
        print(f"| {type(monitor).__name__} | {every} | {cost * 1e3:.1f} | 1/{every} | "
              f"{cost / step / every:.1%} |")
    linear_step = step_time(wn.linearize(problem()[0]), *problem()[1:])
    print(f"| LinearizationMonitor (trains the linearized model alongside) | every step | "
          f"{linear_step * 1e3:.1f} | 1 | {linear_step / step:.0%} |")
    timings = {}
    for label, monitors in (("bare", []), ("default monitors", builtin.default_monitors())):
        model, x, y = problem()
        start = time.perf_counter()
        wn.train(model, x, y, lr=0.1, steps=args.steps, monitors=monitors, progress=False)
        timings[label] = time.perf_counter() - start
    overhead = timings["default monitors"] / timings["bare"] - 1
    print(f"\n{args.steps} GD steps: bare {timings['bare']:.2f} s, with default_monitors() "
          f"{timings['default monitors']:.2f} s: overhead {overhead:.1%}")


if __name__ == "__main__":
    main()
