"""Parametrizations: muP against SP at base width, the muP coordinate check, mean field."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import widenet as wn
from tests.conftest import FULL
from widenet.dynamics.optim import build_optimizer
from widenet.dynamics.train import train
from widenet.parametrizations import MeanFieldParametrization, MuP


def data(n: int = 32, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, 1, generator=g)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_mup_equals_sp_at_base_width(optimizer: str) -> None:
    x, y = data()
    sp = wn.MLP(8, [32, 32], 1, "relu", bias_std=0.1, parametrization="standard", seed=3)
    mup = wn.MLP(8, [32, 32], 1, "relu", bias_std=0.1, parametrization=MuP(base_hidden=32),
                 seed=3)
    assert set(mup.lr_scales(optimizer).values()) == {1.0}
    for net in (sp, mup):
        train(net, x, y, lr=0.01, steps=5, optimizer=optimizer, log_every=5)
    for p, q in zip(sp.parameters(), mup.parameters(), strict=True):
        assert torch.equal(p, q)


def output_change(parametrization, width: int, optimizer: str, seed: int) -> float:
    """Mean |f_3(x) - f_0(x)| after three full-batch steps: the coordinate check of the readout."""
    x, y = data(n=64, seed=seed)
    net = wn.MLP(8, [width, width], 1, "relu", parametrization=parametrization, seed=seed)
    with torch.no_grad():
        before = net(x)
    # Targets of size 4 keep the residual dominated by y, not by f_0 (which shrinks with width
    # under muP: std sqrt(n_base / n)).
    train(net, x, 4 * y, lr=1e-4 if optimizer == "sgd" else 2e-4, steps=3, optimizer=optimizer)
    with torch.no_grad():
        return float((net(x) - before).abs().mean())


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_coordinate_check(optimizer: str) -> None:
    """The output's change over the first steps grows with width under SP (theory: ~ width^1)
    and is flat under muP (theory: width^0): the log-log slope over widths 128..2048, with the
    change averaged over four seeds at each width. Measured over seed sets: SP 0.7 to 1.1;
    muP -0.5 to -0.1 with SGD and -0.3 to -0.1 with Adam (finite-width effects near the base
    width push it slightly down), so muP's bound is "not growing, and far from SP"."""
    widths = torch.tensor([128.0, 256.0, 512.0, 1024.0, 2048.0])

    def slope(parametrization) -> float:
        changes = torch.tensor([sum(output_change(parametrization, int(w), optimizer, seed)
                                    for seed in range(4)) for w in widths])
        log_w, log_c = widths.log(), changes.log()
        centered = log_w - log_w.mean()
        return float((centered * (log_c - log_c.mean())).sum() / centered.square().sum())

    assert slope("standard") > 0.6
    assert -0.8 < slope(MuP(base_hidden=128)) < 0.3


def test_mup_scalings_follow_table_3() -> None:
    net = wn.MLP(8, [256, 512], 3, "relu", bias_std=0.5, parametrization=MuP(base_hidden=128))
    sgd, adam = net.lr_scales("sgd"), net.lr_scales("adam")
    names = ["layers.0.weight", "layers.1.weight", "layers.2.weight", "layers.1.bias"]
    # input: r_out, 1; hidden: 1, 1/r_in; output: 1/r_in, 1/r_in; biases: r_out, 1.
    assert [sgd[n] for n in names] == [2.0, 1.0, 0.25, 4.0]
    assert [adam[n] for n in names] == [1.0, 0.5, 0.25, 1.0]
    readout = net.scalings[2].weight.init_std
    assert readout == pytest.approx(math.sqrt(2) / math.sqrt(512) / 2.0)         # var ~ 1/fan_in^2


def test_mean_field_scaling() -> None:
    net = wn.MLP(4, [100], 1, "relu", parametrization=MeanFieldParametrization(base_width=10))
    assert net.layers[1].weight_multiplier == pytest.approx(math.sqrt(2) / 100)
    assert set(net.lr_scales("sgd").values()) == {10.0}
    with pytest.raises(wn.WidenetError, match="two-layer"):
        wn.MLP(4, [10, 10], 1, parametrization="mean-field")


def test_bad_parametrization_arguments() -> None:
    with pytest.raises(wn.WidenetError, match="one base width per layer"):
        wn.MLP(4, [10, 10], 1, parametrization=MuP(base_hidden=[5]))
    with pytest.raises(wn.WidenetError, match="covers the ntk and standard"):
        wn.infinite_kernels(wn.MLP(4, [10], 1, parametrization=MuP(10)), torch.randn(3, 4))
    with pytest.raises(wn.WidenetError, match="relative to base widths"):
        wn.MLP(4, [10], 1, parametrization="mup")


@pytest.mark.parametrize(("base", "message"), [
    (0, "base_hidden must be a positive integer, got 0"),
    (-8, "base_hidden must be a positive integer"),
    (float("nan"), "base_hidden must be a positive integer, got nan"),
    ("64", "base_hidden must be a positive integer"),
    ([64, 0], r"base_hidden\[1\] must be a positive integer, got 0"),
])
def test_mup_refuses_base_widths_that_are_not_positive_integers(base: object,
                                                                message: str) -> None:
    with pytest.raises(wn.WidenetError, match=message):
        MuP(base_hidden=base)


def test_mup_takes_base_widths_as_numpy_integers_and_arrays() -> None:
    sizes = (3, 16, 32, 1)
    assert MuP(np.array([8, 8])).scalings(sizes, 1.0, 1.0) == MuP([8, 8]).scalings(sizes, 1.0, 1.0)
    assert MuP(np.int64(8)).scalings(sizes, 1.0, 1.0) == MuP(8).scalings(sizes, 1.0, 1.0)
    assert MuP((8, 16)).scalings(sizes, 1.0, 1.0) != MuP(8).scalings(sizes, 1.0, 1.0)


@pytest.mark.parametrize("family", ["Adam", "adamw", "SGD", ""])
def test_an_unknown_optimizer_family_is_refused(family: str) -> None:
    """Only "sgd" and "adam" name a family; any other name silently got SGD's factors (a muP
    net's input layer then trained 4x too fast under Adam at 4x its base width)."""
    net = wn.MLP(3, [128], 1, parametrization=MuP(32))
    with pytest.raises(wn.WidenetError, match="'sgd' or 'adam'"):
        net.lr_scales(family)


def hidden_update_size(parametrization, optimizer: str, width: int, seed: int) -> float:
    """Mean |Delta z_2| over units and points from the hidden weight's first step alone,
    m_w (W_2' - W_2) h_1(x): the per-coordinate size of the hidden layer's update. The loss
    <f(x), v> has an output gradient v that does not depend on the width (with the squared
    loss the residual f_0 - y does: f_0 shrinks with width under muP)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 8, generator=g, dtype=torch.float64)
    v = torch.randn(4, 1, generator=g, dtype=torch.float64)
    net = wn.MLP(8, [width, width], 1, "relu", bias_std=0.5, parametrization=parametrization,
                 seed=seed, dtype=torch.float64)
    hidden = net.layers[1]
    with torch.no_grad():
        h1 = torch.relu(net.layers[0](x))
    before = hidden.weight.detach().clone()
    (net(x) * v).sum().backward()
    build_optimizer(net, optimizer, 1e-3).step()
    change = hidden.weight_multiplier * h1 @ (hidden.weight.detach() - before).T
    return float(change.abs().mean())


@pytest.mark.parametrize(("parametrization", "optimizer", "exponent"), [
    (MuP(128), "sgd", 0.0), (MuP(128), "adam", 0.0), ("standard", "sgd", 0.5),
    ("standard", "adam", 1.0), ("ntk", "sgd", -0.5), ("ntk", "adam", 0.5)], ids=str)
def test_hidden_update_scales_with_width_as_theory_says(parametrization, optimizer: str,
                                                        exponent: float) -> None:
    """The hidden layer's first update per coordinate ~ width^exponent: Theta(1) under muP with
    SGD and Adam (the learning rate transfers); under SP with one global rate it grows like
    sqrt(n) (SGD: gradient n^-1/2 per entry times a sum over n inputs) and n (Adam: entries of
    size lr); under the NTK parametrization it vanishes like n^-1/2 with SGD (lazy). The
    log-log slope over widths 128 to 2048 (CI: to 1024) is fitted per seed; its mean over 8
    seeds must be within 4 standard errors of the exponent (measured: within 1.3)."""
    widths = [128, 512, 2048] if FULL else [128, 362, 1024]
    slopes = [np.polyfit(np.log(widths), np.log([hidden_update_size(
        parametrization, optimizer, width, seed) for width in widths]), 1)[0]
        for seed in range(8)]
    standard_error = np.std(slopes, ddof=1) / math.sqrt(len(slopes))
    assert abs(np.mean(slopes) - exponent) <= 4 * standard_error
