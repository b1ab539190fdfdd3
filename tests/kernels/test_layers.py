"""The registry of layer kinds the layer-wise empirical NTK factorizes, and adding one to it."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tests.kernels.empirical_models import (
    brute_blocks,
    one_thread,  # noqa: F401 (an autouse fixture)
    points,
    relative_error,
)
from widenet.errors import WidenetError
from widenet.kernels import _layers
from widenet.kernels.empirical import empirical_ntk
from widenet.kernels.jacobians import JacobianMethod
from widenet.nn import Dense


class ScaledLinear(nn.Linear):
    """z = 0.5 W x + 3 b: a subclass of nn.Linear whose forward differs from its parent's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, 0.5 * self.weight, 3.0 * self.bias)


def scaled_model() -> nn.Module:
    torch.manual_seed(20)
    return nn.Sequential(ScaledLinear(4, 5), nn.Tanh(), nn.Linear(5, 2)).double()


def test_the_builtin_kinds_are_registered_by_exact_type():
    assert set(_layers.LAYER_KINDS) >= {nn.Linear, nn.Conv1d, nn.Conv2d, Dense}
    assert "ScaledLinear" in _layers.unsupported_reason(ScaledLinear(2, 2))


def test_the_known_kinds_are_named_apart_from_same_named_ones():
    """torch's Conv1d and widenet's are both registered: the message names each once."""
    known = _layers.unsupported_reason(nn.Embedding(3, 2)).split("knows ")[1].split(", ")
    assert len(known) == len(set(known)) == len(_layers.LAYER_KINDS)
    assert {"nn.Linear", "nn.Conv1d", "nn.Conv2d"} <= set(known)


def test_a_subclass_is_not_taken_for_its_parent():
    """Looking up by exact type: ScaledLinear's own forward would make the Linear rule wrong."""
    with pytest.raises(WidenetError, match="it is a ScaledLinear"):
        empirical_ntk(scaled_model(), points(3), method="layerwise")


def test_a_registered_kind_takes_the_layerwise_path_and_is_exact(monkeypatch):
    monkeypatch.setitem(_layers.LAYER_KINDS, ScaledLinear, _layers.LayerKind(
        lambda module: (0.25, 9.0), _layers.dense_patches, _layers.dense_grads))
    model, x1, x2 = scaled_model(), points(4, seed=1), points(3, seed=2)
    expected = brute_blocks(model, x1, x2, outputs="trace")

    def refuse(*_):
        raise AssertionError("auto fell back to the Jacobian method")

    monkeypatch.setattr(JacobianMethod, "features", refuse)
    result = empirical_ntk(model, x1, x2, per_layer=True)
    for name, block in result.blocks.items():
        assert relative_error(block, expected[name]) < 1e-10, name


def test_a_wrong_registration_is_visible_against_brute_force(monkeypatch):
    """The registry is trusted: registering the wrong multipliers gives a different kernel
    (which is why a kind must state its forward exactly)."""
    monkeypatch.setitem(_layers.LAYER_KINDS, ScaledLinear, _layers.LayerKind(
        _layers.unit_scales, _layers.dense_patches, _layers.dense_grads))
    model, x = scaled_model(), points(3)
    expected = brute_blocks(model, x, outputs="trace")["0.weight"]
    result = empirical_ntk(model, x, per_layer=True, method="layerwise")
    assert relative_error(result.blocks["0.weight"], 4 * expected) < 1e-10


def test_a_convolution_given_bare_int_geometry_after_construction_is_exact():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(12, 2)).double()
    model[0].padding, model[0].stride, model[0].dilation = 1, 2, 1  # torch's forward takes ints
    x = torch.randn(4, 2, 4, 4, dtype=torch.float64)
    fast = empirical_ntk(model, x, method="layerwise").ntk
    torch.testing.assert_close(fast, empirical_ntk(model, x, method="jacobian").ntk,
                               rtol=1e-12, atol=1e-12)
