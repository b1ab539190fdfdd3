"""infinite_kernels of widenet.nn architectures against a brute-force reference written here.

The reference tracks the covariance of all n P pre-activations at once, an (n P, n P) matrix,
and maps it layer by layer with explicit matrices taken from the layers' own forward passes:
a convolution is sum_delta S_delta (.) S_delta^T / |N| with S_delta what the layer does with a
one-hot filter at offset delta, a pooling layer A (.) A^T with A what it does to one-hot images.
Activations use their closed-form duals (arc-cosine for a s + b |s|, arcsine for erf) on every
pair of positions; layer norm divides by the variances; a flatten + dense readout averages the
position diagonal. So the positions the limit assumes are the ones the trainable net computes.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import widenet as wn
from widenet import nn as wnn
from widenet.activations import AbsLinear, ab


def one_hot_images(channels: int, size: tuple[int, ...]) -> torch.Tensor:
    """(P, channels, *size): image p has a 1 at position p of channel 0."""
    positions = math.prod(size)
    units = torch.zeros(positions, channels, positions, dtype=torch.float64)
    units[:, 0] = torch.eye(positions, dtype=torch.float64)
    return units.view(positions, channels, *size)


def offset_matrices(conv: wnn.Conv1d | wnn.Conv2d, size: tuple[int, ...]) -> list[torch.Tensor]:
    """(P_out, P_in) per filter offset: the layer's forward with a one-hot filter, unscaled."""
    units = one_hot_images(conv.in_channels, size)
    matrices = []
    for delta in range(math.prod(conv.kernel_size)):
        weight = torch.zeros(1, conv.in_channels, math.prod(conv.kernel_size),
                             dtype=torch.float64)
        weight[0, 0, delta] = 1.0
        values = {"weight": weight.view(1, conv.in_channels, *conv.kernel_size)}
        if conv.bias is not None:
            values["bias"] = torch.zeros(1, dtype=torch.float64)
        out = torch.func.functional_call(conv, values, (units,), strict=False)
        matrices.append(out.flatten(1).T / conv.weight_multiplier)
    return matrices


def duals(activation: wn.activations.Activation, q1: torch.Tensor, q2: torch.Tensor,
          c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E[phi(u) phi(v)] and E[phi'(u) phi'(v)], (u, v) ~ N(0, [[q1, c], [c, q2]])."""
    root = torch.sqrt(q1 * q2)
    rho = torch.where(root > 0, c / torch.where(root > 0, root, 1.0), 0.0).clamp(-1.0, 1.0)
    if isinstance(activation, AbsLinear):  # a s + b |s|: E[u |v|] = 0
        a, b = activation.a, activation.b
        absolute = 2 * root / math.pi * (torch.sqrt(1 - rho**2) + rho * torch.asin(rho))
        return a * a * c + b * b * absolute, a * a + b * b * 2 / math.pi * torch.asin(rho)
    assert activation.name == "erf"
    spread = (1 + 2 * q1) * (1 + 2 * q2)
    return (2 / math.pi * torch.asin(2 * c / torch.sqrt(spread)),
            4 / math.pi / torch.sqrt(spread - 4 * c * c))


class Joint:
    """Sigma and Theta of all n P pre-activations, (n P, n P), on a ``size`` grid."""

    def __init__(self, sigma: torch.Tensor, theta: torch.Tensor, size: tuple[int, ...],
                 n: int):
        self.sigma, self.theta, self.size, self.n = sigma, theta, size, n

    def linear(self, matrices: list[torch.Tensor], size: tuple[int, ...]) -> Joint:
        """The mean over ``matrices`` M (per image) of M K M^T, for Sigma and Theta."""
        lifted = [torch.block_diag(*[m] * self.n) for m in matrices]
        sigma, theta = (sum(m @ t @ m.T for m in lifted) / len(lifted)
                        for t in (self.sigma, self.theta))
        return Joint(sigma, theta, size, self.n)

    def diagonal_mean(self, t: torch.Tensor) -> torch.Tensor:
        positions = math.prod(self.size)
        return t.view(self.n, positions, self.n, positions).diagonal(dim1=1, dim2=3).mean(-1)


def reference(module: nn.Module, state: Joint) -> Joint:
    if isinstance(module, nn.Sequential):
        for layer in module:
            state = reference(layer, state)
        return state
    if isinstance(module, wnn.Conv1d | wnn.Conv2d):
        units = one_hot_images(module.in_channels, state.size)
        size = tuple(module(units.to(module.weight.dtype)).shape[2:])
        mapped = state.linear(offset_matrices(module, state.size), size)
        w, b = module.weight_std**2, module.bias_std**2
        sigma = w * mapped.sigma + b
        return Joint(sigma, sigma + w * mapped.theta, size, state.n)
    if isinstance(module, wnn.Dense):  # a readout after a flatten, or on vectors (P = 1)
        w, b = module.weight_std**2, module.bias_std**2
        sigma = w * state.diagonal_mean(state.sigma) + b
        return Joint(sigma, sigma + w * state.diagonal_mean(state.theta), (), state.n)
    if isinstance(module, wnn.AvgPool1d | wnn.AvgPool2d | wnn.GlobalAvgPool):
        out = module(one_hot_images(1, state.size))
        return state.linear([out.flatten(1).T], tuple(out.shape[2:]))
    if isinstance(module, wnn.Flatten):
        return state
    if isinstance(module, wnn.Activation):
        q = state.sigma.diagonal()
        product, derivative = duals(module.activation, q[:, None], q[None, :], state.sigma)
        return Joint(product, derivative * state.theta, state.size, state.n)
    if isinstance(module, wnn.LayerNorm):
        q = state.sigma.diagonal() + module.eps
        roots = torch.sqrt(q[:, None] * q[None, :])
        return Joint(state.sigma / roots, state.theta / roots, state.size, state.n)
    if isinstance(module, wnn.Residual):
        branch = reference(module.branch, state)
        a = module.alpha**2
        return Joint(state.sigma + a * branch.sigma, state.theta + a * branch.theta,
                     branch.size, state.n)
    if isinstance(module, wnn.Sum):
        outs = [reference(branch, state) for branch in module.branches]
        return Joint(sum(w * w * o.sigma for w, o in zip(module.weights, outs, strict=True)),
                     sum(w * w * o.theta for w, o in zip(module.weights, outs, strict=True)),
                     outs[0].size, state.n)
    raise NotImplementedError(type(module).__name__)


def reference_kernels(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n, channels = x.shape[0], x.shape[1]
    rows = x.flatten(2).transpose(1, 2).reshape(-1, channels)
    sigma = rows @ rows.T / channels
    out = reference(model, Joint(sigma, torch.zeros_like(sigma), tuple(x.shape[2:]), n))
    return out.diagonal_mean(out.sigma), out.diagonal_mean(out.theta)


def strided_cnn() -> nn.Module:
    """Even filters with stride (2, 3) and "same" padding, a pool whose stride differs from its
    window, a strided circular convolution, global pooling and a biased readout."""
    return wnn.Sequential(wnn.Conv2d(2, 3, (4, 2), stride=(2, 3), bias_std=0.3),
                          wnn.Activation("relu"), wnn.AvgPool2d((3, 2), stride=(1, 2)),
                          wnn.Conv2d(3, 3, 3, stride=2, padding="circular", bias_std=0.2),
                          wnn.Activation("erf"), wnn.GlobalAvgPool(),
                          wnn.Dense(3, 2, bias_std=0.1))


def normalized_resnet_1d() -> nn.Module:
    """A valid strided Conv1d, layer norm, a residual block with alpha, a pool not dividing the
    length, and a flatten readout."""
    block = wnn.Sequential(wnn.Activation("relu"), wnn.Conv1d(3, 3, 2, bias_std=0.4),
                           wnn.Activation("erf"), wnn.Conv1d(3, 3, 3, stride=1))
    return wnn.Sequential(wnn.Conv1d(2, 3, 4, stride=3, padding="valid", bias_std=0.2),
                          wnn.LayerNorm(eps=0.01), wnn.Residual(block, alpha=0.6),
                          wnn.AvgPool1d(2, stride=1), wnn.Flatten(), wnn.Dense(3 * 3, 1))


def summed_branches() -> nn.Module:
    """a s + b |s|, then the sum of a strided convolution and a pooled 1x1 one, layer norm after
    a convolution, a flatten readout."""
    return wnn.Sequential(wnn.Conv2d(2, 3, 3, bias_std=0.2), wnn.Activation(ab(0.3, 0.7)),
                          wnn.Sum([wnn.Conv2d(3, 3, 3, stride=2),
                                   wnn.Sequential(wnn.AvgPool2d(2),
                                                  wnn.Conv2d(3, 3, 1, bias_std=0.5))],
                                  weights=[1.0, -0.6]),
                          wnn.LayerNorm(), wnn.Activation("abs"), wnn.Flatten(),
                          wnn.Dense(3 * 4 * 3, 1, weight_std=0.8))


def linear_net() -> nn.Module:
    """No nonlinearity (a linear activation on the raw input): exact closed forms."""
    return wnn.Sequential(wnn.Activation(ab(-2.0, 0.0)), wnn.Conv2d(2, 3, 3, stride=2),
                          wnn.Activation(ab(0.5, 0.0)), wnn.AvgPool2d(2, stride=1),
                          wnn.Conv2d(3, 3, 2, padding="valid", bias_std=0.3),
                          wnn.Flatten(), wnn.Dense(3 * 2 * 1, 1))


def post_norm_branches() -> nn.Module:
    """Branches ending in maps odd in their last weighted layer's output: a post-norm residual
    block x + 0.6 LN(conv(relu(x))), and the sum of a pooled convolution with a strided one
    times a linear activation."""
    return wnn.Sequential(wnn.Conv2d(2, 3, 3),
                          wnn.Residual(wnn.Sequential(wnn.Activation("relu"),
                                                      wnn.Conv2d(3, 3, 3, bias_std=0.2),
                                                      wnn.LayerNorm()), alpha=0.6),
                          wnn.Sum([wnn.Sequential(wnn.Conv2d(3, 3, 3), wnn.AvgPool2d(2)),
                                   wnn.Sequential(wnn.Conv2d(3, 3, 3, stride=2, padding="valid"),
                                                  wnn.Activation(ab(0.5, 0.0)))],
                                  weights=[1.0, -0.7]),
                          wnn.Activation("erf"), wnn.Flatten(), wnn.Dense(3 * 2 * 2, 1))


@pytest.mark.parametrize(("make", "shape"), [
    (strided_cnn, (2, 9, 8)), (normalized_resnet_1d, (2, 14)), (summed_branches, (2, 8, 6)),
    (linear_net, (2, 8, 6)), (post_norm_branches, (2, 5, 5))])
def test_architectures_against_the_joint_covariance_of_all_positions(make, shape) -> None:
    """A zero image, an antipodal pair and a repeated image among x1 and x2 (rectangular)."""
    model = make()
    x = torch.randn(5, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    x[1], x[2], x[4] = 0.0, -x[0], x[3]
    nngp, ntk = reference_kernels(model, x)
    kernels = wn.infinite_kernels(model, x[:3], x[1:])
    assert torch.allclose(kernels.nngp, nngp[:3, 1:], rtol=1e-12, atol=1e-15)
    assert torch.allclose(kernels.ntk, ntk[:3, 1:], rtol=1e-12, atol=1e-15)
    symmetric = wn.infinite_kernels(model, x)
    assert torch.allclose(symmetric.nngp, nngp, rtol=1e-12, atol=1e-15)
    assert torch.allclose(symmetric.ntk, ntk, rtol=1e-12, atol=1e-15)
