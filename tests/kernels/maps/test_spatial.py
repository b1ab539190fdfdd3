"""The spatial kernel maps against brute force: the covariance of a linear convolution's output
built from its Jacobian, pooling as an explicit averaging matrix, and direct loops."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn import functional as F

import widenet as wn
from widenet import nn as wnn
from widenet.kernels.maps.spatial import pool_mean, shift_sum


def conv_covariance(conv: wnn.Conv2d | wnn.Conv1d, x1: torch.Tensor, x2: torch.Tensor
                    ) -> torch.Tensor:
    """Cov(z_j(x), z_j'(x')) over W, b ~ N(0, 1) of one output channel of ``conv`` (NTK
    parametrization), from the Jacobian J(x) = dz_0(x)/dW_0 of the layer's own forward
    (which includes m_w):
    J(x) J(x')^T + m_b^2, shape (n1, n2, *positions, *positions)."""
    def jacobian(x: torch.Tensor) -> torch.Tensor:
        weight = conv.weight.detach().clone().requires_grad_()
        out = torch.func.functional_call(conv, {"weight": weight}, (x,), strict=False)[:, 0]
        rows = [torch.autograd.grad(v, weight, retain_graph=True)[0][0].flatten()
                for v in out.flatten()]
        return torch.stack(rows).view(*out.shape, -1)
    j1, j2 = jacobian(x1), jacobian(x2)
    spatial = j1.shape[1:-1]
    flat1, flat2 = j1.flatten(1, -2), j2.flatten(1, -2)
    cov = torch.einsum("apk,bqk->abpq", flat1, flat2)
    cov = cov + (conv.bias_multiplier**2 if conv.bias is not None else 0.0)
    return cov.reshape(x1.shape[0], x2.shape[0], *spatial, *spatial)


@pytest.mark.parametrize(("kernel", "stride", "padding"), [
    (3, 1, "same"), ((2, 3), (2, 1), "same"), (3, 2, "valid"), ((3, 2), 1, "circular"),
    (3, 2, "same"), ((3, 2), (2, 3), "circular")])
def test_conv_map_is_the_covariance_of_the_linear_layer(kernel, stride, padding) -> None:
    x = torch.randn(3, 2, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    conv = wnn.Conv2d(2, 3, kernel, stride=stride, padding=padding, weight_std=1.4, bias_std=0.3,
                      dtype=torch.float64)
    model = wnn.Sequential(conv, wnn.GlobalAvgPool(), wnn.Dense(3, 1))
    limit = wn.infinite_kernels(model, x, per_layer=True)
    assert torch.allclose(limit.layers.sigma[0], conv_covariance(conv, x, x), rtol=1e-12)


def test_conv1d_diagonal_map_and_flatten_readout() -> None:
    """Only the diagonal is tracked before a flatten readout: NNGP = w mean_j K_jj + b."""
    x = torch.randn(4, 3, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    conv = wnn.Conv1d(3, 2, 4, stride=2, padding="same", bias_std=0.5, dtype=torch.float64)
    readout = wnn.Dense(2 * 4, 1, weight_std=1.1, bias_std=0.2, dtype=torch.float64)
    limit = wn.infinite_kernels(wnn.Sequential(conv, wnn.Flatten(), readout), x, per_layer=True)
    full = conv_covariance(conv, x, x)
    diagonal = full.diagonal(dim1=2, dim2=3)
    assert torch.allclose(limit.layers.sigma[0], diagonal, rtol=1e-12)
    assert torch.allclose(limit.nngp, 1.1**2 * diagonal.mean(dim=-1) + 0.04, rtol=1e-12)


def test_average_pooling_is_an_averaging_matrix() -> None:
    """Pool windows 2 x 3 with stride (1, 2), then a 1x1 conv: Sigma = w Q K Q^T + b with Q
    the pooling matrix (torch's avg_pool2d applied to the unit images)."""
    x = torch.randn(3, 2, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    conv = wnn.Conv2d(2, 3, 3, dtype=torch.float64)
    after = wnn.Conv2d(3, 2, 1, weight_std=0.9, bias_std=0.1, dtype=torch.float64)
    model = wnn.Sequential(conv, wnn.AvgPool2d((2, 3), (1, 2)), after, wnn.GlobalAvgPool(),
                           wnn.Dense(2, 1))
    limit = wn.infinite_kernels(model, x, per_layer=True)
    units = torch.eye(30, dtype=torch.float64).view(30, 1, 5, 6)
    q = F.avg_pool2d(units, (2, 3), (1, 2)).flatten(1).T  # (P_out, P_in)
    k = conv_covariance(conv, x, x).reshape(3, 3, 30, 30)
    expected = 0.81 * torch.einsum("ip,abpq,jq->abij", q, k, q) + 0.01
    assert torch.allclose(limit.layers.sigma[1].reshape(3, 3, 8, 8), expected, rtol=1e-12)


def test_shift_sum_and_pool_mean_against_loops() -> None:
    t = torch.randn(2, 4, 5, 4, 5, dtype=torch.float64)
    out = shift_sum(t, 2, (3, 2), (2, 1), ((1, 1), (0, 1)), circular=False)
    padded = torch.zeros(2, 6, 6, 6, 6, dtype=torch.float64)
    padded[:, 1:5, 0:5, 1:5, 0:5] = t
    assert out.shape == (2, 2, 5, 2, 5)
    for j in itertools.product(range(2), range(5), range(2), range(5)):
        direct = sum(padded[:, 2 * j[0] + a, j[1] + b, 2 * j[2] + a, j[3] + b]
                     for a in range(3) for b in range(2))
        assert torch.allclose(out[(slice(None), *j)], direct)
    u = torch.randn(3, 6, dtype=torch.float64)
    wrapped = shift_sum(u, 1, (3,), (1,), ((1, 1),), circular=True)
    direct = sum(torch.roll(u, -d, dims=1) for d in (-1, 0, 1))
    assert torch.allclose(wrapped, direct)
    pooled = pool_mean(t, 2, (2, 3), (2, 1))
    assert torch.allclose(pooled[1, 1, 2, 0, 1], t[1, 2:4, 2:5, 0:2, 1:4].mean())
