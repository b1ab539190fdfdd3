"""infinite_kernels beyond the MLP: exact identities, torch models, memory budget, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import widenet as wn
from widenet import nn as wnn
from widenet.kernels import infinite


def images(n: int, channels: int, *size: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, channels, *size, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(seed))


def assert_same_kernels(a: wn.Kernels, b: wn.Kernels, rtol: float = 1e-12) -> None:
    assert torch.allclose(a.nngp, b.nngp, rtol=rtol, atol=0)
    assert torch.allclose(a.ntk, b.ntk, rtol=rtol, atol=0)


@pytest.mark.parametrize("readout", ["flatten", "pool"])
def test_one_by_one_convolutions_on_one_pixel_are_the_mlp(readout: str) -> None:
    """A 1x1 conv on 1x1 images is a dense layer; on one position flatten and global pooling
    agree: both CNNs have the MLP's kernels."""
    x = images(6, 3, 1, 1).flatten(1)
    mlp = wn.MLP(3, [4, 4], 1, "tanh", bias_std=0.3)
    std = mlp.weight_std
    head = [wnn.Flatten()] if readout == "flatten" else [wnn.GlobalAvgPool()]
    cnn = wnn.Sequential(wnn.Conv2d(3, 4, 1, weight_std=std, bias_std=0.3), wnn.Activation("tanh"),
                         wnn.Conv2d(4, 4, 1, weight_std=std, bias_std=0.3), wnn.Activation("tanh"),
                         *head, wnn.Dense(4, 1, weight_std=std, bias_std=0.3))
    assert_same_kernels(wn.infinite_kernels(cnn, x.view(6, 3, 1, 1)), wn.infinite_kernels(mlp, x))


@pytest.mark.parametrize("dims", [1, 2])
def test_a_filter_covering_the_input_is_a_dense_layer(dims: int) -> None:
    size = (5,) if dims == 1 else (4, 3)
    x = images(5, 2, *size, seed=1)
    conv = (wnn.Conv1d if dims == 1 else wnn.Conv2d)(2, 7, size, padding="valid", bias_std=0.2)
    as_conv = wnn.Sequential(conv, wnn.Activation("relu"), wnn.Flatten(), wnn.Dense(7, 1))
    as_dense = wnn.Sequential(wnn.Flatten(), wnn.Dense(2 * 5 if dims == 1 else 24, 7,
                                                       bias_std=0.2),
                              wnn.Activation("relu"), wnn.Dense(7, 1))
    assert_same_kernels(wn.infinite_kernels(as_conv, x), wn.infinite_kernels(as_dense, x))


def test_a_residual_branch_with_alpha_zero_is_the_identity() -> None:
    x = images(5, 2, 5, 5, seed=2)
    stem = [wnn.Conv2d(2, 4, 3, bias_std=0.1), wnn.Activation("relu")]
    branch = wnn.Sequential(wnn.Conv2d(4, 4, 3), wnn.Activation("relu"), wnn.Conv2d(4, 4, 3))
    head = [wnn.AvgPool2d(2), wnn.Flatten(), wnn.Dense(16, 1)]
    with_branch = wn.infinite_kernels(
        wnn.Sequential(*stem, wnn.Residual(branch, alpha=0.0), *head), x, per_layer=True)
    without = wn.infinite_kernels(wnn.Sequential(*stem, *head), x)
    assert_same_kernels(with_branch, without, rtol=1e-13)
    assert float(with_branch.blocks["2.branch.0.weight"].abs().max()) == 0.0


def test_sum_adds_weighted_kernels_of_uncorrelated_branches() -> None:
    """Sigma_out = a^2 Sigma_1 + b^2 Sigma_2 for two branches ending in their own convs."""
    x = images(4, 2, 6, seed=3)
    make = lambda: [wnn.Conv1d(2, 3, 3, bias_std=0.2), wnn.Activation("erf")]  # noqa: E731
    one, two = wnn.Sequential(*make()), wnn.Sequential(*make())
    model = wnn.Sequential(wnn.Sum([one, two], [0.6, 1.5]), wnn.GlobalAvgPool(), wnn.Dense(3, 1))
    # Each branch ends in an activation, so they are correlated: refused.
    with pytest.raises(wn.WidenetError, match="do not end in a weighted layer"):
        wn.infinite_kernels(model, x)
    # a layer norm of the sum's input is as correlated with the skip as the input itself
    for branch in (wnn.LayerNorm(), wnn.Sequential(wnn.Conv1d(3, 3, 1), wnn.Activation("relu"),
                                                   wnn.AvgPool1d(1))):
        with pytest.raises(wn.WidenetError, match="do not end in a weighted layer"):
            wn.infinite_kernels(wnn.Sequential(wnn.Conv1d(2, 3, 3), wnn.Residual(branch),
                                               wnn.GlobalAvgPool(), wnn.Dense(3, 1)), x)
    convs = [wnn.Conv1d(2, 3, 3, bias_std=0.2), wnn.Conv1d(2, 3, 3, weight_std=2.0)]
    summed = wn.infinite_kernels(wnn.Sequential(wnn.Sum(convs, [0.6, 1.5]), wnn.GlobalAvgPool(),
                                                wnn.Dense(3, 1, weight_std=1.0)), x)
    parts = [wn.infinite_kernels(wnn.Sequential(conv, wnn.GlobalAvgPool(),
                                                wnn.Dense(3, 1, weight_std=1.0)), x)
             for conv in convs]
    expected = 0.36 * parts[0].nngp + 2.25 * parts[1].nngp
    assert torch.allclose(summed.nngp, expected, rtol=1e-12)


def test_per_layer_sigma_dot_of_parallel_dense_branches() -> None:
    """Two dense branches after one activation each record their own sigma_w^2 Kdot (they
    shared the activation's Kdot and scaled it in place: both read 36 Kdot for stds 2 and 3)."""
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    model = wnn.Sequential(wnn.Dense(4, 8, weight_std=1.0), wnn.Activation("relu"),
                           wnn.Sum([wnn.Dense(8, 8, weight_std=2.0),
                                    wnn.Dense(8, 8, weight_std=3.0)]))
    k = wn.infinite_kernels(model, x, per_layer=True)
    sigma = k.layers.sigma[0]
    q = sigma.diagonal()
    kdot = wn.activations.relu.derivative_dual(q[:, None], q[None, :], sigma)
    for recorded, weight_var in zip(k.layers.sigma_dot, (4.0, 9.0), strict=True):
        assert torch.allclose(recorded, weight_var * kdot, rtol=1e-12, atol=0)


def test_layer_norm_divides_by_the_variances() -> None:
    x = images(4, 3, 5, 5, seed=4)
    conv = wnn.Conv2d(3, 4, 3, bias_std=0.3)
    model = wnn.Sequential(conv, wnn.LayerNorm(eps=0.0), wnn.Conv2d(4, 4, 1, weight_std=1.0),
                           wnn.GlobalAvgPool(), wnn.Dense(4, 1))
    layers = wn.infinite_kernels(model, x, per_layer=True).layers
    k = layers.sigma[0].reshape(4, 4, 25, 25)
    q = torch.stack([k[a, a].diagonal() for a in range(4)])  # (n, P)
    expected = k / (q[:, None, :, None] * q[None, :, None, :]).sqrt()
    assert torch.allclose(layers.sigma[1].reshape(4, 4, 25, 25), expected, rtol=1e-12)
    with pytest.raises(wn.WidenetError, match="not zero-mean"):
        wn.infinite_kernels(wnn.Sequential(conv, wnn.Activation("relu"), wnn.LayerNorm(),
                                           wnn.GlobalAvgPool(), wnn.Dense(4, 1)), x)


def test_erf_cnn_on_huge_float32_images() -> None:
    """Pixels of 1e10 (variances 1e20): erf's duals overflowed in float32 (q1 q2 > 3e38) and
    the kernel was refused as 'overflowed', though erf is bounded; it matches float64."""
    x = 1e10 * images(3, 1, 4, 4, seed=13)
    model = wnn.Sequential(wnn.Conv2d(1, 3, 3), wnn.Activation("erf"), wnn.Conv2d(3, 3, 3),
                           wnn.Activation("erf"), wnn.GlobalAvgPool(), wnn.Dense(3, 1))
    single = wn.infinite_kernels(model, x.float()).ntk.double()
    assert torch.allclose(single, wn.infinite_kernels(model, x).ntk, rtol=1e-5, atol=0)


def test_layer_norm_without_eps_is_scale_free_down_to_subnormal_variances() -> None:
    """eps = 0: K(s x) = K(x), also in float32 at s = 1e-20 (variances 1e-40, where
    1/sqrt(q1) 1/sqrt(q2) overflowed: an 'overflowed' error); a zero image keeps a zero row."""
    x = images(4, 2, 4, 4, seed=12)
    x[1] = 0.0
    model = wnn.Sequential(wnn.Conv2d(2, 3, 3, weight_std=1.4), wnn.LayerNorm(eps=0.0),
                           wnn.Activation("relu"), wnn.GlobalAvgPool(), wnn.Dense(3, 1))
    exact = wn.infinite_kernels(model, x).ntk
    assert bool((exact[1] == 0).all())
    tiny = wn.infinite_kernels(model, (1e-20 * x).float()).ntk.double()
    assert torch.allclose(tiny, exact, rtol=1e-4, atol=0)


def small_cnn(torch_layers: bool) -> nn.Module:
    if torch_layers:
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                             nn.Conv2d(8, 8, 3, padding=1, padding_mode="circular"), nn.Tanh(),
                             nn.Conv2d(8, 8, 3, padding="valid"), nn.GELU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    return wnn.Sequential(wnn.Conv2d(1, 8, 3, weight_std=1.3, bias_std=0.2),
                          wnn.Activation("relu"), wnn.AvgPool2d(2),
                          wnn.Conv2d(8, 8, 3, padding="circular", weight_std=1.3, bias_std=0.2),
                          wnn.Activation("tanh"),
                          wnn.Conv2d(8, 8, 3, padding="valid", weight_std=1.3, bias_std=0.2),
                          wnn.Activation("gelu"), wnn.GlobalAvgPool(), nn.Identity(),
                          wnn.Dense(8, 2, weight_std=1.3, bias_std=0.2))


def test_a_torch_model_has_the_kernels_of_its_widenet_twin() -> None:
    x = images(5, 1, 8, 8, seed=5)
    ours = wn.infinite_kernels(small_cnn(False), x, per_layer=True)
    theirs = wn.infinite_kernels(small_cnn(True), x, weight_std=1.3, bias_std=0.2,
                                 per_layer=True)
    assert_same_kernels(ours, theirs, rtol=1e-13)
    assert list(theirs.blocks) == [name for name, _ in small_cnn(True).named_parameters()]
    assert torch.allclose(sum(theirs.blocks.values()), theirs.ntk, rtol=1e-13)
    assert ours.outputs == theirs.outputs == 2


def test_adaptive_pooling_to_one_position_in_every_spelling() -> None:
    """torch keeps output_size as given: 1, (1, 1) and [1, 1] are global pooling alike (the
    list was refused as 'output_size=[1, 1]; infinite_kernels covers output size 1')."""
    x = images(3, 2, 4, 5, seed=15)
    kernels = [wn.infinite_kernels(nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(),
                                                 nn.AdaptiveAvgPool2d(size), nn.Flatten(),
                                                 nn.Linear(3, 1)), x)
               for size in (1, (1, 1), [1, 1])]
    for other in kernels[1:]:
        assert_same_kernels(other, kernels[0], rtol=0)


def test_per_layer_torch_stds_and_standard_parametrization() -> None:
    x = images(3, 4, seed=6).flatten(1)[:, :4]
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    per_layer = wn.infinite_kernels(model, x, weight_std={"0": 1.0, "2": 2.0}, bias_std=0.1)
    mlp_like = wnn.Sequential(wnn.Dense(4, 8, weight_std=1.0, bias_std=0.1),
                              wnn.Activation("relu"), wnn.Dense(8, 1, weight_std=2.0,
                                                                bias_std=0.1))
    assert_same_kernels(per_layer, wn.infinite_kernels(mlp_like, x))
    with pytest.raises(wn.WidenetError, match=r"names '1', which are not torch weighted layers"):
        wn.infinite_kernels(model, x, weight_std={"0": 1.0, "1": 2.0})
    # a layer the dicts do not name gets the defaults: the rule's std, no bias (a missing
    # bias_std entry raised "bias_std of 2 must be a finite real number, got None")
    partial = wn.infinite_kernels(model, x, weight_std={"2": 2.0}, bias_std={"0": 0.1})
    mlp_like = wnn.Sequential(wnn.Dense(4, 8, bias_std=0.1), wnn.Activation("relu"),
                              wnn.Dense(8, 1, weight_std=2.0))
    assert_same_kernels(partial, wn.infinite_kernels(mlp_like, x))
    default = wn.infinite_kernels(model, x)  # weight_std None: relu's edge of chaos, sqrt(2)
    assert torch.allclose(default.nngp, wn.infinite_kernels(wn.MLP(4, [8], 1), x).nngp)
    standard = wn.infinite_kernels(model, x, parametrization="standard")
    assert torch.equal(standard.nngp, default.nngp)
    with pytest.raises(wn.WidenetError, match="no finite infinite-width NTK"):
        _ = standard.ntk


@pytest.mark.parametrize("readout", ["flatten", "pool"])
def test_symmetric_psd_blocking_and_rectangles(readout: str) -> None:
    x = images(9, 2, 6, 6, seed=7)
    head = [wnn.Flatten(), wnn.Dense(4 * 36, 1)] if readout == "flatten" else \
        [wnn.AvgPool2d(3), wnn.Flatten(), wnn.Dense(16, 1)]
    model = wnn.Sequential(wnn.Conv2d(2, 4, 3, bias_std=0.2), wnn.Activation("relu"),
                           wnn.Conv2d(4, 4, 3), wnn.Activation("abs"), *head)
    reference = wn.infinite_kernels(model, x)
    for matrix in (reference.nngp, reference.ntk):
        assert torch.equal(matrix, matrix.T)
        assert float(torch.linalg.eigvalsh(matrix)[0]) > -1e-13 * float(matrix.max())
    for block in (1, 4, 9):
        blocked = wn.infinite_kernels(model, x, block_size=block)
        assert torch.allclose(blocked.ntk, reference.ntk, rtol=1e-13)
        assert torch.equal(blocked.ntk, blocked.ntk.T)
    part = wn.infinite_kernels(model, x[:4], x[4:], block_size=3)
    assert torch.allclose(part.ntk, reference.ntk[:4, 4:], rtol=1e-12)


def test_a_limit_never_allocates_a_width_sized_weight() -> None:
    """A CNN of width 10^6 built on the meta device has the kernels of the same CNN at width 8."""
    def cnn(width: int, device: str | None) -> nn.Module:
        return wnn.Sequential(wnn.Conv2d(1, width, 3, device=device), wnn.Activation("relu"),
                              wnn.Conv2d(width, width, 3, device=device), wnn.Activation("relu"),
                              wnn.GlobalAvgPool(), wnn.Dense(width, 1, device=device))
    x = images(4, 1, 5, 5, seed=8)
    assert_same_kernels(wn.infinite_kernels(cnn(10**6, "meta"), x),
                        wn.infinite_kernels(cnn(8, None), x), rtol=0)


def test_float32_inputs_give_float32_kernels() -> None:
    x = images(4, 1, 6, 6, seed=9)
    model = small_cnn(False)
    single = wn.infinite_kernels(model, x.float())
    assert single.ntk.dtype == torch.float32
    assert torch.allclose(single.ntk.double(), wn.infinite_kernels(model, x).ntk, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_images_give_the_kernels_rounded_once(dtype: torch.dtype) -> None:
    """float16 and bfloat16 images give kernels in their dtype within one unit (eps, relative)
    of the float64 kernels of the same images: worked in the half type through three
    convolutions, a pool and the duals, the NNGP was off by 4.6 (float16) and 4.9 (bfloat16)
    units, 0.4% and 4%; rounded once, by 0.35."""
    x = images(6, 3, 8, 8, seed=15).to(dtype)
    model = wnn.Sequential(wnn.Conv2d(3, 3, 3, bias_std=0.1), wnn.Activation("relu"),
                           wnn.Conv2d(3, 3, 3), wnn.Activation("relu"), wnn.AvgPool2d(2),
                           wnn.Conv2d(3, 3, 3), wnn.Activation("erf"), wnn.GlobalAvgPool(),
                           wnn.Dense(3, 1))
    half, exact = wn.infinite_kernels(model, x), wn.infinite_kernels(model, x.double())
    assert half.ntk.dtype == dtype
    unit = torch.finfo(dtype).eps
    for kernel, reference in ((half.nngp, exact.nngp), (half.ntk, exact.ntk)):
        assert bool(((kernel.double() - reference).abs() <= unit * reference.abs()).all())


@pytest.mark.parametrize("scale", [1e-20, 1e-22])
def test_tiny_float32_images_give_finite_scaled_kernels(scale: float) -> None:
    """Bias-free ReLU CNN: K(s x) = s^2 K(x). At s = 1e-20 the float32 variances are subnormal
    (1e-40), where 1 / sqrt(q1 q2) overflowed: NaN rho, then an 'overflowed' error."""
    x = images(4, 1, 4, 4, seed=10)
    x[1] = 0.0
    model = wnn.Sequential(wnn.Conv2d(1, 4, 3, weight_std=2**0.5), wnn.Activation("relu"),
                           wnn.GlobalAvgPool(), wnn.Dense(4, 1))
    exact = wn.infinite_kernels(model, x).ntk * scale**2
    tiny = wn.infinite_kernels(model, (scale * x).float()).ntk.double()
    assert bool(torch.isfinite(tiny).all())
    # float32's subnormals hold about 1e-45 absolutely
    assert torch.allclose(tiny, exact, rtol=1e-5, atol=1e-44)


@pytest.mark.parametrize(("model", "x", "message"), [
    (wnn.Sequential(wnn.Conv2d(1, 4, 5, padding="valid"), wnn.Flatten(), wnn.Dense(4, 1)),
     images(2, 1, 3, 3), "window of 5 along an axis of only 3 positions; use larger inputs or "
     "a smaller filter or 'same' padding"),
    (wnn.Sequential(wnn.AvgPool2d(4), wnn.Flatten(), wnn.Dense(1, 1)), images(2, 1, 3, 3),
     "window of 4 along an axis of only 3 positions; use larger inputs or a smaller window$"),
    (wnn.Sequential(wnn.Conv2d(3, 4, 3), wnn.GlobalAvgPool(), wnn.Dense(4, 1)),
     images(2, 1, 4, 4), "expects 3 channels"),
    (wnn.Sequential(wnn.Conv2d(1, 4, 3), wnn.Dense(4, 1)), images(2, 1, 4, 4),
     "put a Flatten or a global average pooling before it"),
    (wnn.Sequential(wnn.Conv2d(1, 4, 3), wnn.Flatten(), wnn.Dense(5, 1)), images(2, 1, 4, 4),
     "expects 5 features"),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(16, 1)),
     images(2, 1, 4, 4), r"does not support BatchNorm2d \(at '1'\); supported modules: .*Conv2d"),
    (nn.Sequential(nn.Conv2d(1, 4, 3, dilation=2)), images(2, 1, 4, 4), "dilation=1"),
    (nn.Sequential(nn.Conv2d(1, 4, 3, padding_mode="reflect", padding=1)), images(2, 1, 4, 4),
     "padding_mode='reflect'"),
    (nn.Sequential(nn.AdaptiveAvgPool2d(2)), images(2, 1, 4, 4), "output size 1"),
    (nn.Sequential(nn.Conv1d(1, 4, 3), nn.AdaptiveAvgPool2d(1)), images(2, 1, 4),
     r"AdaptiveAvgPool2d '1' needs inputs with 2 spatial axes, gets 4-channel 2 maps"),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool1d(1)), images(2, 1, 4, 4),
     "AdaptiveAvgPool1d '1' needs inputs with 1 spatial axes"),
    (nn.Sequential(nn.Linear(3, 4), nn.AdaptiveAvgPool1d(1)), images(2, 3),
     "AdaptiveAvgPool1d '1' needs inputs with 1 spatial axes, gets vectors of 4 features"),
    (nn.Sequential(nn.AvgPool2d(2, divisor_override=3)), images(2, 1, 4, 4),
     "divisor_override=None"),
    (nn.Sequential(nn.Conv2d(1, 4, 3, padding=3, padding_mode="circular")), images(2, 1, 2, 2),
     "Conv2d '0' pads circularly by 3 along an axis of only 2 positions"),
    (wnn.Sequential(wnn.Conv2d(1, 1, 1), wnn.Conv2d(1, 4, 5, padding="circular")),
     images(2, 1, 1, 1), "Conv2d '1' pads circularly by 2 along an axis of only 1 positions"),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.ReLU(), nn.Flatten(), nn.Linear(16, 1)),
     images(2, 1, 4, 4), r"activation 'relu' at '2' gets inputs that are not Gaussian"),
    (nn.Sequential(nn.Tanh(), nn.Conv2d(1, 4, 3)), images(2, 1, 4, 4),
     r"activation 'tanh' at '0' .* put a weighted layer before it"),
    (nn.ReLU(), images(2, 1, 4, 4), r"^activation 'relu' gets inputs that are not Gaussian"),
    (nn.Sequential(nn.Flatten(), nn.Linear(8, 1)), images(2, 1, 2, 2, 2),
     r"x1 must be \(n, d\) vectors, \(n, C, L\) sequences or \(n, C, H, W\) images, got "
     r"shape \(2, 1, 2, 2, 2\)"),
])
def test_bad_architectures_and_inputs(model: nn.Module, x: torch.Tensor, message: str) -> None:
    with pytest.raises(wn.WidenetError, match=message):
        wn.infinite_kernels(model, x)


def test_activations_need_gaussian_inputs_unless_linear() -> None:
    """A ReLU of a ReLU is the ReLU, but the duals composed as if its input were Gaussian gave
    half its kernel, and a ReLU of the raw input the arc-cosine kernel of K0 instead of
    <relu(x), relu(x')>: both are refused; a linear activation is exact on any input."""
    x = images(3, 4, seed=11)
    linear = wnn.Activation(wn.activations.ab(0.7, 0.0))
    scaled = nn.Sequential(linear, nn.Linear(4, 4), linear, nn.ReLU(), nn.Linear(4, 1))
    plain = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    assert_same_kernels(wn.infinite_kernels(scaled, x, weight_std=1.3),
                        wn.infinite_kernels(plain, 0.49 * x, weight_std=1.3))
    relu_of_relu = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), linear, nn.ReLU(), nn.Linear(4, 1))
    with pytest.raises(wn.WidenetError, match=r"activation 'relu' at '3' gets inputs that are "):
        wn.infinite_kernels(relu_of_relu, x)


def test_a_sum_with_the_raw_input_keeps_the_input_width() -> None:
    """x + alpha Dense(x) has the input's finite width d, so a layer after it is Gaussian only
    given the branch's weights. Linear maps keep exact second moments, NNGP = w2 (K0 +
    alpha^2 (w1 K0 + b1)); a tanh after such a layer was accepted and wrong (d = 1, x = 0.3:
    0.409, Monte Carlo at width 2048 over 3000 draws 0.309 +- 0.012), as was a layer norm."""
    x = images(3, 4, seed=16)
    residual = wnn.Residual(wnn.Dense(4, 4, weight_std=1.1, bias_std=0.3), alpha=0.5)
    nngp = wn.infinite_kernels(wnn.Sequential(residual, wnn.Dense(4, 1, weight_std=1.2)), x).nngp
    k0 = x @ x.T / 4
    assert torch.allclose(nngp, 1.44 * (k0 + 0.25 * (1.21 * k0 + 0.09)), rtol=1e-14, atol=0)
    for after in (wnn.Activation("tanh"), wnn.LayerNorm()):
        model = wnn.Sequential(wnn.Residual(wnn.Dense(4, 4), alpha=0.5), wnn.Dense(4, 8), after,
                               wnn.Dense(8, 1))
        with pytest.raises(wn.WidenetError, match=r"the raw input plus a random branch.*; put "
                                                  r"a weighted layer \(a stem\) before the sum"):
            wn.infinite_kernels(model, x)


def test_shared_weights_are_refused() -> None:
    conv = wnn.Conv1d(2, 2, 3)
    with pytest.raises(wn.WidenetError, match="used twice"):
        wn.infinite_kernels(nn.Sequential(conv, wnn.Activation("relu"), conv), images(2, 2, 5))
    tied = nn.Linear(8, 8)
    tied.weight = (first := nn.Linear(8, 8)).weight
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), first, nn.ReLU(), tied, nn.ReLU(),
                          nn.Linear(8, 1))
    with pytest.raises(wn.WidenetError, match=r"4.weight is also a parameter of '2' \(tied"):
        wn.infinite_kernels(model, images(2, 4))


def test_memory_budget() -> None:
    x = images(6, 1, 6, 6)
    model = wnn.Sequential(wnn.Conv2d(1, 4, 3), wnn.Activation("relu"), wnn.GlobalAvgPool(),
                           wnn.Dense(4, 1))
    with pytest.raises(wn.WidenetError, match=r"memory_budget=1000 bytes is smaller than one "
                                              r"pair of inputs needs \((\d+) bytes"):
        wn.infinite_kernels(model, x, memory_budget=1000)
    with pytest.raises(wn.WidenetError, match="memory_budget must be a positive integer"):
        wn.infinite_kernels(model, x, memory_budget=0)
    tight = wn.infinite_kernels(model, x, memory_budget=2**20)
    assert torch.allclose(tight.ntk, wn.infinite_kernels(model, x).ntk, rtol=1e-13)


def test_empirical_ntk_keeps_its_layerwise_path_on_convolutions() -> None:
    x = images(4, 2, 6, 6, seed=10)
    net = wnn.Sequential(wnn.Conv2d(2, 6, 3, bias_std=0.2), wnn.Activation("relu"),
                         wnn.AvgPool2d(2), wnn.Conv2d(6, 6, (3, 2), padding="circular"),
                         wnn.Activation("tanh"), wnn.Conv2d(6, 6, 2, stride=2, padding="valid"),
                         wnn.GlobalAvgPool(), wnn.Dense(6, 2), seed=0).double()
    layerwise = wn.empirical_ntk(net, x, method="layerwise").ntk
    assert torch.allclose(layerwise, wn.empirical_ntk(net, x, method="jacobian").ntk, rtol=1e-12)


def offset_matrices(conv: nn.Conv2d, size: tuple[int, int]) -> list[torch.Tensor]:
    """For each filter offset delta, the (P_out, P_in) matrix that torch's convolution with a
    one-hot filter at delta applies to one channel (its padding and stride included)."""
    units = torch.eye(size[0] * size[1], dtype=torch.float64).view(-1, 1, *size)
    if conv.padding_mode == "circular":
        pads = [p for p in reversed(conv.padding) for _ in (0, 1)]
        units, padding = F.pad(units, pads, mode="circular"), 0
    else:
        padding = conv.padding
    matrices = []
    for delta in range(conv.kernel_size[0] * conv.kernel_size[1]):
        filter_ = torch.zeros(conv.kernel_size[0] * conv.kernel_size[1], dtype=torch.float64)
        filter_[delta] = 1.0
        out = F.conv2d(units, filter_.view(1, 1, *conv.kernel_size), stride=conv.stride,
                       padding=padding)
        matrices.append(out.flatten(1).T)
    return matrices


@pytest.mark.parametrize(("kernel", "stride", "padding", "mode", "size"), [
    (3, 2, 1, "zeros", (5, 7)), ((2, 3), (3, 1), (0, 1), "zeros", (4, 5)),
    (3, 1, 1, "circular", (3, 4)), (4, 2, 2, "zeros", (3, 3)), (5, 3, 2, "zeros", (2, 2))])
def test_torch_cnns_against_joint_covariances(kernel, stride, padding, mode, size) -> None:
    """conv, relu, conv 1x1, relu, global pooling, linear on odd sizes, strides and paddings,
    against the covariance of all n P pre-activations at once: Sigma' = (w / |N|) sum_delta
    S_delta Sigma S_delta^T + b with S_delta from torch's own convolution, the ReLU duals on the
    joint matrix, and Theta' = Sigma' + (w / |N|) sum_delta S_delta (Kdot * Theta) S_delta^T."""
    x = images(3, 2, *size, seed=14)
    x[1] = 0.0
    first = nn.Conv2d(2, 4, kernel, stride=stride, padding=padding, padding_mode=mode)
    model = nn.Sequential(first, nn.ReLU(), nn.Conv2d(4, 4, 1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1))
    weight_var, bias_var = 1.7, 0.09
    kernels = wn.infinite_kernels(model, x, x[[2, 0]], weight_std=weight_var**0.5,
                                  bias_std=bias_var**0.5)
    n, flat = x.shape[0], x.flatten(2).transpose(1, 2).reshape(-1, 2)  # (n P, C)
    sigma, theta = flat @ flat.T / 2, None
    strided = offset_matrices(first, size)
    for offsets in (strided, [torch.eye(strided[0].shape[0], dtype=torch.float64)]):
        lifted = [torch.block_diag(*[s] * n) for s in offsets]
        sigma, theta = (None if t is None else sum(s @ t @ s.T for s in lifted) / len(lifted)
                        for t in (sigma, theta))
        sigma = weight_var * sigma + bias_var
        theta = sigma if theta is None else sigma + weight_var * theta
        q = sigma.diagonal()
        product, derivative_product = wn.activations.relu.duals(q[:, None], q[None, :], sigma)
        sigma, theta = product, derivative_product * theta
    positions = sigma.shape[0] // n
    pooled = [t.view(n, positions, n, positions).mean(dim=(1, 3)) for t in (sigma, theta)]
    nngp = weight_var * pooled[0] + bias_var
    ntk = nngp + weight_var * pooled[1]
    assert torch.allclose(kernels.nngp, nngp[:, [2, 0]], rtol=1e-12, atol=1e-14)
    assert torch.allclose(kernels.ntk, ntk[:, [2, 0]], rtol=1e-12, atol=1e-14)


class _SkipSequential(nn.Sequential):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)


class _ScaledLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 3.0 * super().forward(x)


class _PlainLinear(nn.Linear):
    """A subclass that keeps Linear's forward (like torch's own NonDynamicallyQuantizableLinear)."""


def test_a_subclass_that_overrides_forward_is_refused() -> None:
    """A residual written as a Sequential subclass, or a rescaled Linear, compute something the
    base class's map does not; a subclass that keeps the forward has the base class's kernels."""
    x = images(3, 4)
    skip = nn.Sequential(nn.Linear(4, 8), _SkipSequential(nn.ReLU(), nn.Linear(8, 8)))
    with pytest.raises(wn.WidenetError, match=r"_SkipSequential \(at '1'\): it subclasses "
                                              "Sequential but overrides its forward"):
        wn.infinite_kernels(skip, x)
    with pytest.raises(wn.WidenetError, match="_ScaledLinear: it subclasses Linear but"):
        wn.infinite_kernels(_ScaledLinear(4, 1), x)
    assert_same_kernels(wn.infinite_kernels(_PlainLinear(4, 1), x),
                        wn.infinite_kernels(nn.Linear(4, 1), x))


class _DoubledConv(nn.Conv2d):
    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
        return super()._conv_forward(x, 2.0 * weight, bias)


class _ShiftedConv(wnn.Conv2d):
    def _bias_shaped(self, z: torch.Tensor, trailing: int) -> torch.Tensor:
        return super()._bias_shaped(z, trailing) + 1.0


@pytest.mark.parametrize(("kind", "method"), [(_DoubledConv, "_conv_forward"),
                                              (_ShiftedConv, "_bias_shaped")])
def test_a_subclass_that_overrides_what_forward_computes_with_is_refused(kind: type[nn.Module],
                                                                        method: str) -> None:
    """A torch Conv2d whose _conv_forward doubles the weight, or a widenet Conv2d that shifts
    its outputs, keeps the base class's forward: the base class's kernels were returned."""
    model = nn.Sequential(kind(1, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(2, 1))
    with pytest.raises(wn.WidenetError, match=f"it subclasses Conv2d but overrides its {method}"):
        wn.infinite_kernels(model, images(2, 1, 4, 4))


@pytest.mark.parametrize("wrap", [
    lambda m: torch.nn.utils.parametrizations.weight_norm(m),
    lambda m: torch.nn.utils.parametrizations.spectral_norm(m),
    lambda m: torch.nn.utils.weight_norm(m),  # the old API: a forward pre-hook
])
def test_a_weight_normalized_layer_is_refused(wrap) -> None:
    """weight = g v / ||v|| (or W / sigma(W)) is not a Gaussian weight of the plain layer: the
    plain Linear's kernels were returned."""
    model = nn.Sequential(wrap(nn.Linear(4, 8)), nn.ReLU(), nn.Linear(8, 1))
    with pytest.raises(wn.WidenetError, match=r"Linear \(at '0'\) has (parametrizations|forward "
                                              "pre-hooks)"):
        wn.infinite_kernels(model, images(3, 4))


@pytest.mark.parametrize("mode", ["constant", "circular"])
def test_strided_same_convolution_is_a_valid_one_on_the_padded_input(mode: str) -> None:
    """A first convolution with stride (2, 4) and "same" (or "circular") padding, 3 x 2 filters
    on 8 x 6 images, equals a valid one on the images padded by (0, 1) rows and no columns
    (neural-tangents' SAME / CIRCULAR)."""
    x = images(3, 2, 8, 6, seed=21)
    padding = "same" if mode == "constant" else "circular"

    def tail() -> list[nn.Module]:
        return [wnn.Activation("relu"), wnn.Conv2d(4, 4, 3, bias_std=0.1),
                wnn.Activation("erf"), wnn.AvgPool2d(2, 1), wnn.Flatten(),
                wnn.Dense(4 * 3 * 1, 1)]

    strided = wnn.Sequential(wnn.Conv2d(2, 4, (3, 2), stride=(2, 4), padding=padding,
                                        bias_std=0.3), *tail())
    valid = wnn.Sequential(wnn.Conv2d(2, 4, (3, 2), stride=(2, 4), padding="valid",
                                      bias_std=0.3), *tail())
    padded = F.pad(x, (0, 0, 0, 1), mode=mode)
    assert_same_kernels(wn.infinite_kernels(strided, x), wn.infinite_kernels(valid, padded))
    assert_same_kernels(wn.infinite_kernels(strided, x, x[:2]),
                        wn.infinite_kernels(valid, padded, padded[:2]))


@pytest.mark.parametrize("case", ["half images", "float32 vectors"])
def test_a_symmetric_call_keeps_one_copy_of_the_inputs(case: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """With x2=None the inputs converted to the working dtype (float32 for half images, float64
    for an MLP's float32 vectors) and the first convolution's patches (|filter| times the
    images) exist once: each was made twice, x2 = x1 converted and unfolded again."""
    engines = []

    class Recorded(infinite.Engine):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            engines.append(self)

    monkeypatch.setattr(infinite, "Engine", Recorded)
    if case == "half images":
        model = wnn.Sequential(wnn.Conv2d(2, 4, 3), wnn.Activation("relu"), wnn.GlobalAvgPool(),
                               wnn.Dense(4, 1))
        x = images(3, 2, 5, 5, seed=22).half()
    else:
        model, x = wn.MLP(6, [8], 1, seed=0), images(3, 6, seed=22).float()
    wn.infinite_kernels(model, x)
    assert engines[0].x2 is engines[0].x1


def _frozen(model: nn.Module, names: set[str]) -> nn.Module:
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name not in names)
    return model


@pytest.mark.parametrize(("make", "x", "names"), [
    (lambda: wnn.Sequential(wnn.Conv2d(2, 4, 3, bias_std=0.5),
                            wnn.Residual(wnn.Sequential(wnn.Activation("erf"),
                                                        wnn.Conv2d(4, 4, 3, bias_std=0.2))),
                            wnn.Activation("relu"), wnn.AvgPool2d(2), wnn.Flatten(),
                            wnn.Dense(16, 2, bias_std=0.1)),
     images(4, 2, 4, 4, seed=21), {"0.weight", "1.branch.1.bias", "5.bias"}),
    (lambda: wn.MLP(3, [8, 8], 1, "relu", bias_std=0.3), images(4, 3, seed=22).flatten(1)[:, :3],
     {"layers.2.weight", "layers.0.bias"}),
    (lambda: nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                           nn.Linear(4, 1)), images(4, 2, 5, seed=23), {"0.bias", "4.weight"})])
def test_frozen_parameters_are_left_out_of_the_ntk(make, x: torch.Tensor, names: set[str]
                                                   ) -> None:
    """The empirical NTK sums over the trainable parameters only, so its limit does too: with
    some parameters frozen the NTK is the full one less their blocks, the blocks are those of
    the trainable parameters, and the NNGP does not change (frozen parameters were counted)."""
    full = wn.infinite_kernels(make(), x, bias_std=0.3, per_layer=True)
    model = _frozen(make(), names)
    expected = full.ntk - sum(full.blocks[name] for name in names)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    for per_layer in (True, False):
        part = wn.infinite_kernels(model, x, bias_std=0.3, per_layer=per_layer)
        assert torch.equal(part.nngp, full.nngp)
        assert torch.allclose(part.ntk, expected, rtol=1e-13, atol=1e-15)
        assert list(part.blocks) == (trainable if per_layer else [])
    cross = wn.infinite_kernels(model, x[:1], x[1:], bias_std=0.3)
    assert torch.allclose(cross.ntk, expected[:1, 1:], rtol=1e-13, atol=1e-15)
