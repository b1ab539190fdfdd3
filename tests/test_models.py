"""The MLP: parametrizations, edge-of-chaos defaults, seeding, devices and dtypes."""

from __future__ import annotations

import math

import pytest
import torch

from widenet import MLP, WidenetError, activations


def test_shapes_and_layers() -> None:
    net = MLP(5, [16, 32], 3, "tanh", bias_std=0.2)
    assert net(torch.randn(7, 5)).shape == (7, 3)
    assert net.depth == 2
    assert [(layer.in_features, layer.out_features) for layer in net.layers] == [
        (5, 16), (16, 32), (32, 3)]
    assert [name for name, _ in net.named_parameters()][:2] == ["layers.0.weight", "layers.0.bias"]


def test_bias_free_when_bias_std_is_zero() -> None:
    net = MLP(4, [8], 1, "abs", dtype=torch.float64)
    assert all(layer.bias is None for layer in net.layers)
    x = torch.randn(3, 4, dtype=torch.float64)
    # positively 1-homogeneous (float64: in float32 an output near 0 missed rtol 1e-5 in 1.6% of
    # unseeded draws)
    assert torch.allclose(net(2.5 * x), 2.5 * net(x), rtol=1e-5)


@pytest.mark.parametrize(("activation", "expected"), [
    ("relu", math.sqrt(2)), ("abs", 1.0), ("identity", 1.0), (activations.ab(3, 4), 0.2),
    ("tanh", 1.0), ("erf", math.sqrt(math.pi) / 2)])
def test_weight_std_defaults_to_the_edge_of_chaos(activation, expected: float) -> None:
    assert MLP(3, [4], 1, activation).weight_std == pytest.approx(expected)


def test_ntk_and_standard_parametrizations_compute_the_same_function() -> None:
    """Same seed: W ~ N(0, 1) times sigma_w / sqrt(fan_in) vs W ~ N(0, sigma_w^2 / fan_in)."""
    kwargs = {"activation": "relu", "bias_std": 0.3, "seed": 5, "dtype": torch.float64}
    ntk, standard = MLP(6, [10, 12], 2, **kwargs), MLP(6, [10, 12], 2, parametrization="standard",
                                                       **kwargs)
    x = torch.randn(4, 6, dtype=torch.float64)
    assert torch.allclose(ntk(x), standard(x), atol=1e-12)
    assert ntk.layers[1].weight_multiplier == pytest.approx(math.sqrt(2) / math.sqrt(10))
    assert standard.layers[1].weight_multiplier == 1.0
    assert float(ntk.layers[1].weight.detach().std()) == pytest.approx(1.0, abs=0.3)
    standard_std = float(standard.layers[1].weight.detach().std())
    assert standard_std == pytest.approx(math.sqrt(0.2), abs=0.15)


def test_seeds_are_reproducible_and_distinct() -> None:
    a, b, c = MLP(3, [8], 2, seed=1), MLP(3, [8], 2, seed=1), MLP(3, [8], 2, seed=2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.layers[0].weight, c.layers[0].weight)
    generator = torch.Generator().manual_seed(1)
    d = MLP(3, [8], 2, generator=generator)
    assert torch.equal(a.layers[0].weight, d.layers[0].weight)
    a.reset_parameters(seed=2)
    assert torch.equal(a.layers[0].weight, c.layers[0].weight)


def test_dtype_and_device() -> None:
    net = MLP(3, [8], 2, seed=0, dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 for p in net.parameters())
    single = MLP(3, [8], 2, seed=0)
    assert torch.allclose(single.layers[0].weight.double(), net.layers[0].weight, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_same_seed_same_network_on_cuda() -> None:
    cpu, gpu = MLP(3, [8], 2, seed=0), MLP(3, [8], 2, seed=0, device="cuda")
    assert torch.equal(cpu.layers[0].weight, gpu.layers[0].weight.cpu())


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"hidden": [8, 0]}, r"hidden\[1\] must be a positive integer"),
    ({"hidden": [-4]}, r"hidden\[0\] must be a positive integer"),
    ({"hidden": 8}, "list of widths"),
    ({"in_features": 0}, "in_features must be a positive integer"),
    ({"activation": "swish"}, "unknown activation"),
    ({"weight_std": float("inf")}, "weight_std must be a finite"),
    ({"weight_std": -1.0}, "weight_std must be >"),
    ({"weight_std": 0.0}, "weight_std must be >"),
    ({"bias_std": -0.1}, "bias_std must be >="),
    ({"bias_std": float("nan")}, "bias_std must be a finite"),
    ({"parametrization": "mup?"}, "unknown parametrization"),
    ({"seed": 1, "generator": torch.Generator()}, "either seed or generator"),
    ({"seed": 2.7}, "seed must be an integer from 0 to"),
    ({"seed": "1"}, "seed must be an integer from 0 to"),
    ({"seed": 2**64}, "seed must be an integer from 0 to"),
    ({"dtype": torch.int64}, "floating-point torch dtype"),
    ({"dtype": "float64"}, "floating-point torch dtype"),
    ({"device": "nosuch"}, "unknown device 'nosuch'"),
])
def test_bad_arguments(kwargs: dict, message: str) -> None:
    arguments = {"in_features": 3, "hidden": [4], "out_features": 1, **kwargs}
    with pytest.raises(WidenetError, match=message):
        MLP(**arguments)
