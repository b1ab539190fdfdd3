"""A 32-point quick sweep on the local engine and on a local Ray instance: overhead per point.

    python benchmarks/bench_sweeps.py                       # ntk-spectrum --quick and a no-op study
    python benchmarks/bench_sweeps.py --study mean-field --engines local

For each study the benchmark first runs a few points in this process, one after another,
through the same runner a worker uses (``run_study`` into a scratch store): their mean wall
time is the point's own cost t. Then it runs the whole sweep (``--seeds 32`` on the quick
preset) with 2 workers on each engine into a fresh store. The overhead per point is what a
point costs a worker beyond its own run, in worker-seconds:

    overhead = workers * wall / points - t

(process start, imports, pickling the run back, the driver's store writes and reports). The
no-op study is the test suite's toy study (its tasks draw one number), so its t is almost
nothing and the overhead is all there is. Ray's figure includes starting and stopping the
local instance, timed separately too. Run from the repository root.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
NO_OP = "toy"


def _in_process_seconds(study: str, points: int) -> float:
    """Mean wall seconds of one point run in this process, after one warm-up point."""
    from widenet.runner import run_study
    from widenet.store import RunStore
    from widenet.studies import build_config, get_study

    times = []
    for seed in range(points + 1):
        config = build_config(get_study(study).config, quick=True, overrides=[f"seed={seed}"])
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            run_study(get_study(study), config, store=RunStore(folder))
            times.append(time.perf_counter() - start)
    return statistics.mean(times[1:])


def _sweep_seconds(study: str, engine_name: str, points: int, workers: int) -> float:
    from widenet.store import RunStore
    from widenet.studies import build_config, get_study
    from widenet.sweeps import LocalEngine, RayEngine, SweepSpec, run_sweep

    quick = build_config(get_study(study).config, quick=True).model_dump(mode="json")
    engine = (RayEngine(workers=workers) if engine_name == "ray"
              else LocalEngine(workers))
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        outcome = run_sweep(study, SweepSpec(seeds=points), store=RunStore(folder),
                            engine=engine, base=quick)
        wall = time.perf_counter() - start
    statuses = outcome.points["status"].value_counts().to_dict()
    if statuses != {"completed": points}:
        raise SystemExit(f"{study} on {engine_name}: points ended {statuses}")
    return wall


def _ray_start_stop_seconds(workers: int) -> float:
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    ray.shutdown()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", action="append", help="studies (default: ntk-spectrum "
                        "and the no-op toy study)")
    parser.add_argument("--engines", nargs="+", default=["local", "ray"])
    parser.add_argument("--points", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ["WIDENET_STUDIES"] = f"{NO_OP}=tests.studies.toy_study"
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT),
                                                             os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, str(ROOT))
    torch.set_num_threads(1)
    if "ray" in args.engines:
        print(f"ray: start + stop of a local instance: "
              f"{_ray_start_stop_seconds(args.workers):.1f} s", flush=True)
    for study in args.study or ["ntk-spectrum", NO_OP]:
        own = _in_process_seconds(study, points=3)
        print(f"{study}: one point in process t = {own:.2f} s", flush=True)
        for engine in args.engines:
            wall = _sweep_seconds(study, engine, args.points, args.workers)
            overhead = args.workers * wall / args.points - own
            print(f"{study:14s} {engine:6s} {args.points} points, {args.workers} workers: "
                  f"wall {wall:6.1f} s, {wall / args.points:.2f} s/point, overhead "
                  f"{overhead:.2f} worker-s/point", flush=True)


if __name__ == "__main__":
    main()
