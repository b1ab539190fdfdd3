"""Devices by name: which one a user means, and whether this machine has it.

torch is imported inside the functions that make a torch device, not with the module: a
sweep's device is checked before anything runs, and the cpu, which every machine has, needs no
torch for that (:func:`check_device`; ``widenet sweep --dry-run`` stays fast).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from widenet.errors import WidenetError

if TYPE_CHECKING:
    import torch


def device_named(device: str | torch.device) -> torch.device:
    """The torch device that ``device`` names (cpu, cuda or cuda:N), without asking whether this
    machine has it (points run elsewhere, e.g. on a Ray cluster, may)."""
    import torch

    try:
        named = torch.device(device)
    except (RuntimeError, TypeError):
        raise WidenetError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if named.type not in ("cpu", "cuda"):
        raise WidenetError(f"device {device!r} is not supported; use cpu, cuda or cuda:N")
    return named


def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device named by ``device``; raises when it is not available here."""
    import torch

    resolved = device_named(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise WidenetError(f"device {device!r} asked for, but no CUDA device is available "
                               "here; use the cpu device (--device cpu)")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise WidenetError(f"device {device!r} does not exist: this machine has "
                               f"{torch.cuda.device_count()} CUDA device(s)")
    return resolved


def parameter_device(device: str | torch.device | None) -> torch.device | None:
    """Where a layer's parameters go: None (torch's default), ``meta`` (no storage: a model
    described for its limit only) or a device this machine has (else a clear error)."""
    import torch

    if device is None:
        return None
    return torch.device("meta") if str(device) == "meta" else resolve_device(device)


def point_device(device: str, gpus_per_run: float) -> str:
    """The device a sweep point runs on: ``"cuda"`` when each point is given GPUs (Ray then
    makes the GPUs it assigns to the point the only ones the point sees, so the point must not
    name an index), else ``device``."""
    return "cuda" if gpus_per_run > 0 else device


def describe_device(device: torch.device) -> str:
    """``"cpu"`` or ``"cuda:0 (NVIDIA H100 80GB HBM3)"``."""
    import torch

    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def check_device(device: str, *, here: bool) -> None:
    """Raise unless ``device`` names a device (cpu, cuda or cuda:N) and, with ``here``, unless
    this machine has it. ``"cpu"`` passes without importing torch."""
    if device != "cpu":
        (resolve_device if here else device_named)(device)
