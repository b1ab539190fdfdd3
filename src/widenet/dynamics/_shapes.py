"""Shapes of widenet.predict's inputs: kernels (shared or full), outputs and time grids.

A shared kernel (n1, n2) acts on (points, columns) matrices whose columns are the k outputs (one
column for 1-D targets); a full kernel (n1, n2, k, k), entry [i, j, a, b] = <df_a(x_i), df_b(x_j)>,
is flattened to (n1 k, n2 k) and acts on (points k, 1) columns, row i k + a.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from widenet.errors import WidenetError

F64 = torch.float64


@dataclass(frozen=True)
class Layout:
    """How kernels and outputs map to matrices for one training kernel.

    A shared kernel acts on (points, columns) matrices whose columns are the k outputs (one column
    for 1-D targets); a full kernel acts on (points k, 1) columns, row i k + a.
    """

    n: int
    outputs: int
    full: bool
    vector: bool
    device: torch.device

    def kernel(self, kernel: object, rows: int, cols: int, name: str) -> torch.Tensor:
        """Check ``kernel`` is (rows, cols) ((rows, cols, k, k) when full); flatten to float64."""
        k = self.outputs
        expected = (rows, cols, k, k) if self.full else (rows, cols)
        tensor = self._checked(kernel, name, expected)
        return tensor.permute(0, 2, 1, 3).reshape(rows * k, cols * k) if self.full else tensor

    def values(self, values: object, points: int, name: str) -> torch.Tensor:
        """Check ``values`` has the targets' shape for ``points`` points; return the matrix form."""
        expected = (points,) if self.vector else (points, self.outputs)
        tensor = self._checked(values, name, expected)
        return tensor.reshape(-1, 1) if self.full or self.vector else tensor

    def unflatten(self, matrix: torch.Tensor, points: int) -> torch.Tensor:
        """(..., rows, columns) matrix form -> (..., points) or (..., points, k)."""
        shape = (points,) if self.vector else (points, self.outputs)
        return matrix.reshape(*matrix.shape[:-2], *shape)

    def covariance(self, matrix: torch.Tensor, points: int) -> torch.Tensor:
        """(..., P, P) flattened covariance -> (..., m, m), or (..., m, m, k, k) when full."""
        if not self.full:
            return matrix
        k = self.outputs
        return matrix.reshape(*matrix.shape[:-2], points, k, points, k).transpose(-3, -2)

    def _checked(self, value: object, name: str, expected: tuple[int, ...]) -> torch.Tensor:
        """Check ``value`` is a finite float tensor of shape ``expected`` on the kernel's device."""
        tensor = finite_tensor(value, name)
        if tuple(tensor.shape) != expected:
            form = "full (n, n, k, k)" if self.full else "shared (n, n)"
            raise WidenetError(f"{name} must have shape {expected} to match the {form} training "
                               f"kernel and targets, got {tuple(tensor.shape)}")
        if tensor.device != self.device:
            raise WidenetError(f"{name} is on {tensor.device} but the training kernel is on "
                               f"{self.device}; move all inputs to one device")
        return tensor.to(F64)


def finite_tensor(value: object, name: str) -> torch.Tensor:
    """Check ``value`` is a floating-point tensor without NaN or inf."""
    if not isinstance(value, torch.Tensor):
        raise WidenetError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise WidenetError(f"{name} must be a floating-point tensor, got dtype {value.dtype}; "
                           "convert it with .double()")
    if not bool(torch.isfinite(value).all()):
        raise WidenetError(f"{name} contains NaN or inf values")
    return value


def training_layout(kernel: object, y: object, kernel_name: str) -> tuple[Layout, torch.Tensor]:
    """The layout set by a training kernel and targets, and the kernel as a float64 matrix.

    y = None reads the kernel alone (as max_stable_lr does); outputs are then taken as 1-D.
    """
    kernel = finite_tensor(kernel, kernel_name)
    shape = tuple(kernel.shape)
    square = len(shape) in (2, 4) and shape[0] == shape[1] > 0 \
        and (len(shape) == 2 or shape[2] == shape[3] > 0)
    if not square:
        raise WidenetError(f"{kernel_name} must be a square (n, n) kernel or a full (n, n, k, k) "
                           f"kernel, got shape {shape}")
    full = len(shape) == 4
    if y is None:
        layout = Layout(shape[0], shape[2] if full else 1, full, True, kernel.device)
        return layout, layout.kernel(kernel, shape[0], shape[0], kernel_name)
    if isinstance(y, torch.Tensor) and not y.is_floating_point() and not y.is_complex():
        raise WidenetError(f"y holds integers (dtype {y.dtype}); kernel predictions fit real "
                           "targets: for classification one-hot encode class labels, e.g. "
                           "torch.nn.functional.one_hot(y).double() (real-valued targets: "
                           "y.double())")
    y = finite_tensor(y, "y")
    if y.ndim not in (1, 2) or y.shape[0] != shape[0] or (y.ndim == 2 and y.shape[1] == 0):
        raise WidenetError(f"y must have shape (n,) or (n, k) with n = {shape[0]} training "
                           f"points (the kernel's first axis), got {tuple(y.shape)}")
    outputs = shape[2] if full else (y.shape[1] if y.ndim == 2 else 1)
    if full and y.ndim == 1 and outputs != 1:
        raise WidenetError(f"y must have shape (n, k) = {(shape[0], outputs)} for a full "
                           f"kernel with k = {outputs} outputs, got {tuple(y.shape)}")
    layout = Layout(shape[0], outputs, full, y.ndim == 1, kernel.device)
    return layout, layout.kernel(kernel, shape[0], shape[0], kernel_name)


def result_dtype(*items: torch.Tensor | torch.dtype | None) -> torch.dtype:
    """The promoted dtype of the tensors and dtypes given (None entries are skipped)."""
    dtypes = [item.dtype if isinstance(item, torch.Tensor) else item for item in items
              if item is not None]
    return functools.reduce(torch.promote_types, dtypes)


def rows_of(value: object, name: str) -> int:
    """The number of points along the first axis of a kernel (checked to be at least one)."""
    tensor = finite_tensor(value, name)
    if tensor.ndim == 0 or tensor.shape[0] == 0:
        raise WidenetError(f"{name} must have one row per test point (at least one), got shape "
                           f"{tuple(tensor.shape)}")
    return tensor.shape[0]


def finish(matrix: torch.Tensor, scalar: bool, dtype: torch.dtype) -> torch.Tensor:
    """Drop the time axis for a scalar time and cast to the result dtype."""
    return (matrix[0] if scalar else matrix).to(dtype)
