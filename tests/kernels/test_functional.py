"""The checks of ``_functional``: data points, row comparisons made for several pairs at once."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from widenet.errors import WidenetError
from widenet.kernels._functional import check_points, rows_close
from widenet.kernels.empirical import empirical_ntk


def _one_pair(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The definition, row by row: max |a_i - b_i| <= sqrt(eps) (1 + max |a_i|, |b_i|)."""
    a, b = a.flatten(1), b.flatten(1)
    if a.shape[1] == 0:
        return torch.ones(a.shape[0], dtype=torch.bool)
    scale = torch.maximum(a.abs().amax(1), b.abs().amax(1))
    return (a - b).abs().amax(1) <= math.sqrt(torch.finfo(a.dtype).eps) * (1.0 + scale)


def test_pairs_compared_at_once_are_compared_as_one_by_one():
    generator = torch.Generator().manual_seed(0)
    tol = math.sqrt(torch.finfo(torch.float32).eps)
    pairs = []
    for shape, gap in [((3, 5), 0.5), ((3, 2, 4), 2.0), ((3, 1), 0.9), ((3, 7), 1.1)]:
        a = 100 * torch.randn(shape, generator=generator)
        b = a.clone()
        b[1] += gap * tol * (1 + a[1].abs().max())  # row 1 on either side of the tolerance
        pairs.append((a, b))
    pairs[0][1][2, 0] = math.nan  # a NaN difference is never close
    pairs.insert(2, (torch.zeros(3, 0), torch.zeros(3, 0)))  # no columns: close
    a = torch.randn(3, 4, dtype=torch.float64, generator=generator)
    pairs += [(a, a + 1e-6), (a, a + 1e-9)]  # another dtype: its own tolerance
    expected = torch.stack([_one_pair(a, b) for a, b in pairs])
    assert torch.equal(rows_close(pairs), expected)
    assert expected[[0, 3], 1].all()
    assert not expected[[0, 1, 4], [2, 1, 1]].any()
    assert expected[2].all()
    assert expected[6].all()
    assert not expected[5].any()
    assert torch.equal(rows_close(pairs[:3]), expected[:3])
    near = [(a, a + tol / 2) for a, _ in pairs[1:4]]  # every entry within tol: all rows close
    assert rows_close(near).all()


def test_nan_equal_makes_nan_equal_to_nan_and_an_infinity_to_itself():
    a = torch.tensor([[math.nan, 1.0], [math.inf, 1.0], [math.nan, 1.0], [math.inf, 1.0]])
    b = torch.tensor([[math.nan, 1.0], [math.inf, 1.0], [1.0, 1.0], [-math.inf, 1.0]])
    assert rows_close([(a, b)], nan_equal=True).tolist() == [[True, True, False, False]]
    assert rows_close([(a, b)])[0, :3].tolist() == [False, False, False]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_points_with_one_nan_or_infinity_anywhere_are_refused(dtype, value):
    x = torch.randn(50, 3, 4).to(dtype)
    check_points(x, "x")
    for index in [(0, 0, 0), (31, 2, 1), (49, 2, 3)]:
        bad = x.clone()
        bad[index] = value
        with pytest.raises(WidenetError, match="x contains NaN or inf"):
            check_points(bad, "x")


def test_complex_rows_are_compared_by_the_modulus_of_their_difference():
    generator = torch.Generator().manual_seed(1)
    tol = math.sqrt(torch.finfo(torch.float64).eps)
    a = torch.randn(3, 4, dtype=torch.complex128, generator=generator)
    b = a.clone()
    b[1, 2] += 1e-3j  # far off
    b[2, 0] += tol / 2  # within the tolerance
    pairs = [(a, b), (a, a + tol / 4)]
    assert rows_close(pairs).tolist() == [_one_pair(a, b).tolist(), [True] * 3]
    assert rows_close(pairs).tolist() == [[True, False, True], [True] * 3]


def test_a_model_with_complex_parameters_gets_a_widenet_error_not_a_crash():
    class ComplexLayer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = torch.nn.Linear(4, 3, dtype=torch.complex128)
            self.head = torch.nn.Linear(3, 2, dtype=torch.float64)

        def forward(self, x):
            return self.head(self.inner(x.to(torch.complex128)).real)

    x = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for method in ("auto", "layerwise", "jacobian", "ntk-vp"):
        with pytest.raises(WidenetError, match=r"'inner\.weight' of the model is complex"):
            empirical_ntk(ComplexLayer(), x, method=method)


@pytest.mark.parametrize("transform", ["vmap", "grad"])
def test_kernels_called_inside_a_torch_func_transform_are_refused_in_one_line(transform):
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    x = torch.randn(5, 3, dtype=torch.float64)

    def kernel_sum(v):
        return empirical_ntk(model, x).ntk.sum() * v

    call = (torch.func.vmap(kernel_sum) if transform == "vmap" else torch.func.grad(kernel_sum))
    with pytest.raises(WidenetError, match="outside the transform"):
        call(torch.ones(2 if transform == "vmap" else (), dtype=torch.float64))
