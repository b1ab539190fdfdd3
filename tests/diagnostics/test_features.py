"""Soft ranks of feature matrices and the hidden features of a net."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from widenet import MLP, WidenetError
from widenet.diagnostics.features import (
    SoftRanks,
    entropy_effective_rank,
    hidden_features,
    module_outputs,
    participation_ratio,
    soft_ranks,
    stable_rank,
)

F64 = torch.float64


def _orthonormal(rows: int, cols: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(rows, cols, generator=g, dtype=F64))
    return q


def _with_singular_values(s: torch.Tensor, n: int, m: int, seed: int = 0) -> torch.Tensor:
    """H = U diag(s) V^T with random orthonormal U (n, r), V (m, r)."""
    r = s.shape[0]
    return _orthonormal(n, r, seed) @ torch.diag(s) @ _orthonormal(m, r, seed + 1).T


def test_known_spectrum() -> None:
    s = torch.tensor([4.0, 2.0, 1.0, 0.5], dtype=F64)
    h = _with_singular_values(s, 10, 7)
    squares = s**2
    p = s / s.sum()
    expected = SoftRanks(participation_ratio=float(squares.sum() ** 2 / (squares**2).sum()),
                         stable_rank=float(squares.sum() / 16.0),
                         entropy_effective_rank=math.exp(-float((p * p.log()).sum())))
    ranks = soft_ranks(h)
    for name in ("participation_ratio", "stable_rank", "entropy_effective_rank"):
        assert getattr(ranks, name) == pytest.approx(getattr(expected, name), rel=1e-12)
    assert participation_ratio(h) == ranks.participation_ratio
    assert stable_rank(h) == ranks.stable_rank
    assert entropy_effective_rank(h) == ranks.entropy_effective_rank
    assert participation_ratio(h.float()) == pytest.approx(ranks.participation_ratio, rel=1e-5)


@pytest.mark.parametrize("scale", [1e-150, 1.0, 1e150])
def test_rank_one_matrices_have_all_soft_ranks_one(scale: float) -> None:
    u = torch.randn(8, 1, dtype=F64)
    v = torch.randn(1, 5, dtype=F64)
    ranks = soft_ranks(scale * u @ v)
    assert ranks == SoftRanks(pytest.approx(1.0), pytest.approx(1.0), pytest.approx(1.0))


@pytest.mark.parametrize(("n", "scale"), [(1, 3.0), (6, 0.25), (20, 1e100)])
def test_scaled_identities_have_all_soft_ranks_equal_to_the_size(n: int, scale: float) -> None:
    ranks = soft_ranks(scale * torch.eye(n, dtype=F64))
    assert ranks.participation_ratio == pytest.approx(n, rel=1e-12)
    assert ranks.stable_rank == pytest.approx(n, rel=1e-12)
    assert ranks.entropy_effective_rank == pytest.approx(n, rel=1e-12)


def test_zero_matrix_has_soft_ranks_zero() -> None:
    zero = torch.zeros(4, 3)
    assert soft_ranks(zero) == SoftRanks(0.0, 0.0, 0.0)
    assert participation_ratio(zero) == stable_rank(zero) == entropy_effective_rank(zero) == 0.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 100.0), min_size=1, max_size=6).filter(lambda s: max(s) > 1e-3))
def test_soft_ranks_lie_between_one_and_the_rank(values: list[float]) -> None:
    s = torch.tensor(sorted(values, reverse=True), dtype=F64)
    ranks = soft_ranks(_with_singular_values(s, 9, 8))
    rank = int((s > 0).sum())  # exp(entropy) counts every nonzero singular value, however small
    slack = 1e-9  # rounding: a zero singular value comes back as ~1e-16 s_max and adds ~4e-15
    assert 1 - slack <= ranks.stable_rank <= ranks.participation_ratio + slack
    assert ranks.participation_ratio <= rank + slack
    assert 1 - slack <= ranks.entropy_effective_rank <= rank + slack


@pytest.mark.parametrize(("features", "message"), [
    (torch.ones(4), "shape \\(n, d\\)"), (torch.ones(0, 3), "empty"),
    (torch.tensor([[1.0, float("nan")]]), "NaN"), (torch.ones(2, 2, dtype=torch.long),
                                                   "floating-point"),
    ([[1.0]], "torch.Tensor")])
def test_bad_feature_matrices(features: object, message: str) -> None:
    with pytest.raises(WidenetError, match=message):
        soft_ranks(features)


def test_hidden_features_of_an_mlp_match_a_manual_forward() -> None:
    net = MLP(3, [5, 4], 2, "abs", seed=0, dtype=F64)
    x = torch.randn(6, 3, dtype=F64)
    features = hidden_features(net, x)
    h1 = net.activation(net.layers[0](x))
    h2 = net.activation(net.layers[1](h1))
    assert len(features) == 2
    assert torch.allclose(features[0], h1)
    assert torch.allclose(features[1], h2)
    assert not features[0].requires_grad
    assert hidden_features(MLP(3, [], 1, seed=0), torch.randn(2, 3)) == []


def test_module_outputs_of_a_sequential() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(5, 3, dtype=F64)
    first, second = module_outputs(net, x, [net[1], net[2]])
    assert torch.allclose(first, torch.tanh(net[0](x)))
    assert torch.allclose(second, net(x))
    assert not net[1]._forward_hooks  # hooks are removed


def test_module_outputs_errors() -> None:
    shared = nn.Linear(3, 3)
    net = nn.Sequential(shared, nn.ReLU(), shared)
    with pytest.raises(WidenetError, match="called 2 times"):
        module_outputs(net, torch.randn(2, 3), [shared])
    with pytest.raises(WidenetError, match="not a submodule"):
        module_outputs(net, torch.randn(2, 3), [nn.ReLU()])
    assert not shared._forward_hooks
    with pytest.raises(WidenetError, match=r"widenet\.MLP"):
        hidden_features(net, torch.randn(2, 3))
    with pytest.raises(WidenetError, match="expects 3"):
        hidden_features(MLP(3, [4], 1, seed=0), torch.randn(2, 5))


def test_module_outputs_measure_in_eval_mode_and_leave_the_model_as_it_was() -> None:
    """Dropout is off and batch norm neither uses the batch's statistics nor updates its
    running ones; every module's mode comes back as it was."""
    torch.manual_seed(0)
    norm, drop = nn.BatchNorm1d(5), nn.Dropout(0.5)
    model = nn.Sequential(nn.Linear(3, 5), norm, drop, nn.Linear(5, 1))
    model.train()
    drop.eval()  # a mixed state, restored module by module
    x = torch.randn(16, 3)
    before = norm.running_mean.clone(), norm.running_var.clone(), norm.num_batches_tracked.item()
    (normed,) = module_outputs(model, x, [norm])
    expected = (model[0](x) - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps)
    torch.testing.assert_close(normed, expected * norm.weight + norm.bias)
    assert torch.equal(norm.running_mean, before[0])
    assert torch.equal(norm.running_var, before[1])
    assert norm.num_batches_tracked.item() == before[2]
    assert [module.training for module in model.modules()] == [True, True, True, False, True]


def test_points_the_model_cannot_take() -> None:
    """The model's own RuntimeError (float32 points for a float64 net, points of the wrong
    width) came out of hidden_features and module_outputs unexplained."""
    net = MLP(3, [4], 1, "relu", seed=0, dtype=F64)
    with pytest.raises(WidenetError, match=r"model\(x\) failed: .*dtype"):
        hidden_features(net, torch.randn(5, 3))
    with pytest.raises(WidenetError, match="model\\(x\\) failed: mat1 and mat2"):
        module_outputs(net, torch.randn(5, 4, dtype=F64), [net.layers[0]])


def test_running_out_of_memory_is_not_reported_as_bad_points() -> None:
    class Exhausted(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise torch.OutOfMemoryError("out of memory")

    with pytest.raises(torch.OutOfMemoryError):
        module_outputs(Exhausted(), torch.ones(2, 3), [])
