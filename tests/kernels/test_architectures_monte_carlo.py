"""Wide finite CNNs, ResNets and layer-normalized nets approach their infinite-width limits.

The same widenet.nn objects are the finite nets (sampled over seeds) and the limits
(widenet.infinite_kernels). Three statistical checks per architecture, tolerances in standard
errors over independent initializations (Z of them), so they pass for any seed:
- NNGP: the mean of f(x) f(x')^T over S inits estimates E[f f'] = Sigma + O(1/m); its standard
  error is about Sigma / sqrt(S), orders of magnitude above the O(1/m) finite-width bias at the
  widths used, so |mean - Sigma| <= Z se.
- NTK mean: the mean empirical NTK over S inits, E[K_m] = Theta + O(1/m), with standard error
  O(1 / sqrt(m S)); at m >> S the bias is a small fraction of it, so |mean - Theta| <= Z se.
- NTK concentration: the relative Frobenius error ||K_m - Theta|| / ||Theta|| of one init decays
  like m^-1/2: between widths 32 and 512 its mean falls by more than Z standard errors, and
  the slope of log(mean error) lies within Z standard errors (delta method) of -1/2, with 0.1
  for the O(1/m) curvature.
And the layer-wise empirical NTK (widenet's fast path, convolutions included) equals the
Jacobian one on every architecture.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

import widenet as wn
from tests.conftest import FULL
from widenet import nn as wnn
from widenet.kernels.result import Kernels

Z = 5.0
SIDE = 4  # images of 1 x 4 x 4
RELU_STD = math.sqrt(2.0)


def _conv(c_in: int, c_out: int, bias_std: float = 0.0) -> wnn.Conv2d:
    return wnn.Conv2d(c_in, c_out, 3, padding="same", weight_std=RELU_STD, bias_std=bias_std,
                      dtype=torch.float64)


def _relu() -> wnn.Activation:
    return wnn.Activation("relu")


def cnn_flatten(m: int, seed: int) -> torch.nn.Module:
    """Two convolutions with biases, flatten readout: only the position diagonal is needed."""
    return wnn.Sequential(_conv(1, m, 0.3), _relu(), _conv(m, m, 0.3), _relu(), wnn.Flatten(),
                          wnn.Dense(m * SIDE * SIDE, 1, weight_std=1.0, dtype=torch.float64),
                          seed=seed)


def cnn_pooling(m: int, seed: int) -> torch.nn.Module:
    """Local 2x2 average pooling, then global average pooling: full position covariances."""
    return wnn.Sequential(_conv(1, m), _relu(), wnn.AvgPool2d(2), _conv(m, m), _relu(),
                          wnn.GlobalAvgPool(),
                          wnn.Dense(m, 1, weight_std=1.0, dtype=torch.float64), seed=seed)


def resnet(m: int, seed: int) -> torch.nn.Module:
    """A convolution, two residual blocks x + 0.7 conv(relu(x)), then pooling and readout."""
    def block() -> wnn.Residual:
        return wnn.Residual(wnn.Sequential(_relu(), _conv(m, m)), alpha=0.7)
    return wnn.Sequential(_conv(1, m), block(), block(), _relu(), wnn.GlobalAvgPool(),
                          wnn.Dense(m, 1, weight_std=1.0, dtype=torch.float64), seed=seed)


def layer_norm_net(m: int, seed: int) -> torch.nn.Module:
    """Layer normalization over channels after each convolution (on pre-activations)."""
    return wnn.Sequential(_conv(1, m), wnn.LayerNorm(), _relu(), _conv(m, m), wnn.LayerNorm(),
                          _relu(), wnn.Flatten(),
                          wnn.Dense(m * SIDE * SIDE, 1, weight_std=1.0, dtype=torch.float64),
                          seed=seed)


def strided(m: int, seed: int) -> torch.nn.Module:
    """An even filter with strides (1, 2), a pool whose stride differs from its window, a
    strided circular convolution that pads one side only, global pooling after it."""
    return wnn.Sequential(wnn.Conv2d(1, m, 2, stride=(1, 2), weight_std=RELU_STD, bias_std=0.3,
                                     dtype=torch.float64), _relu(),
                          wnn.AvgPool2d((3, 1), stride=(1, 1)),
                          wnn.Conv2d(m, m, 3, stride=2, padding="circular", weight_std=RELU_STD,
                                     dtype=torch.float64), _relu(), wnn.GlobalAvgPool(),
                          wnn.Dense(m, 1, weight_std=1.0, dtype=torch.float64), seed=seed)


def post_norm_resnet(m: int, seed: int) -> torch.nn.Module:
    """Residual blocks x + 0.8 LN(conv(relu(x))) and a sum of a pooled convolution with a
    strided one: branches that end in maps odd in their own last layer's output, so
    uncorrelated with the other branch (they were refused)."""
    block = wnn.Residual(wnn.Sequential(_relu(), _conv(m, m, 0.2), wnn.LayerNorm()), alpha=0.8)
    pair = wnn.Sum([wnn.Sequential(_conv(m, m), wnn.AvgPool2d(2)),
                    wnn.Conv2d(m, m, 2, stride=2, weight_std=RELU_STD, dtype=torch.float64)])
    return wnn.Sequential(_conv(1, m), block, _relu(), pair, _relu(), wnn.GlobalAvgPool(),
                          wnn.Dense(m, 1, weight_std=1.0, dtype=torch.float64), seed=seed)


ARCHITECTURES: dict[str, Callable[[int, int], torch.nn.Module]] = {
    "cnn-flatten": cnn_flatten, "cnn-pooling": cnn_pooling, "resnet": resnet,
    "layer-norm": layer_norm_net, "strided": strided, "post-norm-resnet": post_norm_resnet}


def images(n: int = 3, seed: int = 0) -> torch.Tensor:
    """n images 1 x SIDE x SIDE of N(0, 1) pixels, float64."""
    return torch.randn(n, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def assert_within_standard_errors(samples: torch.Tensor, exact: torch.Tensor) -> None:
    """|mean of samples - exact| <= Z se, entry by entry (se = sample std / sqrt(S))."""
    mean = samples.mean(0)
    se = samples.std(0) / math.sqrt(samples.shape[0])
    excess = (mean - exact).abs() - Z * se - 1e-12
    assert float(excess.max()) <= 0, (f"off by {float((mean - exact).abs().max()):.3g}, "
                                      f"Z se up to {float(Z * se.max()):.3g}")


def limit(name: str, x: torch.Tensor) -> Kernels:
    return wn.infinite_kernels(ARCHITECTURES[name](4, 0), x)


@pytest.mark.slow
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_output_covariance_over_inits_is_the_nngp(name: str) -> None:
    x = images(seed=1)
    width, seeds = (256, 400) if FULL else (64, 150)
    products = []
    with torch.no_grad():
        for seed in range(seeds):
            f = ARCHITECTURES[name](width, seed)(x)[:, 0]
            products.append(torch.outer(f, f))
    assert_within_standard_errors(torch.stack(products), limit(name, x).nngp)


@pytest.mark.slow
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_mean_empirical_ntk_over_inits_is_the_ntk(name: str) -> None:
    x = images(seed=2)
    width, seeds = (1024, 24) if FULL else (256, 8)
    samples = torch.stack([wn.empirical_ntk(ARCHITECTURES[name](width, seed), x).ntk
                           for seed in range(seeds)])
    assert_within_standard_errors(samples, limit(name, x).ntk)


def relative_errors(name: str, width: int, x: torch.Tensor, theta: torch.Tensor,
                    seeds: range) -> torch.Tensor:
    errors = [torch.linalg.matrix_norm(wn.empirical_ntk(ARCHITECTURES[name](width, seed),
                                                        x).ntk - theta)
              for seed in seeds]
    return torch.stack(errors) / torch.linalg.matrix_norm(theta)


@pytest.mark.slow
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_empirical_ntk_concentrates_at_rate_one_over_sqrt_width(name: str) -> None:
    x = images(seed=3)
    theta = limit(name, x).ntk
    small, large, seeds = 32, 512, (32 if FULL else 12)
    narrow = relative_errors(name, small, x, theta, range(seeds))
    wide = relative_errors(name, large, x, theta, range(seeds, 2 * seeds))
    se_means = [float(e.std()) / math.sqrt(seeds) for e in (narrow, wide)]
    assert float(narrow.mean() - wide.mean()) > Z * math.hypot(*se_means), (narrow, wide)
    slope = math.log(float(wide.mean() / narrow.mean())) / math.log(large / small)
    # Delta method: se(log mean) = se(mean) / mean, for the two independent samples.
    se = math.hypot(*(se_mean / float(e.mean()) for se_mean, e in zip(se_means, (narrow, wide),
                                                                      strict=True)))
    se /= math.log(large / small)
    assert abs(slope + 0.5) <= Z * se + 0.1, (slope, se)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_layerwise_empirical_ntk_equals_the_jacobian_one(name: str) -> None:
    x, x2 = images(3, seed=4), images(2, seed=5)
    net = ARCHITECTURES[name](6, 1)
    for second in (None, x2):
        layerwise = wn.empirical_ntk(net, x, second, method="layerwise").ntk
        jacobian = wn.empirical_ntk(net, x, second, method="jacobian").ntk
        assert torch.allclose(layerwise, jacobian, rtol=1e-10, atol=1e-12)
