"""Cost of each monitor relative to a training step, and the overhead of the default set.

A widenet MLP 32 -> 512 -> 512 -> 1 (ReLU, NTK parametrization) trained by full-batch GD on
n = 512 points (float32). For each monitor: the median time of one measurement divided by the
median time of one training step (default_monitors() at their cadence, then optional
monitors at every=100; the sharpness tracker is warm after its first call). Then the same run
of 500 steps with and without ``default_monitors()``, the two runs alternating ``--repeats``
times (median overhead). With ``--baseline-src DIR`` (the ``src`` folder of another widenet
checkout, e.g. the commit before a change, from ``git archive``), that end-to-end overhead is
measured for both trees in fresh interpreters that alternate, so that both see the same load.
Usage: python benchmarks/bench_monitors.py [--steps 500] [--repeats 3] [--baseline-src DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

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

    def measure() -> None:  # a new step each call: nothing is reused from the previous call
        state.step += 1
        monitor.measure(state)
    return median_time(measure)


def overheads(steps: int, repeats: int) -> dict[str, list[float]]:
    """Seconds of ``steps`` GD steps without and with default_monitors(), alternating."""
    timings: dict[str, list[float]] = {"bare": [], "default monitors": []}
    for _ in range(repeats):
        for label, monitors in (("bare", list), ("default monitors", builtin.default_monitors)):
            model, x, y = problem()
            start = time.perf_counter()
            wn.train(model, x, y, lr=0.1, steps=steps, monitors=monitors(), progress=False)
            timings[label].append(time.perf_counter() - start)
    return timings


def median_overhead(timings: dict[str, list[float]]) -> float:
    return statistics.median(with_ / bare - 1 for bare, with_ in
                             zip(timings["bare"], timings["default monitors"], strict=True))


def compare_trees(baseline: Path, steps: int, repeats: int) -> None:
    """The end-to-end overhead for the baseline tree and this one, in alternating children."""
    trees = {"baseline": baseline.resolve(), "this tree": Path(wn.__file__).parents[1]}
    results: dict[str, list[dict[str, list[float]]]] = {name: [] for name in trees}
    for _ in range(repeats):
        for name, source in trees.items():
            environment = {**os.environ, "PYTHONPATH": str(source)}
            command = [sys.executable, __file__, "--overhead-only", "--steps", str(steps),
                       "--repeats", "1", "--threads", str(torch.get_num_threads())]
            child = subprocess.run(command, env=environment, check=True, capture_output=True,
                                   text=True)
            results[name].append(json.loads(child.stdout))
    for name, runs in results.items():
        timings = {key: [t for run in runs for t in run[key]] for key in runs[0]}
        pairs = zip(timings["bare"], timings["default monitors"], strict=True)
        print(f"{name} ({trees[name]}): bare {statistics.median(timings['bare']):.2f} s, with "
              f"default_monitors() {statistics.median(timings['default monitors']):.2f} s "
              f"(medians of {repeats}): overhead {median_overhead(timings):.1%} "
              f"(per pair: {', '.join(f'{w / b - 1:.1%}' for b, w in pairs)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-src", type=Path)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--overhead-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.overhead_only:
        print(json.dumps(overheads(args.steps, args.repeats)))
        return
    model, x, y = problem()
    step = step_time(model, x, y)
    print(f"load average: {os.getloadavg()[0]:.1f}; training step: {step * 1e3:.1f} ms\n")
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
    if args.baseline_src is not None:
        print()
        compare_trees(args.baseline_src, args.steps, args.repeats)
        return
    timings = overheads(args.steps, args.repeats)
    print(f"\n{args.steps} GD steps: bare {statistics.median(timings['bare']):.2f} s, with "
          f"default_monitors() {statistics.median(timings['default monitors']):.2f} s "
          f"(medians of {args.repeats}): overhead {median_overhead(timings):.1%}")


if __name__ == "__main__":
    main()
