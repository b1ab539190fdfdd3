"""Wall-clock timing shared by the benchmark scripts."""

from __future__ import annotations

import time
from collections.abc import Callable


def wall_times(function: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Seconds taken by each of ``repeats`` calls of ``function``, after ``warmup`` untimed
    calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def timed_point(study: str, values: dict, device: str = "cpu") -> tuple[float, float]:
    """(wall s, CPU s of this process) of one sweep point run by the worker's own function on
    one torch thread, measured where it runs (in a sweep worker: a fresh process forked from
    the server)."""
    import torch

    from widenet.sweeps.worker import execute_point

    torch.set_num_threads(1)

    wall, cpu = time.perf_counter(), time.process_time()
    execute_point(study, values, device)
    return time.perf_counter() - wall, time.process_time() - cpu
