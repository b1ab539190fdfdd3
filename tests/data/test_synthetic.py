"""Synthetic sets: seeding, shapes, and each distribution's defining property."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from tests.data.helpers import same_data
from widenet import WidenetError
from widenet.data import (
    Dataset,
    noisy_clusters,
    random_direction,
    separable,
    sphere_points,
    sphere_regression,
    teacher_network,
    teacher_student,
    two_spirals,
)

GENERATORS = {
    "sphere": lambda **kw: sphere_regression(40, 5, **kw),
    "teacher": lambda **kw: teacher_student(40, 5, noise=0.1, **kw),
    "separable": lambda **kw: separable(40, 5, **kw),
    "noisy": lambda **kw: noisy_clusters(40, 5, noise=0.1, **kw),
    "spirals": lambda **kw: two_spirals(40, noise=0.1, **kw),
}


@pytest.mark.parametrize("name", GENERATORS)
def test_same_seed_same_data_other_seed_other_data(name: str) -> None:
    make = GENERATORS[name]
    first, again, other = make(n_test=7, seed=3), make(n_test=7, seed=3), make(n_test=7, seed=4)
    assert first.name == name
    assert same_data(first, again)
    assert not torch.equal(first.x, other.x)
    assert not torch.equal(first.x_test, other.x_test)


@pytest.mark.parametrize("name", GENERATORS)
def test_shapes_dtypes_and_train_independent_of_n_test(name: str) -> None:
    make = GENERATORS[name]
    ds = make(n_test=7, seed=1)
    alone = make(seed=1)
    dim = 2 if name == "spirals" else 5
    assert ds.x.shape == (40, dim)
    assert ds.x_test.shape == (7, dim)
    assert alone.x_test.shape == (0, dim)
    assert torch.equal(ds.x, alone.x)
    assert torch.equal(ds.y, alone.y)
    assert ds.x.dtype == torch.float64
    if ds.task == "regression":
        assert (ds.y.shape, ds.y.dtype, ds.classes) == ((40, 1), torch.float64, None)
    else:
        assert (ds.y.shape, ds.y.dtype, ds.classes) == ((40,), torch.int64, 2)
        assert set(ds.y.tolist()) <= {0, 1}


@pytest.mark.parametrize("name", GENERATORS)
def test_float32_is_the_float64_draw_cast(name: str) -> None:
    make = GENERATORS[name]
    low, high = make(dtype=torch.float32), make()
    assert low.x.dtype == torch.float32
    assert torch.equal(low.x, high.x.float())
    assert torch.equal(low.y, high.y if low.task == "classification" else high.y.float())


@pytest.mark.parametrize("make", [sphere_regression, teacher_student, separable])
def test_inputs_lie_on_the_sphere(make: Callable[..., Dataset]) -> None:
    ds = make(30, 7, n_test=5, seed=2)
    for x in (ds.x, ds.x_test):
        assert torch.allclose((x**2).sum(1), torch.full((len(x),), 7.0, dtype=torch.float64),
                              rtol=0, atol=1e-12)


def test_sphere_points_norm_and_seed() -> None:
    x = sphere_points(50, 9, seed=5)
    assert torch.allclose(x.norm(dim=1) ** 2, torch.full((50,), 9.0, dtype=torch.float64),
                          atol=1e-12)
    assert torch.equal(x, sphere_points(50, 9, seed=5))
    assert not torch.equal(x, sphere_points(50, 9, seed=6))


def test_sphere_targets_are_standard_normal() -> None:
    n = 4000
    y = sphere_regression(n, 3, seed=0).y
    assert abs(float(y.mean())) < 4 / math.sqrt(n)  # 4 standard errors of the mean
    assert abs(float(y.var()) - 1) < 4 * math.sqrt(2 / n)  # and of the variance


def test_teacher_targets_are_the_teacher_outputs_plus_noise() -> None:
    clean = teacher_student(300, 6, n_test=20, seed=9, width=16, depth=3)
    noisy = teacher_student(300, 6, n_test=20, seed=9, width=16, depth=3, noise=0.5)
    teacher = teacher_network(6, width=16, depth=3, seed=9)
    assert teacher.hidden == (16, 16, 16)
    assert teacher.activation.name == "relu"
    with torch.no_grad():
        assert torch.equal(clean.y, teacher(clean.x))
        assert torch.equal(clean.y_test, teacher(clean.x_test))
    assert torch.equal(clean.x, noisy.x)
    assert torch.equal(clean.x_test, noisy.x_test)
    eps = (noisy.y - clean.y) / 0.5
    n = eps.numel()
    assert abs(float(eps.mean())) < 4 / math.sqrt(n)
    assert abs(float(eps.var()) - 1) < 4 * math.sqrt(2 / n)


def test_teacher_output_variance_is_two_at_any_width() -> None:
    # E[relu(z)^2] = E[z^2] / 2 for symmetric z, so E[f(x)^2] = sigma_w^2 ||x||^2 / d = 2.
    x = sphere_points(1, 5, seed=0)
    with torch.no_grad():
        squares = torch.cat([teacher_network(5, width=8, seed=s)(x) for s in range(1000)]) ** 2
    standard_error = float(squares.std()) / math.sqrt(squares.numel())
    assert abs(float(squares.mean()) - 2) < 4 * standard_error


@pytest.mark.parametrize(("dim", "margin"), [(1, 0.3), (4, 0.0), (10, 1.5), (3, 1.7)])
def test_separable_has_the_margin_along_the_generating_direction(dim: int, margin: float
                                                                 ) -> None:
    ds = separable(500, dim, n_test=100, seed=11, margin=margin)
    w = random_direction(dim, seed=11)
    assert float(w.norm()) == pytest.approx(1.0, abs=1e-15)
    for x, y in ((ds.x, ds.y), (ds.x_test, ds.y_test)):
        projection = x @ w
        assert torch.equal(y, (projection > 0).long())
        assert float(((2 * y - 1) * projection).min()) >= margin - 1e-12
        assert torch.allclose((x**2).sum(1), torch.full((len(x),), float(dim),
                                                         dtype=torch.float64), atol=1e-12)
    assert abs(float(ds.y.double().mean()) - 0.5) < 4 * 0.5 / math.sqrt(500)


@pytest.mark.parametrize("noise", [0.0, 0.2])
def test_noisy_clusters_bayes_error(noise: float) -> None:
    n = 4000
    ds = noisy_clusters(n, 3, seed=2, noise=noise)
    w = random_direction(3, seed=2)
    errors = float(((ds.x @ w > 0).long() != ds.y).double().mean())
    phi = 0.5 * math.erfc(1 / math.sqrt(2))  # Phi(-1)
    expected = noise + (1 - 2 * noise) * phi
    assert abs(errors - expected) < 4 * math.sqrt(expected * (1 - expected) / n)


def test_spirals_follow_their_formula() -> None:
    ds = two_spirals(200, n_test=20, seed=4)
    for x, c in ((ds.x, ds.y), (ds.x_test, ds.y_test)):
        t = x.norm(dim=1) / math.sqrt(2)
        assert float(t.max()) <= 1
        angle = 3 * math.pi * t + math.pi * c
        expected = math.sqrt(2) * t[:, None] * torch.stack([angle.cos(), angle.sin()], dim=1)
        assert torch.allclose(x, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: sphere_points(0, 3), "n must be a positive integer"),
    (lambda: sphere_points(3, 2.5), "dim must be a positive integer"),
    (lambda: sphere_regression(3, 2, seed=-1), "seed must be an integer from 0 to"),
    (lambda: sphere_regression(3, 2, n_test=-1), "n_test must be a non-negative integer"),
    (lambda: sphere_regression(3, 2, dtype=torch.int64), "floating-point torch dtype"),
    (lambda: teacher_student(3, 2, noise=-0.1), "noise must be >= 0"),
    (lambda: teacher_student(3, 2, width=0), "width must be a positive integer"),
    (lambda: separable(3, 4, margin=2.0), "margin must be below sqrt"),
    (lambda: separable(3, 4, margin=float("nan")), "margin must be a finite real number"),
    (lambda: noisy_clusters(3, 2, noise=1.5), "label-flip probability"),
    (lambda: two_spirals(3, noise=float("inf")), "noise must be a finite real number"),
])
def test_bad_arguments(call: Callable[[], object], message: str) -> None:
    with pytest.raises(WidenetError, match=message):
        call()
