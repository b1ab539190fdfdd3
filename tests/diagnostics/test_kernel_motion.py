"""Kernel movement, kernel-target alignment, extreme eigenvalues, information / nuisance spaces."""

from __future__ import annotations

import math

import pytest
import torch

from widenet import WidenetError
from widenet.diagnostics.kernel_motion import (
    InformationSpace,
    ResidualProjections,
    information_space,
    kernel_movement,
    kernel_target_alignment,
    label_information,
    lambda_max,
    lambda_min,
    residual_projections,
)

F64 = torch.float64


def _random(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _psd(n: int, eigenvalues: list[float], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """K = Q diag(eigenvalues) Q^T with a random orthogonal Q; returns (K, Q)."""
    q, _ = torch.linalg.qr(_random(n, n, seed=seed))
    return (q * torch.tensor(eigenvalues, dtype=F64)) @ q.T, q


def test_kernel_movement() -> None:
    k0 = torch.tensor([[3.0, 0.0], [0.0, 4.0]])
    kt = torch.tensor([[3.0, 1.0], [0.0, 4.0]])
    assert kernel_movement(k0, k0) == 0.0
    assert kernel_movement(kt, k0) == pytest.approx(0.2)
    assert kernel_movement(torch.ones(3, 2), torch.ones(3, 2) * 2) == pytest.approx(0.5)
    assert kernel_movement(torch.ones(2, 2), torch.zeros(2, 2)) == math.inf


@pytest.mark.parametrize("targets", [torch.tensor([1.0, -1.0, 1.0, 1.0]),
                                     torch.nn.functional.one_hot(torch.tensor([0, 2, 1, 2]))
                                     .double()])
def test_alignment_of_the_target_kernel_is_one(targets: torch.Tensor) -> None:
    y = targets if targets.ndim == 2 else targets.unsqueeze(1)
    kernel = y @ y.T
    assert kernel_target_alignment(kernel, targets) == pytest.approx(1.0, rel=1e-12)
    assert kernel_target_alignment(3.5 * kernel, targets) == pytest.approx(1.0, rel=1e-12)
    assert kernel_target_alignment(-kernel, targets) == pytest.approx(-1.0, rel=1e-12)


def test_alignment_matches_the_frobenius_formula() -> None:
    kernel, y = _random(6, 6), _random(6, 2, seed=1)
    target = y @ y.T
    expected = float((kernel * target).sum() / (kernel.norm() * target.norm()))
    assert kernel_target_alignment(kernel, y) == pytest.approx(expected, rel=1e-12)
    assert kernel_target_alignment(torch.zeros(6, 6), y) == 0.0
    assert kernel_target_alignment(kernel.float(), y[:, 0].long()) == pytest.approx(
        kernel_target_alignment(kernel, y[:, 0].long().double()), rel=1e-6)


def test_extreme_eigenvalues() -> None:
    kernel, _ = _psd(5, [0.1, 0.5, 1.0, 2.0, 9.0])
    assert lambda_min(kernel) == pytest.approx(0.1, rel=1e-10)
    assert lambda_max(kernel.float()) == pytest.approx(9.0, rel=1e-5)


def test_information_space_of_a_diagonal_kernel_is_the_known_coordinates() -> None:
    kernel = torch.diag(torch.tensor([5.0, 0.01, 2.0, 0.001], dtype=F64))
    space = information_space(kernel, cutoff=1.0)
    assert isinstance(space, InformationSpace)
    assert space.dimension == 2
    assert space.cutoff == 1.0
    assert torch.allclose(space.information_basis.abs() @ torch.ones(2, dtype=F64),
                          torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=F64))
    r = torch.tensor([3.0, 4.0, 0.0, 0.0], dtype=F64)
    projections = residual_projections(space, r, reference=2 * r)
    assert projections == ResidualProjections(pytest.approx(0.3), pytest.approx(0.4))
    assert label_information(space, torch.tensor([0.0, 1.0, 1.0, 0.0])) == pytest.approx(
        1 / math.sqrt(2))
    assert information_space(kernel, cutoff=2.0).dimension == 2  # lambda >= alpha is included
    assert information_space(kernel, cutoff=100.0).dimension == 0


def test_projections_add_in_squares_and_cutoff_matches_top() -> None:
    kernel, q = _psd(8, [0.01, 0.02, 0.05, 0.1, 1.0, 2.0, 3.0, 4.0])
    by_cutoff = information_space(kernel, cutoff=0.5)
    by_top = information_space(kernel, top=4)
    assert by_cutoff.dimension == by_top.dimension == 4
    assert by_top.cutoff is None
    residual, reference = _random(8, 3, seed=2), _random(8, 3, seed=3)
    for space in (by_cutoff, by_top):
        p = residual_projections(space, residual, reference)
        ratio = float(residual.norm() / reference.norm())
        assert p.information**2 + p.nuisance**2 == pytest.approx(ratio**2, rel=1e-12)
        projector = space.information_basis @ space.information_basis.T
        assert torch.allclose(projector, q[:, 4:] @ q[:, 4:].T, atol=1e-12)
        assert p.information == pytest.approx(float((projector @ residual).norm()
                                                    / reference.norm()), rel=1e-12)
    v = q[:, 6]  # an eigenvector in I, and one in N
    assert residual_projections(by_top, v) == ResidualProjections(pytest.approx(1.0),
                                                                  pytest.approx(0.0, abs=1e-12))
    assert label_information(by_top, q[:, 1]) == pytest.approx(0.0, abs=1e-12)
    assert information_space(kernel, top=0).dimension == 0
    assert information_space(kernel, top=8).nuisance_basis.shape == (8, 0)


def test_gradient_descent_drains_the_information_space_first() -> None:
    """Kernel regime: r_{t+1} = (I - eta K) r_t, so P_I r decays like (1 - eta lambda)^t."""
    kernel, _ = _psd(6, [1e-4, 1e-3, 1e-3, 1.0, 1.5, 2.0], seed=4)
    space = information_space(kernel, cutoff=0.5)
    r0 = _random(6, seed=5)
    r = r0.clone()
    for _ in range(50):
        r = r - 0.5 * kernel @ r
    start, end = residual_projections(space, r0), residual_projections(space, r, r0)
    assert end.information < 1e-6 * start.information
    assert end.nuisance == pytest.approx(start.nuisance, rel=0.06)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: information_space(torch.eye(3), cutoff=-0.1), "cutoff must be >= 0"),
    (lambda: information_space(torch.eye(3)), "exactly one"),
    (lambda: information_space(torch.eye(3), cutoff=1.0, top=1), "exactly one"),
    (lambda: information_space(torch.eye(3), top=4), "at most the kernel's size 3"),
    (lambda: information_space(torch.eye(3), top=-1), "non-negative integer"),
    (lambda: information_space(torch.ones(3, 2), top=1), "square"),
    (lambda: information_space(torch.tensor([[float("nan")]]), top=1), "NaN"),
    (lambda: residual_projections(information_space(torch.eye(3), top=1), torch.ones(4)),
     "shape \\(3,\\) or \\(3, k\\)"),
    (lambda: residual_projections(information_space(torch.eye(3), top=1), torch.ones(3),
                                  torch.zeros(3)), "reference residual r_0 is zero"),
    (lambda: residual_projections(torch.eye(3), torch.ones(3)), "InformationSpace"),
    (lambda: label_information(information_space(torch.eye(2), top=1), torch.zeros(2)),
     "labels are all zero"),
    (lambda: label_information(information_space(torch.eye(2), top=1),
                               torch.tensor([1.0, float("nan")])), "NaN"),
    (lambda: kernel_movement(torch.eye(2), torch.eye(3)), "same inputs"),
    (lambda: kernel_movement(torch.ones(2), torch.ones(2)), "2-D"),
    (lambda: kernel_movement(torch.eye(2), torch.tensor([[1.0, float("inf")], [0, 1]])),
     "initial_kernel contains NaN"),
    (lambda: kernel_target_alignment(torch.eye(2), torch.zeros(2)), "targets are all zero"),
    (lambda: kernel_target_alignment(torch.ones(2, 3), torch.ones(2)), "square"),
    (lambda: kernel_target_alignment(torch.eye(2), torch.ones(3)), "shape \\(2,\\)"),
    (lambda: lambda_min(torch.ones(2, 3)), "square"),
])
def test_bad_input(call, message: str) -> None:
    with pytest.raises(WidenetError, match=message):
        call()


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_scale_invariant_diagnostics_at_extreme_scales(scale: float) -> None:
    """Every quantity here is a ratio, invariant to scaling its arguments; torch's norms square
    the entries, which underflowed or overflowed: the alignment of 1e200 K was 0.0, that of
    1e-200 y 'targets are all zero', the movement of 1e200 K NaN (1e-200 K: 0.0), the
    residual's projections NaN or 'r_0 is zero'."""
    kernel, _ = _psd(6, [5.0, 3.0, 1.0, 0.5, 0.1, 0.01])
    y, r = _random(6, 2, seed=1), _random(6, seed=2)
    space = information_space(kernel, top=2)
    assert kernel_target_alignment(kernel * scale, y) == pytest.approx(
        kernel_target_alignment(kernel, y), rel=1e-13)
    assert kernel_target_alignment(kernel, y * scale) == pytest.approx(
        kernel_target_alignment(kernel, y), rel=1e-13)
    assert kernel_movement(1.5 * scale * kernel, scale * kernel) == pytest.approx(0.5, rel=1e-13)
    expected = residual_projections(space, r)
    for got in (residual_projections(space, r * scale),
                residual_projections(space, r * scale, r * scale)):
        assert got.information == pytest.approx(expected.information, rel=1e-13)
        assert got.nuisance == pytest.approx(expected.nuisance, rel=1e-13)
    assert residual_projections(space, r * scale, r).information == pytest.approx(
        scale * expected.information, rel=1e-13)
    assert label_information(space, y * scale) == pytest.approx(label_information(space, y),
                                                                 rel=1e-13)


def test_complex_kernels_are_refused() -> None:
    """The imaginary part was dropped with a warning: the movement of (1 + 5i) I from I was
    0.0, the alignment of i I 0.0."""
    identity = torch.eye(3, dtype=torch.complex128)
    with pytest.raises(WidenetError, match=r"kernel is complex .* pass its real part"):
        kernel_movement(identity * (1 + 5j), identity)
    with pytest.raises(WidenetError, match="kernel is complex"):
        kernel_target_alignment(identity * 1j, torch.ones(3))
