"""Plain stacks: audited from one pass, as the full audit would; everything else in full."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import widenet.kernels._audit as audit_module
import widenet.nn as wnn
from tests.kernels.empirical_models import (
    inplace_relu_stack,
    linear_stack,
    points,
    widenet_mlp,
)
from widenet import activations
from widenet.errors import WidenetError
from widenet.kernels._audit import audit, audit_plain_stack, prepare, probe_points
from widenet.kernels._functional import FunctionalModel
from widenet.kernels._structure import is_plain_stack
from widenet.kernels.empirical import empirical_ntk
from widenet.models import MLP


def _conv_stack() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.GELU(), nn.Conv2d(3, 2, 2, stride=2),
                         nn.Flatten(), nn.Linear(18, 2, bias=False)).double()


def _nested_stack() -> nn.Module:
    torch.manual_seed(4)
    stack = nn.Sequential(nn.Sequential(nn.Linear(4, 5), nn.SiLU()), nn.Identity(),
                          nn.Sequential(nn.Linear(5, 5), nn.Softplus(), nn.Linear(5, 3)))
    stack[2][0].bias.requires_grad_(False)  # a frozen bias
    return stack.double()


def _widenet_stack() -> nn.Module:
    return wnn.Sequential(wnn.Conv1d(2, 4, 3), wnn.Activation("relu"), wnn.Conv1d(4, 3, 2),
                          wnn.Activation("tanh"), wnn.Flatten(), wnn.Dense(18, 2),
                          seed=5).double()


PLAIN = {  # name -> (model factory, per-point input shape)
    "linear": (linear_stack, (4,)),
    "inplace-relu": (inplace_relu_stack, (4,)),
    "conv": (_conv_stack, (2, 6, 6)),
    "nested, frozen bias": (_nested_stack, (4,)),
    "widenet layers": (_widenet_stack, (2, 6)),
    "widenet MLP": (widenet_mlp, (4,)),
    "widenet MLP without biases": (lambda: widenet_mlp(bias=False), (4,)),
}


def _facts(found: audit_module.Audit) -> tuple:
    """Everything an audit says but its passes on single points."""
    layers = [(layer.path, layer.module, layer.weight, layer.bias, layer.weight_scale,
               layer.bias_scale) for layer in found.layers]
    return (found.outputs, found.output_shape, layers, found.layerwise_problem,
            found.activations, found.layer_sizes, found.untracked, found.unbatched,
            found.in_place)


@pytest.mark.parametrize("name", PLAIN)
def test_a_plain_stack_is_audited_from_one_pass_as_the_full_audit_would(name, monkeypatch):
    factory, shape = PLAIN[name]
    model, x = factory(), points(6, shape)
    assert is_plain_stack(model, x)
    fmodel = FunctionalModel(model, x)
    found = audit_plain_stack(fmodel, x[-1:])
    assert _facts(found) == _facts(audit(fmodel, probe_points(x)))
    assert len(found.singles) == 1
    assert torch.equal(found.singles[0].point, x[-1])

    passes = []
    original = audit_module._probe_pass
    monkeypatch.setattr(audit_module, "_probe_pass",
                        lambda *args, **kwargs: passes.append(1) or original(*args, **kwargs))
    prepare(model, x)
    assert len(passes) == 1


@pytest.mark.parametrize("name", PLAIN)
@pytest.mark.parametrize("outputs", ["trace", "full"])
def test_plain_stack_kernels_equal_the_jacobian_methods(name, outputs):
    factory, shape = PLAIN[name]
    model, x1, x2 = factory(), points(7, shape, seed=1), points(3, shape, seed=2)
    for pair in ((x1, None), (x1, x2)):
        fast = empirical_ntk(model, *pair, outputs=outputs, chunk_size=3)
        reference = empirical_ntk(model, *pair, outputs=outputs, method="jacobian")
        torch.testing.assert_close(fast.ntk, reference.ntk, rtol=1e-12, atol=1e-12)
        if outputs == "full":
            torch.testing.assert_close(fast.full, reference.full, rtol=1e-12, atol=1e-12)


class _Forwarded(nn.Sequential):
    def forward(self, x):
        return super().forward(x) * 2


def _with(model: nn.Module, change) -> nn.Module:
    change(model)
    return model


def _twice(layer: nn.Module) -> nn.Module:
    return nn.Sequential(layer, nn.Tanh(), layer)


def _parametrized() -> nn.Module:
    stack = linear_stack()
    nn.utils.parametrizations.weight_norm(stack[0])
    return stack


def _half_linear(model: nn.Module) -> None:
    model[0].forward = lambda x: nn.Linear.forward(model[0], x) / 2


def _register(module: nn.Module) -> None:
    module.register_parameter("extra", nn.Parameter(torch.ones(1, dtype=torch.float64)))


NOT_PLAIN = {
    "a Sequential subclass with its own forward": lambda: _Forwarded(*linear_stack()),
    "forward set on an instance": lambda: _with(linear_stack(), _half_linear),
    "_conv_forward set on an instance": lambda: _with(
        _conv_stack(), lambda m: setattr(m[0], "_conv_forward", lambda x, w, b: x)),
    "a forward hook": lambda: _with(
        linear_stack(), lambda m: m[1].register_forward_hook(lambda mod, a, out: out * 2)),
    "a forward pre-hook on the stack": lambda: _with(
        linear_stack(), lambda m: m.register_forward_pre_hook(lambda mod, a: (a[0] * 2,))),
    "a layer used twice": lambda: _twice(nn.Linear(4, 4).double()),
    "tied weights": lambda: _with(
        nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4)).double(),
        lambda m: setattr(m[2], "weight", m[0].weight)),
    "a parameter of the stack itself": lambda: _with(
        linear_stack(), _register),
    "a parameter on an activation": lambda: _with(
        linear_stack(), lambda m: _register(m[1])),
    "a child of a layer": lambda: _with(
        linear_stack(), lambda m: m[0].add_module("inner", nn.Linear(2, 2))),
    "Flatten from axis 0": lambda: nn.Sequential(nn.Linear(4, 3), nn.Flatten(0)).double(),
    "dropout": lambda: nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.0)).double(),
    "batch normalization": lambda: nn.Sequential(nn.Linear(4, 3),
                                                 nn.BatchNorm1d(3)).double().eval(),
    "PReLU": lambda: nn.Sequential(nn.Linear(4, 3), nn.PReLU(3)).double(),
    "a parametrized weight": _parametrized,
    "a widenet activation of a user function": lambda: wnn.Sequential(
        wnn.Dense(4, 3, weight_std=1.0), wnn.Activation(lambda s: s * torch.sigmoid(s)),
        seed=0).double(),
    "a grouped convolution": lambda: nn.Sequential(nn.Conv1d(2, 2, 1, groups=2)).double(),
    "an MLP of a user function": lambda: MLP(4, [3], 2, lambda s: s * torch.sigmoid(s),
                                             weight_std=1.0, seed=0),
    "an MLP subclass": lambda: type("Scaled", (MLP,), {})(4, [3], 2, seed=0),
    "an MLP with a hooked layer": lambda: _with(
        MLP(4, [3], 2, seed=0), lambda m: m.layers[0].register_forward_hook(lambda *a: None)),
    "an MLP with a module added": lambda: _with(
        MLP(4, [3], 2, seed=0), lambda m: m.add_module("extra", nn.Linear(4, 4))),
    "an MLP with a layer replaced": lambda: _with(
        MLP(4, [3], 2, seed=0), lambda m: m.layers.__setitem__(0, nn.Linear(4, 3))),
}


@pytest.mark.parametrize("name", NOT_PLAIN)
def test_other_models_are_not_plain_stacks(name):
    x = points(4, (2, 3) if "convolution" in name else (4,))
    assert not is_plain_stack(NOT_PLAIN[name](), x)


class _Passthrough(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


class _Subclass(torch.Tensor):
    pass


def test_global_hooks_modes_and_tensor_subclasses_leave_the_plain_path():
    model, x = linear_stack(), points(4)
    assert is_plain_stack(model, x)
    handle = nn.modules.module.register_module_forward_hook(lambda mod, a, out: None)
    try:
        assert not is_plain_stack(model, x)
    finally:
        handle.remove()
    with _Passthrough():
        assert not is_plain_stack(model, x)
    assert not is_plain_stack(model, x.as_subclass(_Subclass))
    assert is_plain_stack(model, x)


def test_built_in_widenet_activations_are_plain_and_quadratures_of_user_functions_are_not():
    def stack(function):
        return wnn.Sequential(wnn.Dense(4, 3, weight_std=1.0), wnn.Activation(function),
                              seed=0).double()
    x = points(3)
    for function in ("relu", "abs", "erf", "tanh", "gelu", "softplus", "sin", "leaky_relu:0.2",
                     activations.ab(0.3, 0.7)):
        assert is_plain_stack(stack(function), x), function
    assert not is_plain_stack(stack(activations.Quadrature(torch.tanh, "my tanh")), x)


@pytest.mark.parametrize("bad", ["unbatched convolution", "an infinite output at the last point"])
def test_a_pass_that_breaks_the_promise_hands_over_to_the_full_audit(bad, monkeypatch):
    if bad == "unbatched convolution":  # (n, 6, 6) points: a Conv2d sees one point as (C, H, W)
        model, x = nn.Sequential(nn.Conv2d(1, 1, 3)).double(), points(3, (6, 6))
    else:
        model, x = nn.Sequential(nn.Linear(4, 2)).double(), points(3)
        with torch.no_grad():
            model[0].weight.fill_(1.0)
        x[-1] = 1e308  # finite, but 4e308 is not
    assert is_plain_stack(model, x)
    assert audit_plain_stack(FunctionalModel(model, x), x[-1:]) is None
    full = []
    original = audit_module.audit
    monkeypatch.setattr(audit_module, "audit", lambda *args: full.append(1) or original(*args))
    refusal = ("cannot be applied to 3 point" if bad == "unbatched convolution"
               else "output is NaN or inf")
    with pytest.raises(WidenetError, match=refusal):  # the full audit's verdict
        prepare(model, x)
    assert full == [1]


def _frozen_conv_stack() -> nn.Module:  # a Conv1d(1, ...) sees one (1, 4) point as (C, L)
    stack = nn.Sequential(nn.Linear(4, 4), nn.Conv1d(1, 1, 1), nn.Linear(4, 2)).double()
    stack[1].requires_grad_(False)
    return stack


def _cycle() -> nn.Module:
    stack = nn.Sequential(nn.Linear(4, 2), nn.Sequential(nn.ReLU())).double()
    stack[1].add_module("again", stack[1])
    return stack


def _centring(model: nn.Module) -> nn.Module:  # an activation object changed on the instance
    activation = activations.ab(1.0, 0.0)
    activation.function = lambda s: s - s.mean(0, keepdim=True)
    if isinstance(model, MLP):
        model.activation = activation
    else:
        model[1].activation = activation
    return model


def _cached_multiplier() -> nn.Module:
    stack = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), wnn.Dense(3, 2)).double()
    stack[2].weight_multiplier = stack[0].weight.sum() * 0 + 0.5  # a tensor from a parameter
    return stack


REFUSED = {  # name -> (model factory, points, what the full audit's refusal says)
    "points without a feature axis": (lambda: nn.Sequential(nn.Linear(1, 1)).double(),
                                      points(5, ()), "cannot be applied to 3 point"),
    "a frozen convolution on an unbatched input": (_frozen_conv_stack, points(5),
                                                   "cannot be applied to 3 point"),
    "a Sequential inside itself": (_cycle, points(4), "maximum recursion depth"),
    "an MLP whose activation couples the points": (
        lambda: _centring(MLP(4, [3], 2, seed=0, dtype=torch.float64)), points(5),
        "depends on the other points"),
    "a widenet Activation that couples the points": (
        lambda: _centring(wnn.Sequential(wnn.Dense(4, 3), wnn.Activation("relu"),
                                         wnn.Dense(3, 2), seed=0).double()), points(5),
        "depends on the other points"),
    "a multiplier computed from a parameter": (_cached_multiplier, points(5),
                                               "computed from it before the call"),
}


@pytest.mark.parametrize("name", REFUSED)
@pytest.mark.parametrize("method", ["auto", "jacobian"])
def test_models_the_full_audit_refuses_are_refused_as_by_it(name, method):
    factory, x, refusal = REFUSED[name]
    with pytest.raises(WidenetError, match=refusal):
        empirical_ntk(factory(), x, method=method)


def test_a_parameter_shadowed_by_an_instance_attribute_is_not_taken_layer_wise():
    # the forward reads the attribute, so the registered weight is unused: its block is zero
    model, x = linear_stack(), points(5)
    model[2].__dict__["weight"] = model[2].weight.detach().clone()
    assert not is_plain_stack(model, x)
    assert prepare(model, x)[1].layerwise_problem is not None
    fast = empirical_ntk(model, x, per_layer=True)
    reference = empirical_ntk(model, x, per_layer=True, method="jacobian")
    assert not reference.blocks["2.weight"].any()
    for name, block in reference.blocks.items():
        torch.testing.assert_close(fast.blocks[name], block, rtol=1e-12, atol=0.0)
