"""Lazy output scaling (Chizat, Oyallon & Bach 2019)."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from widenet.dynamics.optim import lr_scales
from widenet.errors import WidenetError
from widenet.validation import finite_real


class LazyModel(nn.Module):
    """h_alpha(x; w) = alpha (f(x; w) - f(x; w_0)), to be trained with loss R(h_alpha) / alpha^2
    (``loss_scale``; pass it to :func:`widenet.train`).

    As alpha grows, training follows the linearized model ever more closely: the deviation of
    the trajectory is O(1/alpha) on a finite horizon. The wrapped ``model`` is trained in place;
    w_0 is copied into buffers at construction. f(x; w_0) is evaluated under torch.no_grad, so
    dh/dw = alpha df/dw and the empirical NTK of h is alpha^2 times that of f at the current w
    (:func:`widenet.empirical_ntk` computes it by the layer-wise method when f allows it).
    """

    def __init__(self, model: nn.Module, alpha: float):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise WidenetError(f"LazyModel needs an nn.Module, got {type(model).__name__}")
        self.alpha = finite_real(alpha, "alpha", minimum=0.0, strict=True)
        if not 1e-150 <= self.alpha <= 1e150:
            raise WidenetError(f"alpha must be between 1e-150 and 1e150, got {alpha!r}: the loss "
                               "scale 1 / alpha^2 must be a float64 number, not 0 or inf")
        self.model = model
        self._names = [name for name, _ in model.named_parameters()]
        for index, (_, p) in enumerate(model.named_parameters()):
            self.register_buffer(f"w0_{index}", p.detach().clone())

    @property
    def loss_scale(self) -> float:
        """1 / alpha^2, the factor on the loss that keeps the gradient-flow time scale fixed."""
        return 1.0 / self.alpha**2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w0 = {name: self.get_buffer(f"w0_{i}") for i, name in enumerate(self._names)}
        with torch.no_grad():
            initial = functional_call(self.model, w0, (x,))
        return self.alpha * (self.model(x) - initial)

    def lr_scales(self, optimizer: str) -> dict[str, float]:
        """The wrapped model's learning-rate factors, under this module's parameter names."""
        return {f"model.{name}": scale for name, scale in lr_scales(self.model, optimizer).items()}
