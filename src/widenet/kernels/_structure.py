"""Models whose batch structure is known from their modules alone: plain stacks of known layers.

A *plain stack* is a widenet ``MLP`` as its class builds it (Dense layers and a built-in
activation), or an ``nn.Sequential`` (exactly that type, or widenet's, nested ones too) of
modules of exactly these types: the layers of the layer-wise method (``_layers.LAYER_KINDS``:
nn.Linear, nn.Conv1d/2d, widenet's Dense, Conv1d/2d), which hold every parameter, each layer
once and no parameter in two of them; and parameter-free maps applied to each point on its
own (torch's elementwise activations, ``nn.Identity``, ``nn.Flatten`` from axis 1 on,
widenet's Flatten and its Activation with a built-in function). None of its modules or
activation functions has hooks, children it would not call, or a method of its type replaced
on the instance, and no container is met twice; no global module hooks and no torch-function or
dispatch mode are active, and the parameters, buffers and points are plain tensors, the points
with at least one axis besides the first (on (n,) points a layer reads the n points as the
features of one). Such a model maps each point of a batch on its own and uses each trainable
parameter in exactly one layer's forward, by the definition of its modules' types: what the
audit's passes on a batch and on single points establish for any model (``_audit``) holds by
construction, and one pass on one point tells the rest (shapes, in-place changes). Every other
model is audited in full.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules import module as torch_module

from widenet import activations
from widenet.kernels._layers import LAYER_KINDS, unsupported_reason
from widenet.models import MLP
from widenet.nn import Dense
from widenet.nn import Flatten as WidenetFlatten
from widenet.nn.containers import Sequential as WidenetSequential
from widenet.nn.elementwise import Activation as WidenetActivation

_CONTAINERS = (nn.Sequential, WidenetSequential)
_ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.Softplus, nn.ELU,
                nn.LeakyReLU, nn.Identity, WidenetFlatten)
# widenet activation functions applied elementwise by their definition (a Quadrature wraps any
# callable: only the built-in ones)
_ELEMENTWISE_FUNCTIONS = (activations.AbsLinear, activations.Erf, activations.Gelu,
                          activations.Sin)
_BUILT_IN_QUADRATURES = (activations.tanh, activations.softplus)


def is_plain_stack(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``model`` is a plain stack (module docstring) and ``x`` a plain tensor, with no
    global module hooks and no torch-function or dispatch mode active."""
    if (type(x) is not torch.Tensor or x.ndim < 2 or torch._C._len_torch_function_stack()
            or torch._C._len_torch_dispatch_stack() or _global_hooks()):
        return False
    if not (_plain_mlp(model) if type(model) is MLP
            else type(model) in _CONTAINERS and _plain(model, set())):
        return False
    tensors = [id(p) for _, p in model.named_parameters(remove_duplicate=False)]
    return len(tensors) == len(set(tensors))  # no parameter shared by two layers


def _plain(container: nn.Module, met: set[int]) -> bool:
    """Whether ``container`` and its children, recursively, are what a plain stack allows;
    ``met`` collects the ids of the containers and layers met so far (each may appear once, so
    that a container inside itself ends the walk)."""
    if id(container) in met or not _bare(container) or container._parameters:
        return False
    met.add(id(container))
    for child in container._modules.values():
        if child is None or not _bare(child):
            return False
        kind = type(child)
        if kind in _CONTAINERS:
            if not _plain(child, met):
                return False
        elif kind in LAYER_KINDS:
            if id(child) in met or child._modules or unsupported_reason(child) is not None:
                return False
            met.add(id(child))
        elif not (_row_wise_map(child) and not child._parameters and not child._modules):
            return False
    return True


def _plain_mlp(mlp: MLP) -> bool:
    """Whether a widenet MLP is as its class builds it: its Dense layers in ``layers``, each
    once, applied with a built-in elementwise activation in between, and nothing else."""
    layers = mlp._modules.get("layers")
    return (_bare(mlp) and not mlp._parameters and list(mlp._modules) == ["layers"]
            and type(layers) is nn.ModuleList and _bare(layers) and not layers._parameters
            and _elementwise_function(mlp.activation)
            and all(type(layer) is Dense and _bare(layer) and not layer._modules
                    and unsupported_reason(layer) is None for layer in layers)
            and len({id(layer) for layer in layers}) == len(layers))


def _bare(module: nn.Module) -> bool:
    """No hooks that run with a forward pass, no method of its type replaced on the instance
    (``forward``, ``_conv_forward``, ...), and plain parameter and buffer tensors."""
    return not (module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._backward_pre_hooks or _overridden(module)
                or any(type(t) not in (torch.Tensor, nn.Parameter)
                       for t in (*module._parameters.values(), *module._buffers.values())
                       if t is not None))


def _overridden(instance: object) -> bool:
    """Whether a callable attribute of ``instance`` replaces one of its type (a method)."""
    kind = type(instance)
    return any(callable(value) and hasattr(kind, name) for name, value in vars(instance).items())


def _row_wise_map(module: nn.Module) -> bool:
    """Whether a parameter-free module of a known type maps each point on its own."""
    kind = type(module)
    if kind is nn.Flatten:
        return isinstance(module.start_dim, int) and module.start_dim >= 1
    if kind is WidenetActivation:
        return _elementwise_function(module.activation)
    return kind in _ELEMENTWISE


def _elementwise_function(function: object) -> bool:
    """Whether a widenet activation function is one applied elementwise by its definition (and
    ``function``, the method that applies it, is not replaced on the instance)."""
    return ((type(function) in _ELEMENTWISE_FUNCTIONS
             or any(function is known for known in _BUILT_IN_QUADRATURES))
            and not _overridden(function))


def _global_hooks() -> bool:
    """Whether torch has global module hooks that run with a forward or backward pass."""
    return bool(torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks
                or torch_module._global_backward_hooks
                or torch_module._global_backward_pre_hooks)
