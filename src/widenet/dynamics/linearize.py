"""The linearized model: the first-order Taylor expansion of a network around its parameters."""

from __future__ import annotations

import copy
from operator import attrgetter

import torch
from torch import nn
from torch.func import functional_call, jvp

from widenet.dynamics.optim import lr_scales
from widenet.validation import trainable_module


class LinearizedModel(nn.Module):
    """f_lin(x; theta) = f(x; theta_0) + J(x; theta_0) (theta - theta_0).

    ``self.model`` is a copy of the network whose parameters are the trainable theta (starting
    at theta_0); theta_0 is kept as buffers. The forward pass is one Jacobian-vector product
    (torch.func.jvp), so the model is trained like any module and its NTK is J(theta_0) J(theta_0)^T
    for all theta. Parameter names are the original ones prefixed by ``model.``.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = copy.deepcopy(trainable_module(model, "there is nothing to linearize"))
        for module in self.model.modules():  # hooks on the original (e.g. gradient scaling's)
            module._forward_hooks.clear()      # must not fire, or be pickled, with the copy
            module._forward_pre_hooks.clear()
            module._backward_hooks.clear()
            module._backward_pre_hooks.clear()
        self._names = [name for name, p in self.model.named_parameters() if p.requires_grad]
        for index, name in enumerate(self._names):
            self.register_buffer(f"theta0_{index}", self.model.get_parameter(name).detach().clone())

    def initial_parameters(self) -> dict[str, torch.Tensor]:
        """theta_0, by the inner model's parameter names."""
        return {name: self.get_buffer(f"theta0_{index}") for index, name in enumerate(self._names)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta0 = self.initial_parameters()
        # attrgetter, not get_parameter: under an outer functional_call (e.g. LazyModel's) the
        # attributes are plain tensors.
        delta = {name: attrgetter(name)(self.model) - theta0[name] for name in self._names}
        output, tangent = jvp(lambda params: functional_call(self.model, params, (x,)),
                              (theta0,), (delta,))
        return output + tangent

    def lr_scales(self, optimizer: str) -> dict[str, float]:
        """The wrapped model's learning-rate factors, under this module's parameter names."""
        return {f"model.{name}": scale for name, scale in lr_scales(self.model, optimizer).items()}


def linearize(model: nn.Module) -> LinearizedModel:
    """The first-order Taylor model of ``model`` around its current parameters (a copy: the
    original is untouched)."""
    return LinearizedModel(model)
