"""widenet.nn layers: forward passes, parametrizations, the weight_std rule, meta models."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

import widenet as wn
from widenet import nn as wnn


def test_conv_forward_matches_torch_padding_semantics() -> None:
    """'same' pads (k-1)//2 before and the rest after, 'circular' wraps, 'valid' does not pad;
    the NTK multiplier is sigma_w / sqrt(C k1 k2)."""
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    for padding, mode, pads in (("same", "constant", (1, 2, 0, 1)), ("circular", "circular",
                                                                      (1, 2, 0, 1)),
                                ("valid", "constant", (0, 0, 0, 0))):
        conv = wnn.Conv2d(3, 4, (2, 4), padding=padding, weight_std=1.3, bias_std=0.2,
                          dtype=torch.float64)
        expected = F.conv2d(F.pad(x, pads, mode=mode), conv.weight) * 1.3 / math.sqrt(3 * 8)
        expected = expected + 0.2 * conv.bias.view(-1, 1, 1)
        assert torch.allclose(conv(x), expected)
    assert wnn.Conv2d(3, 4, 3, stride=2)(x.float()).shape == (2, 4, 3, 3)
    assert wnn.Conv1d(3, 4, 3, padding="valid")(x[:, :, 0].float()).shape == (2, 4, 3)


def test_standard_parametrization_draws_scaled_weights() -> None:
    conv = wnn.Conv1d(50, 64, 4, weight_std=2.0, parametrization="standard", dtype=torch.float64)
    assert conv.weight_multiplier == 1.0
    expected = 2.0 / math.sqrt(200)
    spread = 5 * expected / math.sqrt(conv.weight.numel())
    assert abs(float(conv.weight.detach().std()) - expected) < spread


def test_weight_std_rule_follows_the_next_activation() -> None:
    net = wnn.Sequential(wnn.Conv2d(1, 4, 3), wnn.Activation("relu"),
                         wnn.Conv2d(4, 4, 3, bias_std=0.5), wnn.Activation("tanh"),
                         wnn.GlobalAvgPool(), wnn.Dense(4, 2), wnn.Dense(2, 1, weight_std=0.7))
    assert net[0].weight_std == pytest.approx(math.sqrt(2))
    assert net[2].weight_std == pytest.approx(wn.activations.tanh.edge_of_chaos(0.5))
    assert net[5].weight_std == pytest.approx(wn.activations.tanh.edge_of_chaos(0.0))
    assert net[6].weight_std == 0.7
    assert wnn.Sequential(wnn.Dense(3, 2))[0].weight_std == 1.0


def test_sequential_seed_is_reproducible() -> None:
    make = lambda: wnn.Sequential(wnn.Conv1d(2, 3, 3), wnn.Activation("relu"),  # noqa: E731
                                  wnn.Flatten(), wnn.Dense(12, 1), seed=5)
    x = torch.randn(4, 2, 4)
    assert torch.equal(make()(x), make()(x))


def test_residual_sum_layer_norm_and_pooling_forward() -> None:
    x = torch.randn(3, 4, 6, 6)
    branch = wnn.Sequential(wnn.Conv2d(4, 4, 3), wnn.Activation("relu"), wnn.Conv2d(4, 4, 3))
    assert torch.allclose(wnn.Residual(branch, 0.0)(x), x)
    total = wnn.Sum([torch.nn.Identity(), branch], [2.0, 0.5])(x)
    assert torch.allclose(total, 2.0 * x + 0.5 * branch(x))
    normed = wnn.LayerNorm(eps=0.0)(x)
    assert torch.allclose(normed.mean(dim=1), torch.zeros(3, 6, 6), atol=1e-5)
    assert torch.allclose(normed.pow(2).mean(dim=1), torch.ones(3, 6, 6), atol=1e-4)
    assert torch.allclose(wnn.AvgPool2d(2)(x), F.avg_pool2d(x, 2))
    assert torch.allclose(wnn.GlobalAvgPool()(x), x.mean(dim=(2, 3)))
    assert wnn.Flatten()(x).shape == (3, 144)


def test_meta_models_build_without_storage() -> None:
    net = wnn.Sequential(wnn.Conv2d(3, 10**6, 3, device="meta"), wnn.Activation("relu"),
                         wnn.GlobalAvgPool(), wnn.Dense(10**6, 1, device="meta"))
    assert net[0].weight.is_meta
    assert net[0].weight.shape == (10**6, 3, 3, 3)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: wnn.Conv2d(3, 4, 3, padding="reflect"), "padding must be one of"),
    (lambda: wnn.Conv2d(3, 4, (3, 3, 3)), "kernel_size needs 2 values"),
    (lambda: wnn.Conv1d(3, 4, 0), "kernel_size must be a positive integer"),
    (lambda: wnn.Dense(3, 4, parametrization="mean-field"),
     "take parametrization 'ntk' or 'standard'"),
    (lambda: wnn.Dense(3, 4, weight_std=-1.0), "weight_std"),
    (lambda: wnn.Sum([]), "at least one branch"),
    (lambda: wnn.Sum([torch.nn.Identity()], [1.0, 2.0]), "1 branches but 2 weights"),
    (lambda: wnn.AvgPool2d((2, 2, 2)), "window needs 2 values"),
    (lambda: wnn.Dense(3, 4, dtype=torch.int64), "floating-point torch dtype"),
    (lambda: wnn.Conv2d(3, 4, 3, dtype="float64"), "floating-point torch dtype"),
])
def test_bad_layer_arguments(make, message: str) -> None:
    with pytest.raises(wn.WidenetError, match=message):
        make()


def test_conv_rejects_inputs_of_the_wrong_shape() -> None:
    with pytest.raises(wn.WidenetError, match=r"expects inputs \(N, 3, H, W\)"):
        wnn.Conv2d(3, 4, 3)(torch.randn(2, 5, 4, 4))


@pytest.mark.parametrize(("padding", "mode"), [("same", "constant"), ("circular", "circular")])
def test_strided_same_padding_follows_tensorflow_and_jax(padding: str, mode: str) -> None:
    """With stride s, "same" and "circular" give ceil(n / s) outputs and pad t = (ceil(n / s)
    - 1) s + k - n, t // 2 before (neural-tangents' SAME and CIRCULAR): a 3 x 2 filter with
    strides (2, 4) on 8 x 6 images pads rows by (0, 1) and columns by (0, 0); a filter of 3 with
    stride 4 on 6 positions pads by (0, 1)."""
    x = torch.randn(2, 3, 8, 6, dtype=torch.float64)
    conv = wnn.Conv2d(3, 4, (3, 2), stride=(2, 4), padding=padding, weight_std=1.3, bias_std=0.2,
                      dtype=torch.float64)
    expected = F.conv2d(F.pad(x, (0, 0, 0, 1), mode=mode), conv.weight, stride=(2, 4))
    expected = expected * 1.3 / math.sqrt(3 * 6) + 0.2 * conv.bias.view(-1, 1, 1)
    assert torch.allclose(conv(x), expected)
    conv = wnn.Conv1d(3, 4, 3, stride=4, padding=padding, dtype=torch.float64)
    expected = F.conv1d(F.pad(x[:, :, 0], (0, 1), mode=mode), conv.weight, stride=4)
    assert torch.allclose(conv(x[:, :, 0]), expected / math.sqrt(3 * 3))


def test_weight_std_rule_sees_the_whole_model_through_nested_sequentials() -> None:
    """A Sequential inside another one resolved weight_std=None before it knew what runs after
    it; the enclosing Sequential applies the rule again, keeping the seeded draws."""
    erf = wn.activations.erf.edge_of_chaos(0.0)
    stem = wnn.Sequential(wnn.Conv2d(1, 4, 3, parametrization="standard"), seed=3)
    drawn = stem[0].weight.detach().clone()
    net = wnn.Sequential(stem, wnn.Activation("erf"), wnn.GlobalAvgPool(), wnn.Dense(4, 1))
    assert stem[0].weight_std == pytest.approx(erf)
    assert torch.allclose(stem[0].weight.detach(), drawn * erf,  # not redrawn
                          rtol=torch.finfo(torch.float32).eps, atol=0)
    branch = wnn.Sequential(wnn.Activation("relu"), wnn.Conv2d(4, 4, 3, weight_std=0.5),
                            wnn.Activation("relu"), wnn.Conv2d(4, 4, 3))
    net = wnn.Sequential(wnn.Conv2d(1, 4, 3), wnn.Residual(branch), wnn.Activation("erf"),
                         wnn.GlobalAvgPool(), wnn.Dense(4, 1))
    assert branch[3].weight_std == pytest.approx(erf)  # the next activation runs after the sum
    assert branch[1].weight_std == 0.5  # given: kept
    assert net[0].weight_std == pytest.approx(math.sqrt(2))
    assert net[4].weight_std == pytest.approx(erf)


@pytest.mark.parametrize(("dtype", "old", "new"), [
    (torch.float32, 1e-30, 1e10), (torch.float32, 1e-45, 1.0), (torch.float64, 1e-30, 1e300),
    (torch.float64, 5e-324, 1.0), (torch.float16, 1e-3, 1.0), (torch.float16, 0.01, 1.0)])
def test_a_new_weight_std_gives_a_finite_draw_of_the_new_std(dtype: torch.dtype, old: float,
                                                              new: float) -> None:
    """set_weight_std turns the draw of the old std into one of the new std, even when the
    ratio overflows the dtype or the old draw underflowed (inf and NaN weights before). The
    std of the 10^4 entries is within 5 standard errors (1/sqrt(2 * 10^4) relative) of
    new / sqrt(fan-in)."""
    dense = wnn.Dense(1000, 10, weight_std=old, parametrization="standard", dtype=dtype)
    dense.set_weight_std(new)
    weight = dense.weight.detach().double()
    assert weight.isfinite().all()
    ratio = (weight / (new / math.sqrt(1000))).pow(2).mean().sqrt().item()
    assert abs(ratio - 1) < 5 / math.sqrt(2 * 10**4)
