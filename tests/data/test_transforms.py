"""Normalizations: the sphere ||x||^2 = d and per-feature standardization with train statistics."""

from __future__ import annotations

import pytest
import torch

from widenet import WidenetError
from widenet.data import Dataset, normalize, sphere_normalize, standardize


def _gaussian(n: int, d: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 3 + 2 * torch.randn(n, d, generator=generator, dtype=torch.float64)


def test_sphere_normalize_gives_squared_norm_d_and_keeps_directions() -> None:
    x = _gaussian(40, 6, 0)
    out = sphere_normalize(x)
    assert torch.allclose((out**2).sum(1), torch.full((40,), 6.0, dtype=torch.float64),
                          rtol=0, atol=1e-12)
    ratio = out / x  # a positive multiple of each row
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-12)
    assert bool((ratio > 0).all())


def test_sphere_normalize_edge_rows_stay_finite() -> None:
    x = torch.tensor([[0.0, 0.0, 0.0], [1e-300, 0.0, -1e-300], [1e300, 1e300, 0.0],
                      [5e-324, 0.0, 0.0]], dtype=torch.float64)
    out = sphere_normalize(x)
    assert bool(torch.isfinite(out).all())
    assert torch.equal(out[0], torch.zeros(3, dtype=torch.float64))
    expected = torch.tensor([[1.5**0.5, 0.0, -(1.5**0.5)], [1.5**0.5, 1.5**0.5, 0.0],
                             [3**0.5, 0.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(out[1:], expected, rtol=0, atol=1e-14)


def test_standardize_uses_train_statistics_for_both_splits() -> None:
    x, x_test = _gaussian(50, 4, 1), _gaussian(9, 4, 2)
    z, z_test = standardize(x, x_test)
    assert torch.allclose(z.mean(0), torch.zeros(4, dtype=torch.float64), atol=1e-13)
    assert torch.allclose(z.std(0, correction=0), torch.ones(4, dtype=torch.float64), rtol=1e-13)
    mean, std = x.mean(0), x.std(0, correction=0)
    assert torch.allclose(z, (x - mean) / std, rtol=0, atol=1e-13)
    assert torch.allclose(z_test, (x_test - mean) / std, rtol=0, atol=1e-13)


def test_standardize_leaves_constant_features_at_zero() -> None:
    x = torch.tensor([[3.7, 0.0, 1.0], [3.7, 0.0, 2.0], [3.7, 0.0, 3.0]], dtype=torch.float64)
    x_test = torch.tensor([[4.7, 2.0, 2.0]], dtype=torch.float64)
    z, z_test = standardize(x, x_test)
    assert torch.equal(z[:, :2], torch.zeros(3, 2, dtype=torch.float64))
    assert torch.allclose(z_test, torch.tensor([[1.0, 2.0, 0.0]], dtype=torch.float64),
                          atol=1e-14)  # constant features only centered: 4.7 - 3.7, 2 - 0
    single, _ = standardize(x[:1], x_test)
    assert torch.equal(single, torch.zeros(1, 3, dtype=torch.float64))


def test_standardize_survives_extreme_scales() -> None:
    x = torch.tensor([[1e-300, 1e300], [3e-300, -1e300]], dtype=torch.float64)
    z, z_test = standardize(x, x)
    assert torch.allclose(z, torch.tensor([[-1.0, 1.0], [1.0, -1.0]], dtype=torch.float64))
    assert torch.equal(z, z_test)


def test_normalize_on_a_dataset() -> None:
    x, x_test = _gaussian(20, 3, 3), _gaussian(5, 3, 4)
    ds = Dataset("t", "regression", x, torch.zeros(20, 1, dtype=torch.float64), x_test,
                 torch.zeros(5, 1, dtype=torch.float64))
    assert normalize(ds, "none") is ds
    on_sphere = normalize(ds, "sphere")
    assert torch.equal(on_sphere.x_test, sphere_normalize(x_test))
    standardized = normalize(ds, "standardize")
    assert torch.equal(standardized.x_test, standardize(x, x_test)[1])
    with pytest.raises(WidenetError, match="normalize must be one of none, standardize, sphere"):
        normalize(ds, "l2")
    with pytest.raises(WidenetError, match="at least one train point"):
        standardize(x[:0], x_test)


def test_images_are_normalized_as_their_flattened_points() -> None:
    images = _gaussian(30, 2 * 3 * 4, 5).reshape(30, 2, 3, 4)
    test = _gaussian(7, 2 * 3 * 4, 6).reshape(7, 2, 3, 4)
    out = sphere_normalize(images)
    assert out.shape == images.shape
    assert torch.equal(out.flatten(1), sphere_normalize(images.flatten(1)))
    assert torch.allclose((out**2).sum((1, 2, 3)), torch.full((30,), 24.0, dtype=torch.float64),
                          rtol=0, atol=1e-12)
    train, held_out = standardize(images, test)
    flat_train, flat_test = standardize(images.flatten(1), test.flatten(1))
    assert torch.equal(train.flatten(1), flat_train)
    assert torch.equal(held_out.flatten(1), flat_test)
