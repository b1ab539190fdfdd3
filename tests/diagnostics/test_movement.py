"""Weight and feature movement from initialization."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from widenet import MLP, WidenetError
from widenet.diagnostics.features import hidden_features
from widenet.diagnostics.movement import (
    WeightMovement,
    feature_movement,
    feature_reference,
    parameter_snapshot,
    relative_change,
    weight_movement,
    weight_reference,
)

F64 = torch.float64


def test_no_movement_at_initialization() -> None:
    net = MLP(3, [5, 4], 2, "relu", bias_std=0.1, seed=0)
    snapshot = parameter_snapshot(net)
    movement = weight_movement(net, snapshot)
    assert movement.relative == movement.absolute == 0.0
    assert set(movement.per_parameter_relative) == {name for name, _ in net.named_parameters()}
    assert all(v == 0.0 for v in movement.per_parameter_relative.values())
    x = torch.randn(7, 3)
    assert feature_movement(hidden_features(net, x), hidden_features(net, x)) == [0.0, 0.0]


def test_weight_movement_matches_a_hand_computation() -> None:
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 4.0]]))  # norm 5
        net[1].weight.copy_(torch.tensor([[0.0, 0.0]]))
        net[1].bias.copy_(torch.tensor([0.0]))
    initial = copy.deepcopy(net)
    with torch.no_grad():
        net[0].weight.add_(torch.tensor([[0.0, 1.0], [0.0, 0.0]]))  # moves by 1
        net[1].bias.add_(2.0)  # zero-initialized, moves by 2
    movement = weight_movement(net, initial)
    assert isinstance(movement, WeightMovement)
    assert movement.absolute == pytest.approx(math.sqrt(5.0))
    assert movement.relative == pytest.approx(math.sqrt(5.0) / 5.0)
    assert movement.per_parameter_absolute == {"0.weight": pytest.approx(1.0), "1.weight": 0.0,
                                               "1.bias": pytest.approx(2.0)}
    assert movement.per_parameter_relative == {"0.weight": pytest.approx(0.2), "1.weight": 0.0,
                                               "1.bias": math.inf}


def test_feature_movement_matches_a_hand_computation() -> None:
    h0 = [torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, 0.0], [0.0, 0.0]])]
    ht = [torch.tensor([[3.0, 5.0]]), torch.tensor([[1.0, 0.0], [0.0, 2.0]])]
    assert feature_movement(ht, h0) == [pytest.approx(0.2), pytest.approx(2.0)]
    assert relative_change(torch.ones(3), torch.zeros(3)) == math.inf
    assert relative_change(torch.zeros(3), torch.zeros(3)) == 0.0


def test_feature_movement_of_a_trained_mlp_grows_with_the_step() -> None:
    net = MLP(4, [16, 16], 1, "relu", seed=0, dtype=F64)
    x = torch.randn(10, 4, dtype=F64)
    before = hidden_features(net, x)
    gradients = torch.autograd.grad(net(x).square().sum(), list(net.parameters()))
    moved = []
    for lr in (1e-3, 1e-2):
        stepped = copy.deepcopy(net)
        with torch.no_grad():
            for p, g in zip(stepped.parameters(), gradients, strict=True):
                p.sub_(lr * g)
        moved.append(feature_movement(hidden_features(stepped, x), before))
    assert all(0 < small < large for small, large in zip(*moved, strict=True))


@pytest.mark.parametrize(("current", "initial", "message"), [
    ({"a": torch.ones(2)}, {"b": torch.ones(2)}, "differ in names"),
    ({"a": torch.ones(2)}, {"a": torch.ones(3)}, "shape"),
    ({"a": torch.tensor([float("nan")])}, {"a": torch.ones(1)}, "NaN"),
    ({}, {}, "no parameters"),
    ([torch.ones(2)], {"a": torch.ones(2)}, "nn.Module or a dict"),
])
def test_bad_weight_movement_arguments(current: object, initial: object, message: str) -> None:
    with pytest.raises(WidenetError, match=message):
        weight_movement(current, initial)


def test_bad_feature_movement_arguments() -> None:
    with pytest.raises(WidenetError, match="2 layers now but 1"):
        feature_movement([torch.ones(2, 2)] * 2, [torch.ones(2, 2)])
    with pytest.raises(WidenetError, match="lists of per-layer"):
        feature_movement(torch.ones(2, 2), torch.ones(2, 2))
    with pytest.raises(WidenetError, match="layer 0 has shape"):
        feature_movement([torch.ones(2, 3)], [torch.ones(2, 2)])


def test_a_reused_reference_gives_the_exact_float64_movement_at_every_call() -> None:
    torch.manual_seed(0)
    net = MLP(3, [40, 30], 2, "relu", bias_std=0.1, seed=0)  # float32 parameters
    snapshot = parameter_snapshot(net)
    reference = weight_reference(snapshot)
    probe = torch.randn(7, 3)
    features = feature_reference(hidden_features(net, probe))
    h0 = hidden_features(net, probe)
    for scale in (1e-3, 1e-1, 10.0):  # several calls through the same scratch buffer
        with torch.no_grad():
            for p in net.parameters():
                p.add_(scale * torch.randn_like(p))
        moved = weight_movement(net, reference)
        for name, p in net.named_parameters():  # the difference formed exactly in float64
            exact = (p.detach().double() - snapshot[name].double()).norm()
            assert moved.per_parameter_absolute[name] == pytest.approx(float(exact), rel=1e-14)
        assert moved == weight_movement(net, snapshot)
        h = hidden_features(net, probe)
        assert feature_movement(h, features) == feature_movement(h, h0)
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))
    with pytest.raises(WidenetError, match="NaN"):
        weight_movement(net, reference)


def test_a_reference_taken_from_a_module_does_not_move_with_it() -> None:
    layer = nn.Linear(3, 2)
    reference = weight_reference(layer)
    with torch.no_grad():
        layer.weight.add_(1.0)
    assert weight_movement(layer, reference).relative > 0


def test_movements_below_and_above_the_squares_range() -> None:
    """Norms summed squares: a parameter moving by 1e-200 had an overall movement of 0.0 (and
    relative_change of 1e-200 tensors was 0 / 0 = 0.0), one of 1e200 entries NaN."""
    moved = weight_movement({"a": torch.tensor([1e-200, 0.0], dtype=F64)},
                            {"a": torch.zeros(2, dtype=F64)})
    assert moved.absolute == pytest.approx(1e-200, rel=1e-15)
    assert moved.per_parameter_absolute["a"] == pytest.approx(1e-200, rel=1e-15)
    for scale in (1e-200, 1e200):
        initial = torch.tensor([3.0, 4.0], dtype=F64) * scale
        assert relative_change(2 * initial, initial) == pytest.approx(1.0, rel=1e-15)
        movement = weight_movement({"a": 2 * initial, "b": torch.ones(2)},
                                   {"a": initial, "b": torch.ones(2)})
        assert movement.absolute == pytest.approx(5 * scale, rel=1e-15)
        assert movement.per_parameter_relative["a"] == pytest.approx(1.0, rel=1e-15)
