"""The checks of train()'s arguments that run before a run starts, beyond a type or a range:
the targets (real or integer, one finite row per point), the inputs (the model takes them and
returns a tensor: one trial call that leaves no trace), and the monitors (cadences, distinct
names)."""

from __future__ import annotations

import torch
from torch import nn

from widenet.dynamics.monitor import Monitor
from widenet.errors import WidenetError
from widenet.validation import positive_int


def check_monitors(monitors: list[Monitor]) -> None:
    """Cadences are positive and names distinct (each names its table of measurements)."""
    names: set[str] = set()
    for monitor in monitors:
        if monitor.every is not None:
            positive_int(monitor.every, f"{type(monitor).__name__}.every")
        if monitor.name in names:
            raise WidenetError(f"two monitors are named {monitor.name!r}; give each its own "
                               "name (monitor.name = ...), which names its measurements")
        names.add(monitor.name)


def check_inputs_fit(model: nn.Module, x: torch.Tensor, name: str) -> tuple[int, ...]:
    """Apply the model to the first two points of ``x``, leaving no trace (random state and
    buffers are restored), so that inputs the model cannot take (another input dimension, say)
    are refused with a WidenetError before the run starts instead of failing inside it, and so
    is an output that is not a tensor. Returns the shape of one point's output (k,), or () for
    scalar outputs."""
    saved = [(buffer, buffer.clone()) for buffer in model.buffers()]
    devices = [x.device.index or 0] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            output = model(x[:2])
    except RuntimeError as error:
        lines = str(error).strip().splitlines() or [type(error).__name__]
        raise WidenetError(f"the model cannot be applied to {name} of shape {tuple(x.shape)} "
                           f"({lines[0][:120]}); give inputs with the model's input "
                           "dimension") from error
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
    if not isinstance(output, torch.Tensor):
        raise WidenetError(f"the model returns a {type(output).__name__}, not a tensor of "
                           "outputs; wrap it in a module whose forward returns the output "
                           "tensor, one row per point")
    return tuple(output.shape[1:])


def checked_targets(y: object, n: int, name: str) -> torch.Tensor:
    """``y``, checked to be a real or integer tensor with ``n`` rows and no NaN or inf."""
    if not isinstance(y, torch.Tensor) or y.ndim == 0:
        raise WidenetError(f"{name} must be a torch.Tensor with one row per point, got "
                           f"{type(y).__name__} {tuple(getattr(y, 'shape', ()))}")
    if y.shape[0] != n:
        raise WidenetError(f"{name} has {y.shape[0]} rows but the inputs have {n}")
    if y.dtype == torch.bool or y.is_complex():
        real = "y.double() (regression), 2 * y.double() - 1 (labels -1/+1 from True/False)" \
            if y.dtype == torch.bool else "y.double() (regression, -1/+1 labels)"
        raise WidenetError(f"{name} has dtype {y.dtype}; the losses take real targets or "
                           f"integer class labels: convert with {real} or y.long() (class "
                           "labels)")
    if y.is_floating_point() and not bool(torch.isfinite(y).all()):
        raise WidenetError(f"{name} contains NaN or inf values")
    return y
