"""Wall time of every study's quick (or default) preset, end to end through the runner.

    python benchmarks/bench_studies.py                 # every study, quick preset
    python benchmarks/bench_studies.py --default lazy-training

Each study runs into a fresh temporary store (tasks, analysis, figures, report.html), on one
torch thread as `widenet run` does by default. Prints one line per study: wall seconds, CPU
seconds and the verdict counts.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import torch

from widenet.runner import run_study
from widenet.store import RunStore
from widenet.studies import build_config, get_study, study_names


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="*", help="studies to time (default: all)")
    parser.add_argument("--default", action="store_true", help="the default preset, not quick")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    preset = "default" if args.default else "quick"
    for name in args.studies or study_names():
        study = get_study(name)
        config = build_config(study.config, quick=not args.default)
        with tempfile.TemporaryDirectory() as folder:
            wall, cpu = time.perf_counter(), cpu_seconds()
            outcome = run_study(study, config, store=RunStore(folder))
            wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        verdicts = outcome.checks["verdict"].value_counts().to_dict()
        print(f"{name:20s} {preset:8s} wall {wall:7.1f} s  cpu {cpu:7.1f} s  {verdicts}",
              flush=True)


if __name__ == "__main__":
    main()
