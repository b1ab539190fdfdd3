"""Refusing oversized requests up front: how much memory a device has free, and a check that
raises a one-line :class:`~widenet.errors.WidenetError` before anything is allocated.

Free memory is ``MemAvailable`` of ``/proc/meminfo`` on Linux (what can be allocated without
swapping), else ``os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")``; on a CUDA
device it is the free memory ``torch.cuda.mem_get_info`` reports. Where none of these is
known (another OS, the ``meta`` device) nothing is refused.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING

from widenet.errors import WidenetError

if TYPE_CHECKING:  # torch is imported where a device is read, so that the studies' configs
    import torch  # (which size their nets with mlp_parameters) load without it

FLOAT64_BYTES = 8
"""Bytes of one float64 value, the dtype of widenet's data and kernels."""

_MEMINFO = Path("/proc/meminfo")


def available_memory(device: str | torch.device = "cpu") -> int | None:
    """Bytes that can still be allocated on ``device``, or None where that is not known."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return None
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    return _host_available()


def _host_available() -> int | None:
    """The host's available memory: ``MemAvailable`` (kB) of /proc/meminfo, else sysconf."""
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def require_memory(needed: int, what: str, fix: str,
                   device: str | torch.device = "cpu") -> None:
    """Raise a WidenetError if ``needed`` bytes exceed the memory free on ``device``: "``what``
    needs 128 TB of memory but cpu has 12.3 GB available; ``fix``"."""
    free = available_memory(device)
    if free is not None and needed > free:
        raise WidenetError(f"{what} needs {format_bytes(needed)} of memory but "
                           f"{device} has {format_bytes(free)} available; {fix}")


def mlp_parameters(in_features: int, widths: list[int], out_features: int,
                   bias: bool = True) -> int:
    """The number of parameters of an MLP d -> n_1 -> ... -> n_L -> k:
    sum over layers of fan_in * fan_out (+ fan_out with biases)."""
    sizes = [in_features, *widths, out_features]
    return sum(fan_in * fan_out + (fan_out if bias else 0)
               for fan_in, fan_out in itertools.pairwise(sizes))


def format_bytes(size: float) -> str:
    """``6_400_000_000`` -> ``"6.4 GB"``."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
    while size >= 1000 and len(units) > 1:
        size, units = size / 1000, units[1:]
    return f"{size:.3g} {units[0]}"
