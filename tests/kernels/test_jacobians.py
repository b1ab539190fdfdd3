"""widenet's per-point Jacobian against a naive autograd one."""

from __future__ import annotations

import pytest
import torch

from tests.kernels.empirical_models import (  # one_thread: an autouse fixture
    MODELS,
    brute_jacobian,
    one_thread,  # noqa: F401
    points,
    relative_error,
)
from widenet.errors import WidenetError
from widenet.kernels.jacobians import jacobian


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("chunk_size", [None, 2])
def test_jacobian_matches_autograd_point_by_point(name, chunk_size):
    factory, shape, _ = MODELS[name]
    model, x = factory(), points(5, shape)
    result = jacobian(model, x, chunk_size=chunk_size)
    expected = brute_jacobian(model, x)
    assert list(result) == list(expected)
    parameters = dict(model.named_parameters())
    for key, value in result.items():
        assert value.shape == (5, expected[key].shape[1], *parameters[key].shape)
        assert relative_error(value.reshape(expected[key].shape), expected[key]) < 1e-12


def test_jacobian_follows_the_input_dtype_and_leaves_no_grad():
    factory, shape, _ = MODELS["mlp"]
    model = factory().float()
    result = jacobian(model, points(3, shape))
    assert all(value.dtype == torch.float64 for value in result.values())
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"chunk_size": 0}, "chunk_size"),
    ({"memory_budget": -1}, "memory_budget"),
    ({"memory_budget": 10}, "raise memory_budget"),
])
def test_jacobian_rejects_bad_options(kwargs, message):
    factory, shape, _ = MODELS["mlp"]
    with pytest.raises(WidenetError, match=message):
        jacobian(factory(), points(3, shape), **kwargs)


def test_jacobian_rejects_bad_points():
    factory, _, _ = MODELS["mlp"]
    with pytest.raises(WidenetError, match="x contains NaN"):
        jacobian(factory(), torch.full((2, 4), float("nan"), dtype=torch.float64))
