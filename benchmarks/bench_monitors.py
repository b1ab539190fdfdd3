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


class Timed(Monitor):
    """A monitor that adds the seconds spent in its start and measure calls to ``spent``."""

    def __init__(self, monitor: Monitor, spent: list[float]):
        self.monitor, self.spent = monitor, spent
        self.name, self.every = monitor.name, monitor.every

    def start(self, state: RunState) -> None:
        begin = time.perf_counter()
        self.monitor.start(state)
        self.spent.append(time.perf_counter() - begin)

    def measure(self, state: RunState) -> dict[str, float]:
        begin = time.perf_counter()
        row = self.monitor.measure(state)
        self.spent.append(time.perf_counter() - begin)
        return row


def overheads(steps: int, repeats: int) -> dict[str, list[float]]:
    """Seconds of ``steps`` GD steps without and with default_monitors() (after an untimed
    warm-up run, the order alternating), and the seconds spent inside the monitors' calls."""
    model, x, y = problem()
    wn.train(model, x, y, lr=0.1, steps=20, monitors=builtin.default_monitors(), progress=False)
    timings: dict[str, list[float]] = {"bare": [], "default monitors": [], "inside": []}
    for repeat in range(repeats):
        for label in ("bare", "default monitors")[::1 if repeat % 2 == 0 else -1]:
            spent: list[float] = []
            monitors = ([] if label == "bare" else
                        [Timed(m, spent) for m in builtin.default_monitors()])
            model, x, y = problem()
            start = time.perf_counter()
            wn.train(model, x, y, lr=0.1, steps=steps, monitors=monitors, progress=False)
            timings[label].append(time.perf_counter() - start)
            if label != "bare":
                timings["inside"].append(sum(spent))
    return timings


def median_overhead(timings: dict[str, list[float]]) -> float:
    """Median over the pairs of (time with monitors) / (bare time) - 1."""
    return statistics.median(with_ / bare - 1 for bare, with_ in
                             zip(timings["bare"], timings["default monitors"], strict=True))


def inside_share(timings: dict[str, list[float]]) -> float:
    """Median over the runs with monitors of (time inside them) / (the rest of the run)."""
    return statistics.median(inside / (total - inside) for inside, total in
                             zip(timings["inside"], timings["default monitors"], strict=True))


def summary(timings: dict[str, list[float]]) -> str:
    pairs = zip(timings["bare"], timings["default monitors"], strict=True)
    return (f"bare {statistics.median(timings['bare']):.2f} s, with default_monitors() "
            f"{statistics.median(timings['default monitors']):.2f} s: end-to-end overhead "
            f"{median_overhead(timings):.1%} (per pair: "
            f"{', '.join(f'{w / b - 1:.1%}' for b, w in pairs)}); time inside the monitors / "
            f"the rest of the same run: {inside_share(timings):.1%}")


def compare_trees(baseline: Path, steps: int, repeats: int) -> None:
    """The end-to-end overhead for the baseline tree and this one, in alternating children."""
    trees = {"baseline": baseline.resolve(), "this tree": Path(wn.__file__).parents[1]}
    results: dict[str, list[dict[str, list[float]]]] = {name: [] for name in trees}
    for _ in range(max(1, repeats // 2)):  # each child runs both orders
        for name, source in trees.items():
            environment = {**os.environ, "PYTHONPATH": str(source)}
            command = [sys.executable, __file__, "--overhead-only", "--steps", str(steps),
                       "--repeats", "2", "--threads", str(torch.get_num_threads())]
            child = subprocess.run(command, env=environment, check=True, capture_output=True,
                                   text=True)
            results[name].append(json.loads(child.stdout))
            print(f"  {name}: {summary(results[name][-1])}", flush=True)
    for name, runs in results.items():
        timings = {key: [t for run in runs for t in run[key]] for key in runs[0]}
        print(f"{name} ({trees[name]}), medians of {len(timings['bare'])}: "
              f"{summary(timings)}")


def monitor_table() -> None:
    """Each monitor's cost per call and per training step at its cadence."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-src", type=Path)
    parser.add_argument("--skip-table", action="store_true",
                        help="only the end-to-end overhead, not the per-monitor table")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--overhead-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.overhead_only:
        print(json.dumps(overheads(args.steps, args.repeats)))
        return
    if not args.skip_table:
        monitor_table()
    if args.baseline_src is not None:
        print()
        compare_trees(args.baseline_src, args.steps, args.repeats)
        return
    timings = overheads(args.steps, args.repeats)
    print(f"\n{args.steps} GD steps, medians of {args.repeats}: {summary(timings)}")


if __name__ == "__main__":
    main()
