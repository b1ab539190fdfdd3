"""NTK-vector products against the explicit kernel."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kernels.empirical_models import (  # one_thread: an autouse fixture
    MODELS,
    NO_FORWARD_MODE,
    DoubledAboveThree,
    WritesItsInput,
    brute_ntk,
    one_thread,  # noqa: F401
    points,
    relative_error,
)
from widenet.errors import WidenetError
from widenet.kernels.ntk_vp import ntk_vector_product


def _vector(model, x, seed):
    shape = model(x).shape
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(set(MODELS) - NO_FORWARD_MODE))
def test_ntk_vector_product_is_the_kernel_times_the_vector(name):
    factory, shape, _ = MODELS[name]
    model, x1, x2 = factory(), points(4, shape, seed=1), points(3, shape, seed=2)
    v = _vector(model, x2, seed=3)
    result = ntk_vector_product(model, x1, v, x2=x2)
    kernel = brute_ntk(model, x1, x2)  # (n1, n2, k, k)
    expected = torch.einsum("ijab,jb->ia", kernel, v.reshape(3, -1)).reshape(model(x1).shape)
    assert result.shape == expected.shape
    assert relative_error(result, expected) < 1e-10


@pytest.mark.parametrize("name", sorted(NO_FORWARD_MODE))
def test_a_model_without_forward_mode_derivatives_is_refused_clearly(name):
    factory, shape, _ = MODELS[name]
    model, x = factory(), points(3, shape)
    with pytest.raises(WidenetError, match="forward-mode derivatives of this model"):
        ntk_vector_product(model, x, _vector(model, x, seed=1))


def test_a_model_that_changes_with_the_number_of_points_after_the_probe_is_refused():
    model, x = DoubledAboveThree(), points(6)
    with pytest.raises(WidenetError, match="last of the 6 points of a batch is not what"):
        ntk_vector_product(model, x, _vector(model, x, seed=1))
    with pytest.raises(WidenetError, match="last of the 6 points of a batch is not what"):
        ntk_vector_product(model, x[:2], _vector(model, x, seed=1), x2=x)


def test_a_model_that_writes_to_its_input_leaves_the_points_intact():
    model, x1, x2 = WritesItsInput(), points(4, seed=1), points(3, seed=2)
    before = x1.clone(), x2.clone()
    v = _vector(model, x2.clone(), seed=3)
    result = ntk_vector_product(model, x1, v, x2=x2, chunk_size=2)
    assert torch.equal(x1, before[0])
    assert torch.equal(x2, before[1])
    kernel = brute_ntk(model, x1.clone(), x2.clone())
    assert relative_error(result, torch.einsum("ijab,jb->ia", kernel, v)) < 1e-10


def test_a_product_that_overflows_is_refused_not_returned():
    torch.manual_seed(0)
    model, x = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU()), points(3).float()
    with pytest.raises(WidenetError, match=r"K v has NaN or inf entries in torch\.float32"):
        ntk_vector_product(model, x * 1e20, torch.ones(3, 5))


@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 6), chunk=st.integers(1, 7))
def test_chunked_self_product_matches(n, chunk):
    factory, shape, _ = MODELS["mlp"]
    model, x = factory(), points(n, shape, seed=n)
    v = _vector(model, x, seed=chunk)
    expected = torch.einsum("ijab,jb->ia", brute_ntk(model, x), v)
    assert relative_error(ntk_vector_product(model, x, v, chunk_size=chunk), expected) < 1e-10


@pytest.mark.parametrize(("v", "message"), [
    (torch.zeros(4, 2, dtype=torch.float64), r"shape of the model's output on x2, \(4, 3\)"),
    (torch.zeros(4, 3, dtype=torch.long), "floating-point"),
    (torch.full((4, 3), float("nan"), dtype=torch.float64), "v contains NaN"),
    ([[0.0] * 3] * 4, "torch.Tensor"),
])
def test_bad_vectors_are_refused(v, message):
    factory, shape, _ = MODELS["mlp"]
    with pytest.raises(WidenetError, match=message):
        ntk_vector_product(factory(), points(4, shape), v)


def test_bad_chunk_size_is_refused():
    factory, shape, _ = MODELS["mlp"]
    x = points(4, shape)
    with pytest.raises(WidenetError, match="chunk_size"):
        ntk_vector_product(factory(), x, torch.zeros(4, 3, dtype=torch.float64), chunk_size=0)
