"""Spectra of kernel matrices."""

import math

import pytest
import torch

import widenet as wn


def test_eigenvalues_of_a_rotated_diagonal_matrix() -> None:
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(0),
                                       dtype=torch.float64))
    values = torch.tensor([0.5, 1.0, 2.0, 3.0, 8.0], dtype=torch.float64)
    kernel = (q * values) @ q.T
    s = wn.spectrum(kernel.float())  # computed in float64 whatever comes in
    assert s.eigenvalues.dtype == torch.float64
    assert torch.allclose(s.eigenvalues, values, atol=1e-5)
    assert s.lambda_min == pytest.approx(0.5, abs=1e-5)
    assert s.lambda_max == pytest.approx(8.0, abs=1e-5)
    assert wn.condition_number(kernel) == pytest.approx(16.0, rel=1e-10)


def test_round_off_asymmetry_is_removed() -> None:
    kernel = torch.tensor([[2.0, 1.0 + 1e-9], [1.0 - 1e-9, 2.0]], dtype=torch.float64)
    assert torch.allclose(wn.spectrum(kernel).eigenvalues,
                          torch.tensor([1.0, 3.0], dtype=torch.float64))


def test_singular_matrix_has_infinite_condition_number() -> None:
    ones = torch.ones(4, 4, dtype=torch.float64)
    assert wn.condition_number(ones) == math.inf


@pytest.mark.parametrize(("kernel", "message"), [
    (torch.ones(3, 4), "square"), (torch.ones(0, 0), "square"), (torch.ones(3), "square"),
    (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), "NaN or inf"),
    (torch.eye(2, dtype=torch.complex128), "complex")])
def test_bad_kernels(kernel: torch.Tensor, message: str) -> None:
    with pytest.raises(wn.WidenetError, match=message):
        wn.spectrum(kernel)
