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

    python benchmarks/bench_sweeps.py --first-use --study ntk-spectrum

measures the first-use cost per point of the local engine directly, on a machine too busy for
the sweep walls: in a fresh process per fork-server mode (warm, the default, and ``--no-warm``
as before :mod:`widenet.sweeps.warm`), ``--points`` points run one at a time by a 1-worker
local engine, each timing itself in its worker (wall and the worker's CPU seconds), then as
many in the benchmark's process after a warm-up point. First-use cost = worker - in process.
"""

from __future__ import annotations

import argparse
import math
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


def _first_use(study: str, points: int, warm: bool) -> dict[str, float]:
    """Mean (wall, CPU) seconds of a point in a fresh worker and in this process (module
    docstring); runs in its own process so that its fork server starts with ``warm``."""
    import json
    import subprocess

    code = (f"import sys, json; sys.path[:0] = {[str(ROOT / 'benchmarks'), str(ROOT)]!r}; "
            f"import bench_sweeps as b; print(json.dumps(b._first_use_here({study!r}, "
            f"{points}, {warm})))")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          text=True)
    return json.loads(done.stdout.splitlines()[-1])


def _first_use_here(study: str, points: int, warm: bool) -> dict[str, float]:
    from timing import timed_point

    from widenet.studies import build_config, get_study
    from widenet.sweeps import LocalEngine
    from widenet.sweeps.engines import Job

    torch.set_num_threads(1)
    values = [build_config(get_study(study).config, quick=True,
                           overrides=[f"seed={seed}"]).model_dump(mode="json")
              for seed in range(points + 1)]
    by_key: dict[str, tuple[float, float]] = {}
    jobs = [Job(f"seed {i}", timed_point, (study, v, "cpu")) for i, v in enumerate(values[1:])]
    LocalEngine(1, warm=warm).run(
        jobs, lambda job, outcome: by_key.update({job.label: outcome.result}))
    fresh = [by_key[job.label] for job in jobs]
    here = [timed_point(study, v) for v in values][1:]  # the first one warms this process
    mean = lambda pairs, i: statistics.mean(p[i] for p in pairs)  # noqa: E731
    # point i ran with the same config in a worker and here: the paired differences
    extra = [worker[1] - local[1] for worker, local in zip(fresh, here, strict=True)]
    return {"worker_wall": mean(fresh, 0), "worker_cpu": mean(fresh, 1),
            "here_wall": mean(here, 0), "here_cpu": mean(here, 1),
            "extra_cpu_stderr": (statistics.stdev(extra) / len(extra) ** 0.5
                                 if len(extra) > 1 else math.nan)}


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
    parser.add_argument("--first-use", action="store_true",
                        help="measure the local engine's first-use cost per point instead")
    args = parser.parse_args()
    os.environ["WIDENET_STUDIES"] = f"{NO_OP}=tests.studies.toy_study"
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT),
                                                             os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, str(ROOT))
    torch.set_num_threads(1)
    if args.first_use:
        for study in args.study or ["ntk-spectrum"]:
            for warm in (False, True):
                r = _first_use(study, args.points, warm)
                print(f"{study} fork server {'warm' if warm else 'not warm'}: worker "
                      f"{r['worker_wall']:.2f} s wall / {r['worker_cpu']:.2f} s CPU, in process "
                      f"{r['here_wall']:.2f} / {r['here_cpu']:.2f}: first use "
                      f"{r['worker_wall'] - r['here_wall']:+.2f} s wall, "
                      f"{r['worker_cpu'] - r['here_cpu']:+.2f} +- "
                      f"{r['extra_cpu_stderr']:.2f} s CPU (paired standard error)", flush=True)
        return
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
