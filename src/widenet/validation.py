"""Input validation shared across widenet: each check raises a WidenetError naming the argument."""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import torch
from torch import nn

from widenet.errors import WidenetError

_FLOAT_MAX = int(torch.finfo(torch.float64).max)


def positive_int(value: object, name: str) -> int:
    """Return ``value`` as an int, or raise if it is not an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise WidenetError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def nonnegative_int(value: object, name: str) -> int:
    """Return ``value`` as an int, or raise if it is not an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise WidenetError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def finite_real(value: object, name: str, *, minimum: float | None = None,
                strict: bool = False) -> float:
    """Return ``value`` as a float, or raise if it is not a finite real number.

    With ``minimum``, also require ``value >= minimum`` (``> minimum`` when ``strict``).
    """
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, Integral) and not isinstance(value, bool) and abs(value) > _FLOAT_MAX:
        raise WidenetError(f"{name} must be a finite real number, got an integer beyond "
                           "float64's range (1.8e308)")
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise WidenetError(f"{name} must be a finite real number, got {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        relation = ">" if strict else ">="
        raise WidenetError(f"{name} must be {relation} {minimum}, got {value!r}")
    return float(value)


def time_grid(value: object, name: str, *, steps: bool = False, infinite: bool = True,
              advice: str = "", device: torch.device | str = "cpu"
              ) -> tuple[torch.Tensor, bool]:
    """``value`` (a real number, or a non-empty 1-D sequence, array or tensor of them) as a 1-D
    float64 tensor on ``device``, and whether it was a single number.

    Times must be >= 0, and finite unless ``infinite``; with ``steps``, values are step counts:
    non-negative whole numbers. Booleans, text and complex numbers are refused. ``advice`` is
    appended to the message about values out of range (e.g. what to use instead of t = inf).
    """
    shape = f"{name} must be a real number or a non-empty 1-D sequence of them, got {value!r}"
    if isinstance(value, torch.Tensor):  # any device, grad or dtype (numpy has no bfloat16)
        if value.dtype == torch.bool or value.is_complex():
            raise WidenetError(shape)
        tensor = value.detach()
    else:
        try:
            raw = np.asarray(value)
        except (TypeError, ValueError) as error:  # ragged nesting, say
            raise WidenetError(shape) from error
        # object arrays hold Python integers beyond int64 (or mixed items): numbers, no text
        wrong = raw.dtype.kind not in "iufO" or (raw.dtype.kind == "O" and any(
            isinstance(item, bool | np.bool_ | str | bytes) for item in raw.flat))
        if wrong:
            raise WidenetError(shape)
        try:
            tensor = torch.from_numpy(raw.astype(np.float64))
        except OverflowError:
            hint = "; use math.inf for an infinite time" if infinite and not steps else advice
            raise WidenetError(f"{name} holds an integer beyond float64's range (1.8e308)"
                               f"{hint}") from None
        except (TypeError, ValueError) as error:
            raise WidenetError(shape) from error
    if tensor.ndim > 1 or tensor.numel() == 0:
        raise WidenetError(shape)
    values = tensor.to(device=device, dtype=torch.float64).reshape(-1)
    bad = torch.isnan(values) | (values < 0)
    if steps:
        what = "non-negative whole numbers of steps"
        bad |= ~torch.isfinite(values) | (values != values.round())
    elif infinite:
        what = "times >= 0 (inf allowed)"
    else:
        what = "finite times >= 0"
        bad |= torch.isinf(values)
    if bool(bad.any()):
        raise WidenetError(f"{name} must be {what}, got {value!r}{advice}")
    return values, tensor.ndim == 0


def floating_dtype(dtype: object) -> torch.dtype:
    """Return ``dtype`` if it is a floating-point torch dtype, else raise a WidenetError."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise WidenetError(f"dtype must be a floating-point torch dtype such as torch.float64, "
                           f"got {dtype!r}")
    return dtype


def data_matrix(x: object, name: str, *, features: int | None = None) -> torch.Tensor:
    """Check that ``x`` is a finite, non-empty (n, d) floating-point tensor and return it.

    With ``features``, also require d == features.
    """
    if not isinstance(x, torch.Tensor):
        raise WidenetError(f"{name} must be a torch.Tensor of shape (n, d), got {type(x).__name__}")
    if x.ndim != 2:
        hint = ("n points of one feature are x.unsqueeze(1), one point of d features "
                "x.unsqueeze(0)") if x.ndim == 1 else "reshape single points with x.unsqueeze(0)"
        raise WidenetError(f"{name} must have shape (n, d), one row per point, got shape "
                           f"{tuple(x.shape)}; {hint}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise WidenetError(f"{name} is empty (shape {tuple(x.shape)}); pass at least one point "
                           "with at least one feature")
    if features is not None and x.shape[1] != features:
        raise WidenetError(f"{name} has {x.shape[1]} features but the model expects {features}")
    if not (x.is_floating_point()):
        raise WidenetError(f"{name} must be a floating-point tensor, got dtype {x.dtype}; "
                           "convert it with x.double() or x.float()")
    if not bool(torch.isfinite(x).all()):
        raise WidenetError(f"{name} contains NaN or inf values; clean or drop those points first")
    return x


def data_points(x: object, name: str, *, features: int | None = None) -> torch.Tensor:
    """Like :func:`data_matrix`, but also accepting batches of sequences (n, C, L) and images
    (n, C, H, W) in torch's layout; ``features`` applies to (n, d) matrices."""
    if isinstance(x, torch.Tensor) and x.ndim > 4:
        raise WidenetError(f"{name} must be (n, d) vectors, (n, C, L) sequences or (n, C, H, W) "
                           f"images, got shape {tuple(x.shape)}")
    if not isinstance(x, torch.Tensor) or x.ndim not in (3, 4):
        return data_matrix(x, name, features=features)
    if 0 in x.shape:
        raise WidenetError(f"{name} is empty (shape {tuple(x.shape)}); pass at least one point")
    return data_matrix(x.reshape(x.shape[0], -1), name).view(x.shape)


def trainable_module(model: object, consequence: str) -> nn.Module:
    """Return ``model`` if it is an nn.Module with a parameter that requires grad; otherwise
    raise, saying what follows for the caller (``consequence``) and how to fix it."""
    if not isinstance(model, nn.Module):
        raise WidenetError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not any(p.requires_grad for p in model.parameters()):
        raise WidenetError(f"model has no trainable parameters (none with requires_grad=True), "
                           f"so {consequence}; unfreeze parameters with p.requires_grad_(True)")
    return model
