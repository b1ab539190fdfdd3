"""The empirical NTK: every method against a naive float64 Jacobian, and against each other."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tests.kernels.empirical_models import (
    MODELS,
    NO_FORWARD_MODE,
    Aliased,
    CenterBatch,
    DoubledAboveThree,
    RewrittenAbove,
    SmallCNN,
    UpdatesBuffers,
    WritesItsInput,
    brute_blocks,
    brute_ntk,
    kept,
    linear_stack,
    one_thread,  # noqa: F401 (an autouse fixture)
    points,
    reduce_outputs,
    relative_error,
    widenet_mlp,
)
from widenet.dynamics.lazy import LazyModel
from widenet.errors import WidenetError
from widenet.kernels import _audit, _blocks, _layerwise
from widenet.kernels.empirical import empirical_ntk
from widenet.kernels.infinite import infinite_kernels
from widenet.kernels.jacobians import JacobianMethod, jacobian
from widenet.kernels.ntk_vp import ntk_vector_product
from widenet.kernels.result import Kernels
from widenet.models import MLP

TOL = 1e-10
MODES = ("trace", "diagonal", "full")


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request):
    """A model, inputs x1 (4 points) and x2 (3 points), and its brute-force full kernels."""
    factory, shape, layerwise = MODELS[request.param]
    model = factory()
    x1, x2 = points(4, shape, seed=1), points(3, shape, seed=2)
    return {"model": model, "x1": x1, "x2": x2, "layerwise": layerwise,
            "forward_mode": request.param not in NO_FORWARD_MODE,
            "cross": brute_ntk(model, x1, x2), "self": brute_ntk(model, x1)}


def _methods(case):
    return (("layerwise",) if case["layerwise"] else ()) + ("jacobian", "auto") + (
        ("ntk-vp",) if case["forward_mode"] else ())


@pytest.mark.parametrize("outputs", MODES)
def test_every_method_matches_the_brute_force_jacobian(case, outputs):
    for method in _methods(case):
        cross = empirical_ntk(case["model"], case["x1"], case["x2"], outputs=outputs,
                              method=method)
        own = empirical_ntk(case["model"], case["x1"], outputs=outputs, method=method)
        assert relative_error(kept(cross, outputs), reduce_outputs(case["cross"], outputs)) < TOL
        assert relative_error(kept(own, outputs), reduce_outputs(case["self"], outputs)) < TOL
        assert relative_error(own.ntk, reduce_outputs(case["self"], "trace")) < TOL, method


def test_x2_none_gives_a_symmetric_positive_semidefinite_kernel(case):
    full = empirical_ntk(case["model"], case["x1"], outputs="full").full
    n, _, k, _ = full.shape
    matrix = full.permute(0, 2, 1, 3).reshape(n * k, n * k)
    assert torch.equal(matrix, matrix.T)
    assert float(torch.linalg.eigvalsh(matrix).min()) >= -TOL * float(matrix.abs().max())
    ntk = empirical_ntk(case["model"], case["x1"]).ntk
    assert torch.equal(ntk, ntk.T)


def test_per_layer_blocks_match_brute_force_and_sum_to_the_ntk(case):
    """Blocks per output unit, (n1, n2) each, whatever ``outputs`` keeps besides."""
    model = case["model"]
    result = empirical_ntk(model, case["x1"], case["x2"], outputs="diagonal", per_layer=True)
    expected = brute_blocks(model, case["x1"], case["x2"], outputs="trace")
    assert isinstance(result, Kernels)
    assert result.nngp is None
    assert result.full is None
    assert result.outputs == case["cross"].shape[-1]
    assert list(result.blocks) == [n for n, p in model.named_parameters() if p.requires_grad]
    for name, block in result.blocks.items():
        assert block.shape == case["cross"].shape[:2]
        assert relative_error(block, expected[name]) < TOL, name
    assert torch.equal(result.ntk, sum(result.blocks.values()))
    assert relative_error(result.ntk, reduce_outputs(case["cross"], "trace")) < TOL
    assert relative_error(result.diagonal, reduce_outputs(case["cross"], "diagonal")) < TOL


def test_the_result_keeps_what_outputs_asks_for():
    model, x = widenet_mlp(k=3), points(4)
    trace = empirical_ntk(model, x)
    assert trace.outputs == 3
    assert trace.ntk.shape == (4, 4)
    assert trace.full is None
    assert trace.diagonal is None
    assert trace.blocks == {}
    assert empirical_ntk(model, x, outputs="diagonal").diagonal.shape == (4, 4, 3)
    full = empirical_ntk(model, x, outputs="full")
    assert full.full.shape == (4, 4, 3, 3)
    assert full.diagonal is None
    torch.testing.assert_close(full.ntk, torch.diagonal(full.full, dim1=2, dim2=3).mean(-1),
                               rtol=0, atol=0)


@pytest.mark.parametrize("method", ["layerwise", "jacobian", "ntk-vp"])
def test_per_layer_blocks_agree_across_methods(method):
    model, x = SmallCNN(), points(3, (2, 6, 6))
    reference = brute_blocks(model, x, outputs="trace")
    result = empirical_ntk(model, x, outputs="full", per_layer=True, method=method)
    for name, block in result.blocks.items():
        assert relative_error(block, reference[name]) < TOL, name
    assert relative_error(result.full, brute_ntk(model, x)) < TOL


@pytest.mark.parametrize("per_example", [True, False])
def test_both_convolution_contractions_are_exact(monkeypatch, per_example):
    """Per-example weight gradients and the positions-squared Gram give the same kernel."""
    monkeypatch.setattr(_layerwise, "_per_example_cheaper", lambda *_: per_example)
    model, x1, x2 = SmallCNN(), points(3, (2, 6, 6), seed=3), points(2, (2, 6, 6), seed=4)
    for outputs in MODES:
        kernel = empirical_ntk(model, x1, x2, outputs=outputs, method="layerwise")
        assert relative_error(kept(kernel, outputs), brute_ntk(model, x1, x2, outputs)) < TOL


def test_auto_takes_the_layerwise_path_for_supported_models(monkeypatch):
    def refuse(*_):
        raise AssertionError("auto fell back to the Jacobian method")

    monkeypatch.setattr(JacobianMethod, "features", refuse)
    for factory in (widenet_mlp, linear_stack, SmallCNN):
        model = factory()
        shape = (2, 6, 6) if isinstance(model, SmallCNN) else (4,)
        empirical_ntk(model, points(3, shape))


UNSUPPORTED = {"custom": "Scale", "called-twice": "called 2 times", "tied-weights": "shared",
               "used-outside": "used outside",
               "prototypes": "first dimension is not the batch",
               "prototypes-3": r"first dimension is not the batch of 1 point\(s\)",
               "sequence-first": "first dimension is not the batch",
               "reversed-batch": "does not follow the points",
               "weight-norm": r"computed from other parameters \(weight_g, weight_v\)",
               "parametrized-weight-norm": "ParametrizedLinear", "prelu": "PReLU",
               "lstm": "LSTM", "gru": "GRU"}


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_forcing_layerwise_on_an_unsupported_model_says_why(name):
    factory, shape, layerwise = MODELS[name]
    assert not layerwise
    with pytest.raises(WidenetError, match=UNSUPPORTED[name]):
        empirical_ntk(factory(), points(3, shape), method="layerwise")


@pytest.mark.parametrize("name", ["prototypes", "prototypes-3", "sequence-first",
                                  "reversed-batch"])
@pytest.mark.parametrize(("n1", "n2"), [(1, None), (2, None), (2, 2), (5, 2), (3, 5), (1, 1)])
def test_auto_is_not_fooled_by_a_batch_size_that_matches_another_axis(name, n1, n2):
    """Layers whose first axis is not the points, for batches of the other axis's size too."""
    factory, shape, _ = MODELS[name]
    model = factory()
    x1, x2 = points(n1, shape, seed=n1), None if n2 is None else points(n2, shape, seed=9 + n2)
    result = empirical_ntk(model, x1, x2, outputs="full")
    assert relative_error(result.full, brute_ntk(model, x1, x2)) < TOL


def test_weight_norm_keeps_its_weight_attribute_and_ntk_vp_says_why_it_refuses():
    factory, shape, _ = MODELS["weight-norm"]
    model, x = factory(), points(3, shape)
    weight = model.weight  # a plain attribute, recomputed by the user's own forward passes
    result = empirical_ntk(model, x, outputs="full")
    assert model.weight is weight
    assert relative_error(result.full, brute_ntk(model, x)) < TOL
    with pytest.raises(WidenetError, match=r"forward-mode derivatives.*method='jacobian'"):
        empirical_ntk(model, x, method="ntk-vp")


@pytest.mark.parametrize("name", ["prelu", "lstm", "gru"])
@pytest.mark.parametrize("method", ["auto", "jacobian", "ntk-vp"])
def test_models_vmap_cannot_batch_are_differentiated_point_by_point(name, method):
    """PReLU's vmapped derivatives are silently wrong for a chunk of as many points as outputs
    (2 here); LSTM's and GRU's raise."""
    factory, shape, _ = MODELS[name]
    model, x = factory(), points(4, shape)
    result = empirical_ntk(model, x, outputs="full", method=method, chunk_size=2)
    assert relative_error(result.full, brute_ntk(model, x)) < TOL


def test_a_model_vmap_refuses_falls_back_to_the_loop(monkeypatch):
    """An operation unknown to the audit whose batching raises: the loop takes over, exactly."""
    monkeypatch.setattr(_audit, "UNBATCHED_OPS", frozenset())
    factory, shape, _ = MODELS["lstm"]
    model, x = factory(), points(3, shape)
    for method in ("jacobian", "ntk-vp"):
        result = empirical_ntk(model, x, outputs="full", method=method)
        assert relative_error(result.full, brute_ntk(model, x)) < TOL, method


class PaddedAboveThree(nn.Module):
    """Pads its batch with a copy of the first point when it has more than 3 points: exact per
    point, but its layers see one row more than there are points, which no probe shows."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(18)
        self.inner = nn.Linear(4, 3)
        self.head = nn.Linear(3, 2)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = x if x.shape[0] <= 3 else torch.cat([x, x[:1]])
        return self.head(torch.tanh(self.inner(padded)))[:x.shape[0]]


def test_a_layer_that_stops_following_the_points_after_the_probe_is_left_to_the_jacobians():
    """The probe (3 points) cannot see it; the layer-wise pass's guard does: "layerwise" refuses,
    "auto" falls back to the Jacobian method, which is exact for it."""
    model, x = PaddedAboveThree(), points(6)
    with pytest.raises(WidenetError, match="not called on the 6 points of a chunk"):
        empirical_ntk(model, x, method="layerwise")
    for method in ("auto", "jacobian"):
        result = empirical_ntk(model, x, outputs="full", method=method)
        assert relative_error(result.full, brute_ntk(model, x)) < TOL, method


@pytest.mark.parametrize("method", ["layerwise", "ntk-vp"])
def test_a_model_that_changes_with_the_number_of_points_after_the_probe_is_refused(method):
    """The batched methods would differentiate the doubled output; the Jacobian of each point
    alone is the brute-force one, which "auto" falls back to."""
    model, x = DoubledAboveThree(), points(6)
    with pytest.raises(WidenetError, match="last of the 6 points of a batch is not what"):
        empirical_ntk(model, x, method=method)
    for fallback in ("auto", "jacobian"):
        result = empirical_ntk(model, x, outputs="full", method=fallback)
        assert relative_error(result.full, brute_ntk(model, x)) < TOL, fallback


class SortsItsBatch(nn.Module):
    """Runs its first layer on the batch sorted by the first feature, then unsorts: exact per
    point, but the layer's rows follow the points only on batches that come sorted."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(19)
        self.inner = nn.Linear(4, 5)
        self.head = nn.Linear(5, 2)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        order = x[:, 0].argsort()
        return self.head(torch.tanh(self.inner(x[order]))[order.argsort()])


def test_a_layer_whose_rows_stop_following_the_points_after_the_probe_is_left_to_jacobians():
    x = points(6)
    x[:, 0] = torch.tensor([0.0, 1.0, 2.0, -1.0, 5.0, -3.0])  # the probe's 3 points in order
    model = SortsItsBatch()
    with pytest.raises(WidenetError, match="input of inner for the last of the 6 points"):
        empirical_ntk(model, x, method="layerwise")
    for method in ("auto", "jacobian"):
        result = empirical_ntk(model, x, outputs="full", method=method)
        assert relative_error(result.full, brute_ntk(model, x)) < TOL, method


def test_a_layer_output_rewritten_in_place_only_after_the_probe_is_left_to_the_jacobians():
    x = points(6)
    with pytest.raises(WidenetError, match="modified in place on the 6 points of a chunk"):
        empirical_ntk(RewrittenAbove(3), x, method="layerwise")
    fallback = empirical_ntk(RewrittenAbove(3), x, outputs="full", per_layer=True)
    jacobians = empirical_ntk(RewrittenAbove(3), x, outputs="full", per_layer=True,
                              method="jacobian")
    assert torch.equal(fallback.full, jacobians.full)
    assert all(torch.equal(fallback.blocks[name], block)
               for name, block in jacobians.blocks.items())
    model = RewrittenAbove(0)  # rewritten on the probe too: the layer-wise pass copies
    result = empirical_ntk(model, x, outputs="full", method="layerwise")
    assert relative_error(result.full, brute_ntk(model, x)) < TOL


@pytest.mark.parametrize("method", ["auto", "jacobian", "ntk-vp"])
def test_a_model_that_squeezes_its_output_works_for_one_point_too(method):
    factory, shape, _ = MODELS["squeezed"]
    model = factory()
    for x1, x2 in ((points(1, shape), None), (points(1, shape), points(1, shape, seed=3)),
                   (points(5, shape), None)):
        result = empirical_ntk(model, x1, x2, outputs="full", method=method, chunk_size=1)
        assert relative_error(result.full, brute_ntk(model, x1, x2)) < TOL


def test_an_aliased_module_is_left_intact_on_every_path():
    """``self.alias = self.l``: the kernel is right, and the model untouched, after success and
    after errors raised inside its forward pass and after it."""
    model, x = Aliased(), points(3)
    weight, bias = model.l.weight, model.l.bias
    expected = brute_ntk(model, x)
    calls = [lambda: empirical_ntk(model, points(3, (5,))),  # fails inside the forward pass
             lambda: empirical_ntk(model, x, memory_budget=100),  # fails after the audit
             lambda: empirical_ntk(model, x, method="ntk-vp", outputs="full")]
    for method in ("auto", "layerwise", "jacobian", "ntk-vp"):
        result = empirical_ntk(model, x, outputs="full", method=method)
        assert relative_error(result.full, expected) < TOL, method
    for call in calls[:2]:
        with pytest.raises(WidenetError):
            call()
    for module in (model.l, model.alias):
        assert module.weight is weight
        assert module.bias is bias
    assert isinstance(weight, nn.Parameter)
    assert weight.requires_grad
    assert weight.grad is None
    assert relative_error(calls[2]().full, expected) < TOL


def test_a_layer_whose_output_a_user_hook_rescales_falls_back_to_an_exact_method():
    model, x = linear_stack(), points(4)
    model[2].register_forward_hook(lambda module, args, output: 2 * output)
    with pytest.raises(WidenetError, match="forward hooks"):
        empirical_ntk(model, x, method="layerwise")
    assert relative_error(empirical_ntk(model, x, outputs="full").full, brute_ntk(model, x)) < TOL


class NoGradCalls(nn.Module):
    """A Linear called once with gradient recording on and twice under torch.no_grad (before and
    after), and a weight used directly under no_grad: only the recorded call has derivatives."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(9)
        self.inner = nn.Linear(4, 5)
        self.head = nn.Linear(5, 2)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            before = torch.tanh(self.inner(x))
        h = torch.tanh(self.inner(x)) * before
        with torch.no_grad():
            after = self.inner(h[:, :4])[:, :2] * self.head.weight.norm()
        return self.head(h) + after


@pytest.mark.parametrize("outputs", MODES)
def test_calls_and_uses_under_no_grad_do_not_stop_the_layerwise_method(outputs):
    """They add nothing to reverse-mode derivatives: layerwise equals the autograd Jacobian."""
    model, x1, x2 = NoGradCalls(), points(4, seed=1), points(3, seed=2)
    expected = brute_blocks(model, x1, x2, "trace")
    for grad_mode in (torch.enable_grad, torch.no_grad):
        with grad_mode():
            result = empirical_ntk(model, x1, x2, outputs=outputs, per_layer=True,
                                   method="layerwise")
        assert list(result.blocks) == list(expected)
        for name, block in result.blocks.items():
            assert relative_error(block, expected[name]) < TOL, name
        assert relative_error(kept(result, outputs), brute_ntk(model, x1, x2, outputs)) < TOL


def test_ntk_vp_refuses_a_parameter_used_under_no_grad():
    """Forward-mode derivatives ignore torch.no_grad: they would count the no-grad calls."""
    model, x = NoGradCalls(), points(3, seed=1)
    with pytest.raises(WidenetError, match=r"'inner\.weight' is used under torch\.no_grad"):
        empirical_ntk(model, x, method="ntk-vp")
    lazy = LazyModel(MLP(4, [6], 2, seed=0, dtype=torch.float64), 2.0)  # w_0: buffers, not used
    torch.testing.assert_close(empirical_ntk(lazy, x, method="ntk-vp").ntk,
                               empirical_ntk(lazy, x, method="jacobian").ntk)


def test_frozen_parameters_are_left_out():
    model = linear_stack()
    model[0].weight.requires_grad_(False)
    model[2].bias.requires_grad_(False)
    x = points(4)
    result = empirical_ntk(model, x, outputs="full", per_layer=True)
    assert set(result.blocks) == {"0.bias", "2.weight", "4.weight", "4.bias"}
    assert relative_error(result.full, brute_ntk(model, x)) < TOL


@settings(max_examples=25, deadline=None)
@given(hidden=st.lists(st.integers(1, 6), max_size=3), k=st.integers(1, 4), bias=st.booleans(),
       activation=st.sampled_from(["relu", "tanh", "abs", "erf"]),
       parametrization=st.sampled_from(["ntk", "standard"]), n1=st.integers(1, 4),
       n2=st.integers(1, 3), outputs=st.sampled_from(MODES))
def test_layerwise_is_exact_on_random_mlps(hidden, k, bias, activation, parametrization, n1, n2,
                                           outputs):
    model = MLP(3, hidden, k, activation=activation, bias_std=0.5 if bias else 0.0,
                parametrization=parametrization, seed=len(hidden), dtype=torch.float64)
    x1, x2 = points(n1, (3,), seed=n1), points(n2, (3,), seed=5 + n2)
    result = empirical_ntk(model, x1, x2, outputs=outputs, per_layer=True, method="layerwise")
    expected = brute_blocks(model, x1, x2, "trace")
    for name, block in result.blocks.items():
        assert relative_error(block, expected[name]) < TOL, name
    assert relative_error(kept(result, outputs), brute_ntk(model, x1, x2, outputs)) < TOL


@settings(max_examples=20, deadline=None)
@given(n1=st.integers(1, 7), n2=st.integers(1, 6), chunk=st.integers(1, 8),
       outputs=st.sampled_from(MODES), symmetric=st.booleans(),
       method=st.sampled_from(["layerwise", "jacobian", "ntk-vp"]))
def test_chunking_over_points_does_not_change_the_kernel(n1, n2, chunk, outputs, symmetric,
                                                         method):
    model = linear_stack(k=3)
    x1, x2 = points(n1, seed=n1), None if symmetric else points(n2, seed=10 + n2)
    whole = empirical_ntk(model, x1, x2, outputs=outputs, method=method)
    chunked = empirical_ntk(model, x1, x2, outputs=outputs, method=method, chunk_size=chunk)
    assert relative_error(kept(chunked, outputs), kept(whole, outputs)) < TOL


@pytest.mark.parametrize("outputs", MODES)
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("method", ["layerwise", "jacobian", "ntk-vp"])
def test_a_tight_memory_budget_chunks_outputs_and_points_but_not_the_result(outputs, symmetric,
                                                                            method):
    model = MLP(4, [32, 32], 6, seed=0, dtype=torch.float64)
    x1 = points(12, seed=5)
    x2 = None if symmetric else points(9, seed=6)
    whole = empirical_ntk(model, x1, x2, outputs=outputs, method=method)
    tight = empirical_ntk(model, x1, x2, outputs=outputs, method=method, memory_budget=100_000)
    assert relative_error(kept(tight, outputs), kept(whole, outputs)) < TOL


@pytest.mark.parametrize("outputs", MODES)
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("budget", [2**30, 40_000])
def test_row_chunks_against_panels_cover_the_kernel_once(monkeypatch, outputs, symmetric,
                                                         budget):
    """Small cache blocks: row chunks of a few points against one panel, or several panels."""
    model = MLP(4, [16, 16], 3, seed=0, dtype=torch.float64)
    x1, x2 = points(23, seed=7), None if symmetric else points(17, seed=8)
    whole = empirical_ntk(model, x1, x2, outputs=outputs)
    monkeypatch.setattr(_blocks, "BLOCK_SCALARS", 300)
    monkeypatch.setattr(_blocks, "MIN_BLOCK_ROWS", 1)
    blocked = empirical_ntk(model, x1, x2, outputs=outputs, memory_budget=budget)
    assert relative_error(kept(blocked, outputs), kept(whole, outputs)) < TOL


def test_it_works_inside_no_grad():
    model, x = widenet_mlp(), points(4)
    expected = brute_ntk(model, x)
    for method in ("layerwise", "jacobian", "ntk-vp"):
        with torch.no_grad():
            kernel = empirical_ntk(model, x, outputs="full", method=method)
        assert relative_error(kernel.full, expected) < TOL


def test_a_budget_too_small_for_one_point_is_refused():
    with pytest.raises(WidenetError, match="memory_budget"):
        empirical_ntk(widenet_mlp(), points(3), memory_budget=100)


def test_the_model_is_left_untouched():
    model = linear_stack()
    model[0].weight.grad = torch.ones_like(model[0].weight)
    before = copy.deepcopy(model.state_dict())
    pointers = [p.data_ptr() for p in model.parameters()]
    for method in ("auto", "jacobian", "ntk-vp"):
        empirical_ntk(model, points(3), outputs="full", per_layer=True, method=method)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert [p.data_ptr() for p in model.parameters()] == pointers
    assert torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight))
    assert all(p.grad is None for name, p in model.named_parameters() if name != "0.weight")
    assert all(p.requires_grad for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("method", ["auto", "layerwise", "jacobian", "ntk-vp"])
def test_buffers_updated_in_forward_give_the_kernel_of_the_current_state(method):
    """Every pass starts from the model's buffers as they are (the in-place updates neither
    drift from pass to pass nor trip torch.func), and the model's own are left as they were."""
    model, x1, x2 = UpdatesBuffers(), points(4, seed=1), points(3, seed=2)
    kernel = empirical_ntk(model, x1, x2, outputs="full", method=method, chunk_size=2)
    assert relative_error(kernel.full, brute_ntk(UpdatesBuffers(update=False), x1, x2)) < TOL
    assert float(model.calls) == 0.0
    assert torch.equal(model.mean, torch.full((4,), 0.5, dtype=torch.float64))


@pytest.mark.parametrize("method", ["auto", "layerwise", "jacobian", "ntk-vp"])
def test_a_model_that_writes_to_its_input_leaves_the_points_and_the_kernel_intact(method):
    """Every pass gets its own copy of the points (the probe's passes were fed points already
    shifted by earlier passes, and the caller's points were shifted)."""
    x1, x2 = points(4, seed=1), points(3, seed=2)
    before = x1.clone(), x2.clone()
    kernel = empirical_ntk(WritesItsInput(), x1, x2, outputs="full", method=method, chunk_size=2)
    assert torch.equal(x1, before[0])
    assert torch.equal(x2, before[1])
    expected = brute_ntk(WritesItsInput(), x1.clone(), x2.clone())  # each point shifted once
    assert relative_error(kernel.full, expected) < TOL


class CachedTranspose(nn.Module):
    """Keeps a view of its parameter, made in __init__, as a plain attribute."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 4, dtype=torch.float64,
                                               generator=torch.Generator().manual_seed(21)))
        self.weight_t = self.weight.t()
        self.head = nn.Linear(3, 2).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(x @ self.weight_t))


@pytest.mark.parametrize("grad", [True, False])
@pytest.mark.parametrize("method", ["auto", "jacobian", "ntk-vp"])
def test_a_parameter_used_through_a_tensor_cached_before_the_call_is_refused(method, grad):
    """The swapped-in copies never reach such a tensor: its share was silently left out (inside
    torch.no_grad too, where the check's own backward pass once found no graph and let it by)."""
    model = CachedTranspose()
    with (torch.set_grad_enabled(grad),
          pytest.raises(WidenetError, match=r"depends on parameter 'weight' through a tensor")):
        empirical_ntk(model, points(3), method=method)


def test_points_computed_by_the_model_itself_are_taken_as_they_are():
    """Points that require grad through the model's own parameters are not a cached use."""
    model = linear_stack()
    x = model[0](points(3))[:, :4]
    assert x.requires_grad
    expected = brute_ntk(model, x.detach())
    assert relative_error(empirical_ntk(model, x, outputs="full").full, expected) < TOL


def test_dtype_follows_the_inputs():
    model = MLP(4, [8], 2, seed=0)  # float32 parameters
    x = points(3)
    assert empirical_ntk(model, x).ntk.dtype == torch.float64
    assert relative_error(empirical_ntk(model, x, outputs="full").full, brute_ntk(model, x)) < TOL
    assert empirical_ntk(model, x.float()).ntk.dtype == torch.float32


def test_batch_norm_in_eval_mode_is_handled_and_in_training_mode_refused():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2)).double()
    model(points(16))  # running statistics away from their initial values
    model.eval()
    x = points(4)
    assert relative_error(empirical_ntk(model, x, outputs="full").full, brute_ntk(model, x)) < TOL
    model.train()
    with pytest.raises(WidenetError, match=r"model\.eval\(\)"):
        empirical_ntk(model, x)


def test_random_and_batch_coupled_models_are_refused():
    dropout = nn.Sequential(nn.Linear(4, 5), nn.Dropout(0.5), nn.Linear(5, 1)).double()
    with pytest.raises(WidenetError, match="random"):
        empirical_ntk(dropout, points(3))
    with pytest.raises(WidenetError, match="depends on the other points"):
        empirical_ntk(CenterBatch(), points(3))


class Sqrt(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = linear_stack(k=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).sqrt()


def test_a_model_whose_output_is_not_finite_at_the_points_is_refused_as_such():
    with pytest.raises(WidenetError, match="output is NaN or inf at some of the points"):
        empirical_ntk(Sqrt(), points(4))


@pytest.mark.parametrize("method", ["auto", "layerwise", "jacobian", "ntk-vp"])
def test_points_of_huge_norm_give_the_kernel_or_say_what_to_do_never_nan(method):
    """float32 points of norm 1e20: tanh saturates, so the derivatives reach only the last layer
    and the kernel is finite, but A A'^T of the earlier layers overflows (inf * 0 = NaN in the
    layer-wise Grams); without tanh the kernel itself (about 1e40) overflows."""
    x = points(3) * 1e20
    saturated = linear_stack()
    expected = brute_ntk(saturated, x, outputs="trace")
    assert bool(torch.isfinite(expected).all())
    assert relative_error(empirical_ntk(saturated, x, method=method).ntk, expected) < TOL
    overflow = r"NaN or inf entries in torch\.float32.*pass float64 points"
    if method in ("auto", "layerwise"):
        with pytest.raises(WidenetError, match=overflow):
            empirical_ntk(saturated.float(), x.float(), method=method)
    else:
        kernel = empirical_ntk(saturated.float(), x.float(), method=method).ntk
        assert relative_error(kernel, expected) < 1e-5
    with pytest.raises(WidenetError, match=overflow):
        empirical_ntk(nn.Sequential(*saturated[:2]).float(), x.float(), method=method)


@pytest.mark.parametrize("outputs", MODES)
def test_a_wide_mlp_approaches_its_infinite_width_ntk(outputs):
    """NTK parametrization: J J^T -> Theta (x) I_k as the width grows, block by block; ``.ntk``
    and the blocks compare to the limit's in one subtraction."""
    x = points(6, seed=7)
    x = x / x.norm(dim=1, keepdim=True) * 2.0

    def errors(width: int) -> tuple[float, float, float]:
        net = MLP(4, [width, width], 2, activation="relu", bias_std=0.2, seed=width,
                  dtype=torch.float64)
        limit = infinite_kernels(net, x, per_layer=True)
        full_limit = limit.ntk[..., None, None] * torch.eye(2, dtype=torch.float64)
        result = empirical_ntk(net, x, outputs=outputs, per_layer=True)
        block = result.blocks["layers.1.weight"]
        block_limit = limit.blocks["layers.1.weight"]
        expected = reduce_outputs(full_limit, outputs)
        return (float((result.ntk - limit.ntk).norm() / limit.ntk.norm()),
                float((kept(result, outputs) - expected).norm() / expected.norm()),
                float((block - block_limit).norm() / block_limit.norm()))

    narrow, wide = errors(16), errors(4096)
    assert all(w < bound for w, bound in zip(wide, (0.05, 0.05, 0.1), strict=True))
    assert all(w < v for w, v in zip(wide, narrow, strict=True))


class CastsToFloat32(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.float())


@pytest.mark.parametrize(("call", "message"), [
    (lambda m, x: empirical_ntk(m, x.numpy()), "torch.Tensor"),
    (lambda m, x: empirical_ntk(m, x[:0]), "at least one point"),
    (lambda m, x: empirical_ntk(m, x.long()), "floating-point"),
    (lambda m, x: empirical_ntk(m, torch.full_like(x, float("nan"))), "NaN or inf"),
    (lambda m, x: empirical_ntk(m, x, torch.full_like(x, float("inf"))), "x2 contains NaN"),
    (lambda m, x: empirical_ntk(m, x, x[:, :3]), "points of shape"),
    (lambda m, x: empirical_ntk(m, x, x[:, 0]),
     r"x2 of shape \(\d+,\) has points of shape \(\) but x1 has points of shape \(4,\): "
     r"expected x2 of shape \(n, 4\); a single point is x2.unsqueeze\(0\)"),
    (lambda m, x: empirical_ntk(m, x, x.float()), "same dtype"),
    (lambda m, x: empirical_ntk(m, x.to("meta")), "x1 is on the meta device"),
    (lambda m, x: empirical_ntk(m, x, x.to_sparse()), r"x2 must be a dense tensor.*to_dense"),
    (lambda m, x: empirical_ntk(nn.Linear(4, 2, device="meta"), x), "meta device"),
    (lambda m, x: empirical_ntk(m, x[:, :3]), "cannot be applied"),
    (lambda m, x: empirical_ntk(CastsToFloat32(), x),
     r"evaluated in the points' dtype, torch\.float64.*pass points of that dtype"),
    (lambda m, x: empirical_ntk(m, x, chunk_size=0), "chunk_size must be a positive integer"),
    (lambda m, x: empirical_ntk(m, x, chunk_size=-2), "chunk_size must be a positive integer"),
    (lambda m, x: empirical_ntk(m, x, chunk_size=1.5), "chunk_size must be a positive integer"),
    (lambda m, x: empirical_ntk(m, x, memory_budget=0), "memory_budget"),
    (lambda m, x: empirical_ntk(m, x, outputs="all"), "outputs must be one of"),
    (lambda m, x: empirical_ntk(m, x, method="fast"), "method must be one of"),
    (lambda m, x: empirical_ntk(m, x, per_layer="yes"), "per_layer must be True or False"),
    (lambda m, x: empirical_ntk(lambda t: t, x), "nn.Module"),
    (lambda m, x: empirical_ntk(nn.ReLU(), x), "no trainable parameters"),
    (lambda m, x: empirical_ntk(m.requires_grad_(False), x), "no trainable parameters"),
    (lambda m, x: empirical_ntk(nn.Linear(4, 0).double(), x), "no output units"),
    (lambda m, x: empirical_ntk(nn.Linear(4, 0).double(), x, method="jacobian"), "no output"),
])
def test_bad_input_raises_a_widenet_error_naming_the_problem(call, message):
    with pytest.raises(WidenetError, match=message) as caught:
        call(widenet_mlp(), points(3))
    assert "\n" not in str(caught.value)


def test_a_model_returning_something_else_than_a_batch_of_outputs_is_refused():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2).double()

        def forward(self, x):
            return self.lin(x), x

    with pytest.raises(WidenetError, match="one floating-point tensor"):
        empirical_ntk(Pair(), points(3))


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("method", ["layerwise", "jacobian", "ntk-vp"])
@pytest.mark.parametrize("outputs", MODES)
def test_cuda_kernels_match_the_cpu_reference(method, outputs):
    model, x1, x2 = SmallCNN(), points(4, (2, 6, 6), seed=1), points(3, (2, 6, 6), seed=2)
    expected = reduce_outputs(brute_ntk(model, x1, x2), outputs)
    cuda = kept(empirical_ntk(model.cuda(), x1.cuda(), x2.cuda(), outputs=outputs, method=method),
                outputs)
    assert cuda.device.type == "cuda"
    assert relative_error(cuda.cpu(), expected) < TOL


@pytest.mark.gpu
@needs_cuda
def test_cuda_inputs_with_a_cpu_model_run_on_cuda():
    model, x = widenet_mlp(), points(5)
    kernel = empirical_ntk(model, x.cuda(), outputs="full", per_layer=True)
    assert kernel.full.device.type == "cuda"
    assert kernel.ntk.device.type == "cuda"
    assert all(block.device.type == "cuda" for block in kernel.blocks.values())
    assert next(model.parameters()).device.type == "cpu"
    assert relative_error(kernel.full.cpu(), brute_ntk(model, x)) < TOL


@pytest.mark.parametrize("method", ["auto", "layerwise", "jacobian", "ntk-vp"])
def test_points_made_in_inference_mode_and_calls_under_it_give_the_kernel(method):
    """Inference mode turns autograd off and its tensors refuse requires_grad: the kernel is
    computed outside it, from ordinary copies of such points."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).double()
    with torch.inference_mode():
        x = torch.randn(6, 4, dtype=torch.float64)
    expected = reduce_outputs(brute_ntk(model, x.clone()), "trace")
    torch.testing.assert_close(empirical_ntk(model, x, method=method).ntk, expected)
    with torch.inference_mode():
        inside = empirical_ntk(model, x, x.clone(), method=method).ntk
    torch.testing.assert_close(inside.clone(), expected)


@pytest.mark.parametrize("method", ["auto", "layerwise", "jacobian", "ntk-vp"])
def test_a_model_built_in_inference_mode_gives_the_kernel(method):
    """Its parameters, frozen parameters and buffers are inference tensors, which autograd
    refuses to save for the derivatives: the kernel is that of the same model built outside."""

    def build() -> nn.Module:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Tanh(),
                              nn.Linear(8, 2)).double().eval()
        model[0].bias.requires_grad_(False)
        model[1].requires_grad_(False)
        return model

    with torch.inference_mode():
        built_inside = build()
    assert next(built_inside.parameters()).is_inference()
    model, x = build(), points(6)
    expected = reduce_outputs(brute_ntk(model, x), "trace")
    torch.testing.assert_close(empirical_ntk(built_inside, x, method=method).ntk, expected)


@pytest.mark.parametrize("method", ["auto", "jacobian"])
def test_points_that_require_grad_give_the_kernel(method):
    """A model that is not layer-wise (LayerNorm: "auto" takes the Jacobians) on points that
    require grad: the same kernel as on detached points."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 1)).double()
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(empirical_ntk(model, x, method=method).ntk.detach(),
                               reduce_outputs(brute_ntk(model, x.detach()), "trace"))


@pytest.mark.parametrize("method", ["auto", "jacobian", "ntk-vp"])
def test_the_kernel_of_points_that_require_grad_is_a_value_detached_from_them(method):
    """torch.func's derivatives through the Jacobian of a LayerNorm model are not exact (the
    jacobian method's kernel failed gradcheck in x): no method returns a kernel that autograd
    would differentiate, and torch.func transforms are refused in one line."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.LayerNorm(6), nn.Tanh(), nn.Linear(6, 2)).double()
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    kernel = empirical_ntk(model, x, y, method=method, outputs="full")
    assert not kernel.ntk.requires_grad
    assert not kernel.full.requires_grad
    expected = brute_ntk(model, x.detach(), y.detach())
    assert relative_error(kernel.full, expected) < TOL
    with pytest.raises(WidenetError, match=r"cannot run inside a torch\.func transform"):
        torch.func.grad(lambda p: empirical_ntk(model, p, method=method).ntk.sum())(x.detach())


def test_jacobians_products_and_layerwise_kernels_are_values_detached_from_their_arguments():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    v = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    assert not any(j.requires_grad for j in jacobian(model, x).values())
    assert not ntk_vector_product(model, x, v).requires_grad
    layerwise = empirical_ntk(model, x, method="layerwise", outputs="full")
    assert not layerwise.ntk.requires_grad
    assert relative_error(layerwise.full, brute_ntk(model, x.detach())) < TOL


class _ScaledByAHeldTensor(nn.Module):
    """A LayerNorm MLP whose hidden units are scaled by a plain tensor attribute that requires
    grad (not a parameter, so not differentiated in the NTK)."""

    def __init__(self):
        super().__init__()
        self.first, self.last = nn.Linear(3, 6), nn.Linear(6, 2)
        self.norm = nn.LayerNorm(6, elementwise_affine=False)
        self.scale = torch.linspace(0.7, 1.3, 6, dtype=torch.float64, requires_grad=True)

    def forward(self, x):
        return self.last(torch.tanh(self.norm(self.first(x) * self.scale)))


@pytest.mark.parametrize("method", ["auto", "layerwise", "jacobian", "ntk-vp"])
def test_the_kernel_is_a_value_detached_from_tensors_the_model_holds(method):
    """Tensors the model holds that require grad are no more a way to a kernel autograd would
    differentiate (wrongly, through LayerNorm's Jacobian) than the points are."""
    torch.manual_seed(0)
    model = _ScaledByAHeldTensor().double()
    x = torch.randn(4, 3, dtype=torch.float64)
    kernel = empirical_ntk(model, x, method=method, outputs="full")
    assert not kernel.ntk.requires_grad
    assert not kernel.full.requires_grad
    assert relative_error(kernel.full, brute_ntk(model, x)) < TOL
    if method == "jacobian":
        assert not any(j.requires_grad for j in jacobian(model, x).values())
        v = torch.randn(4, 2, dtype=torch.float64)
        assert not ntk_vector_product(model, x, v).requires_grad


class _ChangesASavedTensor(nn.Module):
    """tanh's output, which autograd saves for its derivative, is changed in place afterwards."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 1)

    def forward(self, x):
        hidden = torch.tanh(self.a(x))
        out = self.b(hidden)
        hidden.mul_(2.0)
        return out


@pytest.mark.parametrize("method", ["auto", "layerwise", "jacobian"])
def test_a_model_autograd_cannot_differentiate_is_refused_in_one_line(method):
    model = _ChangesASavedTensor().double()
    with pytest.raises(WidenetError, match="cannot take the reverse-mode derivatives") as error:
        empirical_ntk(model, torch.randn(5, 3, dtype=torch.float64), method=method)
    assert "\n" not in str(error.value)


def test_the_refusal_of_backward_hooks_says_where_they_are():
    """A hook on the model itself is the model's, not that of a module named by its class; the
    global ones are registered by register_module_*, which the message names."""
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    handle = model.register_full_backward_pre_hook(lambda module, go: None)
    with pytest.raises(WidenetError, match=r"^the model has backward hooks \(register_full_"):
        empirical_ntk(model, x)
    handle.remove()
    handle = torch.nn.modules.module.register_module_full_backward_pre_hook(
        lambda module, go: None)
    try:
        with pytest.raises(WidenetError, match=r"^torch has global module backward hooks "
                                               r"\(register_module_full_backward_hook"):
            empirical_ntk(model, x)
    finally:
        handle.remove()


@pytest.mark.parametrize("method", ["auto", "layerwise", "jacobian", "ntk-vp"])
def test_backward_hooks_that_change_the_gradients_are_refused(method):
    """A full backward hook scaling a Tanh's input gradient by 10: the layer-wise method used the
    changed gradients (the kernel was 165 off), the others failed inside torch.func."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    expected = reduce_outputs(brute_ntk(model, x), "trace")
    handle = model[1].register_full_backward_hook(lambda module, gi, go: (gi[0] * 10,))
    with pytest.raises(WidenetError, match="module 1 of the model has backward hooks"):
        empirical_ntk(model, x, method=method)
    handle.remove()
    handle = torch.nn.modules.module.register_module_full_backward_hook(
        lambda module, gi, go: None)
    try:
        with pytest.raises(WidenetError, match="torch has global module backward hooks"):
            empirical_ntk(model, x, method=method)
    finally:
        handle.remove()
    torch.testing.assert_close(empirical_ntk(model, x, method=method).ntk, expected)


class _Checkpointed(nn.Module):
    """A hidden layer run through torch.utils.checkpoint (non-reentrant)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 5), nn.Linear(5, 1)

    def forward(self, x):
        hidden = torch.utils.checkpoint.checkpoint(lambda t: torch.tanh(self.a(t)), x,
                                                   use_reentrant=False)
        return self.b(hidden)


@pytest.mark.parametrize("method", ["auto", "layerwise", "jacobian", "ntk-vp"])
def test_a_checkpointed_model_is_refused_saying_so(method):
    """The layer-wise pass's advice was about tensors changed in place."""
    with pytest.raises(WidenetError, match=r"no method can run through torch\.utils\.checkpoint"):
        empirical_ntk(_Checkpointed(), torch.randn(4, 3), method=method)
