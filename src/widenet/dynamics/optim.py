"""Optimizers that read a parametrization's per-parameter learning rates, the optimizer spec of
the training loop, one plain gradient-descent step, and depthwise gradient scaling.

Learning rates: parameter p gets lr * scale_p, where scale_p comes from ``model.lr_scales(family)``
(widenet MLPs: the parametrization's TensorScaling, e.g. muP's width ratios) and is 1 for models
without that method.

Gradient scaling multiplies each dense layer's gradients (weight and bias) by a factor xi_l after
the backward pass and before the optimizer step:
- :class:`LayerPowerScaling`: xi_l = l^power, l = 1..L+1 the layer's position;
- :class:`NormalizedUpdateScaling`: xi_l = 1 / (rms(h_{l-1}) rms(dLoss/dz_l) + eps), recomputed
  every step from the layer's input features h_{l-1} and the gradient of the loss with respect
  to its output z_l over the batch, rms(A) = sqrt(mean of A's squared entries). A layer's weight
  gradient is the product of those two signals (summed over the batch), so this rule removes
  their scale from its update: widenet's own choice for the "normalized update parametrization"
  of docs/theory.md section 5, whose exact rule is not available here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from widenet.dynamics.losses import Loss, get_loss
from widenet.errors import WidenetError
from widenet.nn import Dense
from widenet.validation import data_matrix, finite_real, positive_int, trainable_module

OPTIMIZERS = ("gd", "sgd", "adam")


@dataclass(frozen=True)
class Optimizer:
    """How the training loop turns gradients into updates.

    ``name`` (any case: "Adam" is "adam"): "gd" (full batch, no momentum), "sgd" (minibatches
    of ``batch_size`` points drawn without replacement in shuffled epochs, None = the full
    batch; heavy-ball ``momentum`` in [0, 1)) or "adam" (torch's default betas).
    ``gradient_scaling`` multiplies each dense layer's gradients by a factor before the step
    (None: off). Checked when built.
    """

    name: str = "gd"
    momentum: float = 0.0
    batch_size: int | None = None
    gradient_scaling: GradientScaling | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise WidenetError(f"Optimizer's name must be one of {', '.join(OPTIMIZERS)}, got a "
                               f"{type(self.name).__name__}; pass a torch optimizer object to "
                               "train(optimizer=...) itself")
        object.__setattr__(self, "name", self.name.lower())
        if self.name not in OPTIMIZERS:
            raise WidenetError(f"unknown optimizer {self.name!r}; choose one of "
                               f"{', '.join(OPTIMIZERS)}")
        if self.name == "adam" and self.momentum:
            raise WidenetError("momentum applies to sgd; Adam has its own betas")
        if self.name == "gd" and self.momentum:
            raise WidenetError("optimizer 'gd' is plain gradient descent; use optimizer "
                               "Optimizer('sgd', momentum=...) (full batch when batch_size is "
                               "None) for heavy-ball momentum")
        momentum = finite_real(self.momentum, "momentum", minimum=0.0)
        if momentum >= 1.0:
            raise WidenetError(f"momentum must be in [0, 1), got {momentum}")
        object.__setattr__(self, "momentum", momentum)
        if self.batch_size is not None:
            object.__setattr__(self, "batch_size", positive_int(self.batch_size, "batch_size"))
        if self.gradient_scaling is not None \
                and not isinstance(self.gradient_scaling, GradientScaling):
            raise WidenetError("gradient_scaling must be a GradientScaling (e.g. "
                               "LayerPowerScaling(1.0)) or None, got "
                               f"{type(self.gradient_scaling).__name__}")

    def batch(self, n: int) -> int:
        """The number of points per step for ``n`` training points (checked against n)."""
        if self.batch_size is None:
            return n
        if self.batch_size > n:
            raise WidenetError(f"batch_size {self.batch_size} is larger than the {n} training "
                               "points")
        if self.name == "gd" and self.batch_size != n:
            raise WidenetError("optimizer 'gd' is full-batch; use Optimizer('sgd', "
                               "batch_size=...) for minibatches")
        return self.batch_size

    def build(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        """The torch optimizer for ``model`` at base learning rate ``lr`` (see
        :func:`build_optimizer`)."""
        return build_optimizer(model, self.name, lr, momentum=self.momentum)


def build_optimizer(model: nn.Module, name: str, lr: float, *, momentum: float = 0.0
                    ) -> torch.optim.Optimizer:
    """torch SGD (for "gd" and "sgd", with heavy-ball ``momentum``) or Adam, one parameter group
    per trainable parameter with learning rate lr * model.lr_scales(family)[name]."""
    spec = Optimizer(name, momentum=momentum)
    family = "adam" if spec.name == "adam" else "sgd"
    scales = lr_scales(model, family)
    groups = [{"params": [p], "lr": lr * scales.get(n, 1.0), "name": n}
              for n, p in trainable_module(model, "there is nothing to train").named_parameters()
              if p.requires_grad]
    if family == "adam":
        return torch.optim.Adam(groups, lr=lr)
    return torch.optim.SGD(groups, lr=lr, momentum=spec.momentum)


@dataclass(frozen=True)
class Updates:
    """The torch optimizer ``train`` steps with, resolved from its ``optimizer=`` argument by
    :func:`resolve_optimizer`: the optimizer's ``name`` as monitors see it ("gd", "sgd", "adam",
    or a torch class's name in lower case), its heavy-ball ``momentum``, the :class:`Optimizer`
    spec it was built from (batch size, gradient scaling; None for a torch optimizer object),
    the base learning rate (None: the first parameter group's, read at each step) and
    ``description``, what defines the updates for a checkpoint's fingerprint."""

    optimizer: torch.optim.Optimizer
    name: str
    momentum: float
    spec: Optimizer | None
    base_lr: float | None
    description: dict[str, object]

    @property
    def gradient_scaling(self) -> GradientScaling | None:
        return None if self.spec is None else self.spec.gradient_scaling

    def batch(self, n: int) -> int:
        """Points per step for ``n`` training tensors (a spec's batch size, checked)."""
        return n if self.spec is None else self.spec.batch(n)

    def lr(self) -> float:
        """The base learning rate: ``lr`` for a name or spec, else the first group's rate."""
        return self.base_lr if self.base_lr is not None \
            else float(self.optimizer.param_groups[0]["lr"])


OptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]


def resolve_optimizer(value: str | Optimizer | torch.optim.Optimizer | OptimizerFactory,
                      model: nn.Module, lr: float | None, *, loader: bool) -> Updates:
    """``train``'s ``optimizer=`` as :class:`Updates`.

    A name or :class:`Optimizer` spec is built on ``model`` at base learning rate ``lr`` (the
    parametrization's per-parameter factors applied, :func:`build_optimizer`); with a ``loader``
    the loader sets the batches, so a spec's batch size is refused and "gd" steps on the
    loader's batches as "sgd" without momentum (the same update). A ``torch.optim.Optimizer``
    must hold only parameters of ``model``, at finite learning rates >= 0; a factory is called
    with the model's trainable parameters and must return one. Their learning rates are their
    own: ``lr`` must be None; where they are not the model's parametrization's (a muP net's
    Adam or SGD with one rate for every parameter) a warning says so (:func:`_check_rates`).
    """
    if isinstance(value, str | Optimizer):
        spec = value if isinstance(value, Optimizer) else Optimizer(value)
        if lr is None:
            raise WidenetError(f"lr is required with optimizer {spec.name!r}; give lr=... (or "
                               "pass a torch optimizer object, which carries its own)")
        if loader and spec.batch_size is not None:
            raise WidenetError("the DataLoader sets the batches; leave the Optimizer's "
                               "batch_size at None")
        if loader and spec.name == "gd":
            spec = dataclasses.replace(spec, name="sgd")
        return Updates(spec.build(model, lr), spec.name, spec.momentum, spec, lr,
                       _spec_description(spec))
    if not isinstance(value, torch.optim.Optimizer):
        if not callable(value):
            raise WidenetError("optimizer must be a name (" + ", ".join(OPTIMIZERS) + "), an "
                               "Optimizer spec, a torch.optim.Optimizer or a factory "
                               f"callable(params) -> Optimizer, got {type(value).__name__}")
        trainable = [p for p in model.parameters() if p.requires_grad]
        built = value(trainable)
        if not isinstance(built, torch.optim.Optimizer):
            raise WidenetError(f"the optimizer factory returned a {type(built).__name__}, not "
                               "a torch.optim.Optimizer; return e.g. torch.optim.SGD(params, "
                               "lr=0.1)")
        value = built
    kind = type(value).__name__
    if lr is not None:
        raise WidenetError(f"the {kind} optimizer carries its own learning rates; leave lr out "
                           "(or pass the name with lr=...)")
    owned = {id(p) for p in model.parameters()}
    foreign = sum(id(p) not in owned for group in value.param_groups for p in group["params"])
    if foreign:
        raise WidenetError(f"the {kind} optimizer holds {foreign} parameter(s) that are not the "
                           "model's; build it on this model's parameters, e.g. "
                           f"torch.optim.{kind}(model.parameters(), ...)")
    for index, group in enumerate(value.param_groups):  # a NaN rate would write NaN into
        if "lr" in group:                                 # the model at the first step
            finite_real(group["lr"], f"the {kind} optimizer's learning rate (group {index})",
                        minimum=0.0)
    _check_rates(model, value)
    name = {torch.optim.SGD: "sgd", torch.optim.Adam: "adam"}.get(type(value), kind.lower())
    momentum = float(value.param_groups[0].get("momentum", 0.0)) if name == "sgd" else 0.0
    return Updates(value, name, momentum, None, None, _object_description(value))


_ADAM_FAMILY = (torch.optim.Adam, torch.optim.AdamW, torch.optim.Adamax, torch.optim.NAdam,
                torch.optim.RAdam)


def _check_rates(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Warn when a torch SGD or Adam-family optimizer's learning rates are not proportional to
    the model's ``lr_scales`` (its parametrization's per-parameter factors: muP's width ratios,
    mean field's m): built on ``model.parameters()`` with one rate, it trains a muP net as SP
    with muP's initialization. Other optimizers, whose family is unknown, are not checked."""
    family = ("adam" if isinstance(optimizer, _ADAM_FAMILY)
              else "sgd" if isinstance(optimizer, torch.optim.SGD) else None)
    scales = lr_scales(model, family) if family else {}
    if not scales or set(scales.values()) == {1.0}:
        return
    names = {id(p): name for name, p in model.named_parameters()}
    ratios = [group["lr"] / scales.get(names[id(p)], 1.0) for group in optimizer.param_groups
              for p in group["params"]]
    if max(ratios) > min(ratios) * (1.0 + 1e-9):
        warnings.warn(f"the {type(optimizer).__name__} optimizer's learning rates are not this "
                      f"model's parametrization's (per-parameter factors "
                      f"model.lr_scales({family!r}), from {min(scales.values()):.3g} to "
                      f"{max(scales.values()):.3g}), so the net does not train as that "
                      f"parametrization; pass optimizer={family!r} with lr=..., or build it "
                      f"with widenet.dynamics.optim.build_optimizer(model, {family!r}, lr)",
                      UserWarning, stacklevel=4)


def _spec_description(spec: Optimizer) -> dict[str, object]:
    scaling = spec.gradient_scaling
    return {"optimizer": spec.name, "momentum": repr(spec.momentum),
            "batch_size": repr(spec.batch_size),
            "gradient_scaling": "none" if scaling is None else _settings_of(scaling)}


def _object_description(optimizer: torch.optim.Optimizer) -> dict[str, object]:
    """The optimizer's class and each group's settings ("group i: key=value" for every plain
    value, and the number of parameters)."""
    kind = type(optimizer)
    settings = []
    for index, group in enumerate(optimizer.param_groups):
        settings.append(f"group {index}: parameters={len(group['params'])}")
        settings.extend(f"group {index}: {key}={value!r}" for key, value in sorted(group.items())
                        if isinstance(value, bool | int | float | str | tuple | None))
    return {"optimizer": f"{kind.__module__}.{kind.__qualname__}", "optimizer groups": settings}


def _settings_of(scaling: object) -> str:
    """A gradient scaling rule as Type(public number settings)."""
    numbers = {name: value for name, value in vars(scaling).items()
               if not name.startswith("_") and isinstance(value, int | float | str)}
    return f"{type(scaling).__qualname__}({', '.join(f'{k}={v!r}' for k, v in numbers.items())})"


def gd_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, lr: float,
            loss: str | Loss = "mse", loss_scale: float = 1.0) -> float:
    """One full-batch gradient-descent step on ``model``, in place; returns L(theta).

    theta_p <- theta_p - lr * scale_p * d(loss_scale * L)/d theta_p with
    L(theta) = loss(model(x; theta), y) and scale_p the model's ``lr_scales("sgd")`` factor:
    exactly one step of ``train(..., optimizer="gd")``. ``x`` and ``y`` are used as given (in
    the model's dtype and on its device); the parameters' ``.grad`` are left None.
    """
    loss_fn = get_loss(loss)
    x = data_matrix(x, "x")
    loss_scale = finite_real(loss_scale, "loss_scale", minimum=0.0, strict=True)
    optimizer = build_optimizer(model, "gd", finite_real(lr, "lr", minimum=0.0, strict=True))
    optimizer.zero_grad(set_to_none=True)
    with torch.enable_grad():
        value = loss_fn(model(x), y)
        (loss_scale * value).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(value.detach())


def lr_scales(model: nn.Module, family: str) -> dict[str, float]:
    """``model.lr_scales(family)`` where the model defines it (widenet MLPs and wrappers), else
    {} (every factor 1)."""
    scales_of = getattr(model, "lr_scales", None)
    return scales_of(family) if callable(scales_of) else {}


def dense_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's dense layers (widenet Dense and torch Linear), in registration order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, Dense | nn.Linear)]


class GradientScaling:
    """Multiplies each dense layer's parameter gradients by a factor xi_l (see module doc)."""

    def attach(self, model: nn.Module) -> None:
        """Prepare for ``model`` (register hooks if the rule needs forward/backward signals)."""
        self.layers = dense_layers(model)
        if not self.layers:
            raise WidenetError("gradient scaling needs a model with Dense or nn.Linear layers")

    def factors(self) -> list[float]:
        """xi_l for each dense layer, for the batch just back-propagated."""
        raise NotImplementedError

    def apply(self) -> dict[str, float]:
        """Scale the gradients in place; return {"xi/<layer name>": xi_l} for the history."""
        applied = {}
        for (name, layer), factor in zip(self.layers, self.factors(), strict=True):
            for p in layer.parameters(recurse=False):
                if p.grad is not None:
                    p.grad.mul_(factor)
            applied[f"xi/{name}"] = factor
        return applied

    def detach(self) -> None:
        """Remove any hooks."""

    def recording(self) -> contextlib.AbstractContextManager:
        """The training loop's forward/backward pass runs inside this; rules that observe the
        pass (hooks) record only then, not during monitors' extra passes."""
        return contextlib.nullcontext()


class LayerPowerScaling(GradientScaling):
    """xi_l = l^power for the l-th dense layer (l = 1..L+1)."""

    def __init__(self, power: float):
        self.power = finite_real(power, "power")

    def factors(self) -> list[float]:
        return [float(index) ** self.power for index in range(1, len(self.layers) + 1)]


class NormalizedUpdateScaling(GradientScaling):
    """xi_l = 1 / (rms(h_{l-1}) rms(dLoss/dz_l) + eps), measured on each step's batch."""

    def __init__(self, eps: float = 1e-12):
        self.eps = finite_real(eps, "eps", minimum=0.0, strict=True)
        self._handles: list = []
        self._recording = False

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        self._recording = True
        try:
            yield
        finally:
            self._recording = False

    def attach(self, model: nn.Module) -> None:
        super().attach(model)
        self.detach()
        self._forward_rms: dict[str, float] = {}
        self._backward_rms: dict[str, float] = {}
        for name, layer in self.layers:
            self._handles.append(layer.register_forward_hook(self._forward_hook(name)))

    def _forward_hook(self, name: str) -> Callable:
        """Record rms(h_{l-1}) and hook the output z_l to record rms(dLoss/dz_l)."""
        def record_gradient(gradient: torch.Tensor) -> None:
            self._backward_rms[name] = _rms(gradient)

        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if self._recording and output.requires_grad:
                self._forward_rms[name] = _rms(inputs[0])
                output.register_hook(record_gradient)
        return hook

    def factors(self) -> list[float]:
        return [1.0 / (self._forward_rms[name] * self._backward_rms[name] + self.eps)
                for name, _ in self.layers]

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def _rms(tensor: torch.Tensor) -> float:
    return float(tensor.detach().square().mean().sqrt())
