"""The full-batch training loss as a pure function of a flat parameter vector.

L(theta) = loss_fn(f(x; theta), y), theta in R^P the model's trainable parameters, each
flattened and concatenated in ``model.named_parameters()`` order. The model is evaluated with
``torch.func.functional_call`` on detached copies of its tensors (see
:class:`widenet.kernels._functional.FunctionalModel`), so its parameters, their ``.grad`` and
``requires_grad`` are never touched. A model with backward hooks (its modules' or torch's
global ones) is refused, as by the empirical NTK: a hook that changes gradients would change
every derivative taken here. Everything is computed in the promoted dtype of the model's
parameters and x, on x's device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from widenet.errors import WidenetError
from widenet.kernels._functional import FunctionalModel, check_model, check_points, rows_close

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Why a model with backward hooks is refused: its derivatives would be taken through the hooks.
_LOSS_HOOKS = ("the loss's derivatives are taken from, so the Hessian and the Taylor "
               "coefficients computed would not be those of the loss; remove them for the "
               "diagnostic (handle.remove())")


class FlatLoss:
    """L(theta) = loss_fn(model(x; theta), y) for theta in R^P, with its derivatives.

    ``theta`` holds the model's current trainable parameters; ``value`` is L(theta).
    """

    def __init__(self, model: nn.Module, loss_fn: LossFunction, x: torch.Tensor,
                 y: torch.Tensor):
        check_model(model, "the loss has no derivatives to take", _LOSS_HOOKS)
        if not callable(loss_fn):
            raise WidenetError(f"loss_fn must be a callable loss_fn(outputs, y) -> scalar, got "
                               f"{type(loss_fn).__name__}")
        x = check_points(x, "x")
        dtype = torch.promote_types(next(p.dtype for p in model.parameters()
                                         if p.requires_grad), x.dtype)
        x = x.to(dtype)
        self.fmodel = FunctionalModel(model, x)
        self.loss_fn = loss_fn
        self.x = x
        self.y = _check_targets(y, x)
        self.names = tuple(self.fmodel.params)
        self.shapes = tuple(p.shape for p in self.fmodel.params.values())
        self.theta = torch.cat([p.reshape(-1) for p in self.fmodel.params.values()])
        if not bool(torch.isfinite(self.theta).all()):
            raise WidenetError("the model's parameters contain NaN or inf (has training "
                               "diverged?); the loss has no derivatives there")
        self.value = self._first_value()

    @property
    def numel(self) -> int:
        """P, the number of trainable scalars."""
        return self.theta.numel()

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        """L(theta), a 0-dim tensor."""
        return self._loss(theta).reshape(())

    def _loss(self, theta: torch.Tensor) -> object:
        """loss_fn(model(x; theta), y), as loss_fn returns it."""
        params = dict(zip(self.names, self.unflatten(theta), strict=True))
        return self.loss_fn(self.fmodel.raw(params, self.x), self.y)

    def unflatten(self, theta: torch.Tensor) -> list[torch.Tensor]:
        """The flat vector cut into tensors of the parameters' shapes, in ``names`` order."""
        sizes = [shape.numel() for shape in self.shapes]
        return [part.view(shape) for part, shape in
                zip(torch.split(theta, sizes), self.shapes, strict=True)]

    def flatten(self, tensors: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
        """A dict keyed like the trainable ``named_parameters()`` as one flat vector in R^P."""
        if not isinstance(tensors, Mapping):
            raise WidenetError(f"{name} must be a dict of tensors keyed like "
                               f"model.named_parameters(), got {type(tensors).__name__}")
        missing = [n for n in self.names if n not in tensors]
        extra = [n for n in tensors if n not in self.names]
        if missing or extra:
            raise WidenetError(f"{name} must have exactly the model's trainable parameter names "
                               f"as keys; missing {missing}, unexpected {extra} (give zeros "
                               "for parameters that do not move)")
        parts = []
        for key, shape in zip(self.names, self.shapes, strict=True):
            tensor = tensors[key]
            if not isinstance(tensor, torch.Tensor) or tensor.shape != shape:
                got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else \
                    type(tensor).__name__
                raise WidenetError(f"{name}[{key!r}] must be a tensor of the parameter's shape "
                                   f"{tuple(shape)}, got {got}")
            parts.append(tensor.detach().reshape(-1).to(self.theta))
        return self.check_vector(torch.cat(parts), name)

    def check_vector(self, v: torch.Tensor, name: str) -> torch.Tensor:
        """``v`` as a finite vector in R^P of theta's dtype and device, or a WidenetError."""
        if not isinstance(v, torch.Tensor) or not v.is_floating_point():
            raise WidenetError(f"{name} must be a floating-point tensor, got "
                               f"{v.dtype if isinstance(v, torch.Tensor) else type(v).__name__}")
        if v.shape != self.theta.shape:
            raise WidenetError(f"{name} must be a flat vector of the model's {self.numel} "
                               f"trainable parameters, got shape {tuple(v.shape)}")
        if not bool(torch.isfinite(v).all()):
            raise WidenetError(f"{name} contains NaN or inf values")
        return v.detach().to(self.theta)

    def gradient(self) -> torch.Tensor:
        """grad L(theta), a vector in R^P (finite, or a WidenetError)."""
        return self._gradient(create_graph=False)[1].detach()

    def _gradient(self, create_graph: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(theta', grad L(theta')) at a copy theta' of theta that requires grad, by reverse
        mode (torch.autograd, which runs any autograd.Function, torch.func not all of them),
        with the gradient's own graph when ``create_graph``; the loss is checked to be what it
        was (not random) and the gradient finite."""
        theta = self.theta.clone().requires_grad_(True)
        with torch.enable_grad():
            value = self(theta)
            self.check_repeatable(value)
            (gradient,) = torch.autograd.grad(value, theta, create_graph=create_graph)
        return theta, finite_derivative(gradient, "gradient")

    def hessian_product(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """v -> H v, H = nabla^2 L(theta), without forming H.

        grad L(theta) is computed once with its graph kept (create_graph), and each product is
        one more backward pass through it: H v = d<grad L(theta), v>/d theta (reverse over
        reverse). Measured faster than forward over reverse (torch.func.jvp of grad), which
        rebuilds the gradient for every product: 5x for the benchmark's MLP, 2.4x at n = 4096.
        The graph, about the memory of one double backward pass, lives as long as the callable.
        """
        theta, gradient = self._gradient(create_graph=True)

        def product(v: torch.Tensor) -> torch.Tensor:
            if not gradient.requires_grad:  # the loss is linear in theta: H = 0
                return torch.zeros_like(v)
            with torch.enable_grad():
                (hv,) = torch.autograd.grad(gradient, theta, v, retain_graph=True,
                                            allow_unused=True, materialize_grads=True)
            return finite_derivative(hv, "Hessian-vector product")

        return product

    def check_repeatable(self, value: torch.Tensor) -> None:
        """Raise unless ``value``, L(theta) evaluated once more, is ``self.value`` to round-off
        (see ``rows_close``): a loss that differs between two passes at the same parameters
        is random, and has no derivatives to take."""
        if not bool(rows_close([(value.detach().reshape(1, 1), self.value.reshape(1, 1))])[0, 0]):
            raise WidenetError(f"two evaluations of the loss at the same parameters gave "
                               f"{self.value.item()!r} and {value.item()!r}: the model or "
                               "loss_fn is random (dropout in training mode?), so the loss has "
                               "no derivatives; put random layers in eval mode for the "
                               "diagnostic (model.eval(), which also makes batch norm use its "
                               "running statistics)")

    def _first_value(self) -> torch.Tensor:
        """L(theta), checking that the model and loss_fn run and give a finite scalar that
        autograd can differentiate in theta."""
        try:
            with torch.enable_grad():
                value = self._loss(self.theta.clone().requires_grad_(True))
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, TypeError) as error:
            raise WidenetError(f"loss_fn(model(x), y) failed: {error}") from error
        if not isinstance(value, torch.Tensor) or value.numel() != 1 \
                or not value.is_floating_point():
            raise WidenetError("loss_fn(outputs, y) must return a real scalar tensor (reduce "
                               "the per-point losses with .mean() or .sum()), got "
                               f"{_describe(value)}")
        if not bool(torch.isfinite(value).all()):
            raise WidenetError(f"the loss at the model's parameters is {value.item()} (has "
                               "training diverged?); it has no derivatives there")
        if not value.requires_grad:
            raise WidenetError("loss_fn(model(x), y) is not connected to the trainable "
                               "parameters in autograd's graph (the model or loss_fn detaches "
                               "the outputs, calls .item() or builds a new tensor from them), so "
                               "its derivatives cannot be taken; compute the loss with torch "
                               "operations on the outputs")
        return value.detach().reshape(())


def _check_targets(y: object, x: torch.Tensor) -> torch.Tensor:
    """y on x's device (floating targets in x's dtype), if it is a finite tensor."""
    if not isinstance(y, torch.Tensor):
        raise WidenetError(f"y must be a torch.Tensor of targets, got {type(y).__name__}")
    if y.is_floating_point():
        if not bool(torch.isfinite(y).all()):
            raise WidenetError("y contains NaN or inf values; clean or drop those points first")
        return y.detach().to(device=x.device, dtype=x.dtype)
    return y.detach().to(device=x.device)


class NonFiniteDerivativeError(WidenetError):
    """A derivative of the loss at theta is NaN or inf: the loss is not differentiable there,
    or the derivative overflows the dtype of the computation (a diverging run's last step)."""


def finite_derivative(derivative: torch.Tensor, what: str) -> torch.Tensor:
    """``derivative`` (of the loss at theta), if it is finite; otherwise a
    :class:`NonFiniteDerivativeError`."""
    if not bool(torch.isfinite(derivative).all()):
        raise NonFiniteDerivativeError(
            f"the loss's {what} at the model's parameters contains NaN or inf: the loss is not "
            "differentiable enough there (a norm or a sqrt at 0, an overflow); move the "
            "parameters or the data off that point, or rescale them")
    return derivative


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__
