"""LazyModel: its alpha, and its empirical NTK: alpha^2 times the wrapped network's, by the
layer-wise method."""

from __future__ import annotations

import pytest
import torch

import widenet as wn
from widenet.kernels.empirical import empirical_ntk
from widenet.kernels.jacobians import JacobianMethod

ALPHA = 3.0
MODES = ("trace", "diagonal", "full")
TOL = 1e-10


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def moved_lazy_model() -> tuple[wn.LazyModel, wn.MLP]:
    """LazyModel(net, ALPHA) with the net's weights moved away from w_0 (so h != 0)."""
    net = wn.MLP(3, [6, 5], 2, "tanh", bias_std=0.2, seed=1, dtype=torch.float64)
    lazy = wn.LazyModel(net, ALPHA)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return lazy, net


@pytest.mark.parametrize(("alpha", "message"), [
    (0.0, "alpha must be > 0"), (-1.0, "alpha must be > 0"), (float("nan"), "finite"),
    (1e200, "between 1e-150 and 1e150"), (1e-200, "between 1e-150 and 1e150")])
def test_an_alpha_without_a_loss_scale_is_refused(alpha: float, message: str) -> None:
    with pytest.raises(wn.WidenetError, match=message):
        wn.LazyModel(wn.MLP(3, [4], 1, seed=0), alpha)


def test_the_loss_scale_is_one_over_alpha_squared_at_the_ends_of_the_range() -> None:
    for alpha in (1e-150, 1e150):
        assert wn.LazyModel(wn.MLP(3, [4], 1, seed=0), alpha).loss_scale == 1 / alpha**2


def points(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("outputs", MODES)
@pytest.mark.parametrize("symmetric", [True, False])
def test_layerwise_matches_the_jacobian_method_and_alpha_squared_times_the_inner_ntk(
        outputs: str, symmetric: bool) -> None:
    """K_h(x1, x2) = alpha^2 K_f(x1, x2) at the current w, block by block, in every layout."""
    lazy, net = moved_lazy_model()
    x1, x2 = points(4, seed=3), None if symmetric else points(3, seed=4)
    fast = empirical_ntk(lazy, x1, x2, outputs=outputs, per_layer=True, method="layerwise")
    exact = empirical_ntk(lazy, x1, x2, outputs=outputs, per_layer=True, method="jacobian")
    inner = empirical_ntk(net, x1, x2, outputs=outputs, per_layer=True, method="jacobian")
    assert isinstance(fast, wn.Kernels)
    assert list(fast.blocks) == [name for name, _ in lazy.named_parameters()]
    assert list(fast.blocks) == [f"model.{name}" for name in inner.blocks]
    for name, block in inner.blocks.items():
        assert relative_error(fast.blocks[f"model.{name}"], exact.blocks[f"model.{name}"]) < TOL
        assert relative_error(fast.blocks[f"model.{name}"], ALPHA**2 * block) < TOL
    assert relative_error(fast.ntk, ALPHA**2 * inner.ntk) < TOL
    kept = {"trace": "ntk", "diagonal": "diagonal", "full": "full"}[outputs]
    assert relative_error(getattr(fast, kept), ALPHA**2 * getattr(inner, kept)) < TOL
    total = empirical_ntk(lazy, x1, x2, outputs=outputs)
    assert relative_error(getattr(total, kept), getattr(exact, kept)) < TOL


def test_auto_takes_the_layerwise_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_):
        raise AssertionError("auto fell back to the Jacobian method")

    lazy, net = moved_lazy_model()
    x = points(5, seed=5)
    expected = ALPHA**2 * empirical_ntk(net, x, outputs="full", method="jacobian").full
    monkeypatch.setattr(JacobianMethod, "features", refuse)
    assert relative_error(empirical_ntk(lazy, x, outputs="full").full, expected) < TOL
    with torch.no_grad():
        assert relative_error(empirical_ntk(lazy, x, outputs="full").full, expected) < TOL
