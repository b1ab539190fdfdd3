"""The empirical NTK on models its design did not single out: each test pins a fixed failure."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.kernels.empirical_models import (
    brute_ntk,
    linear_stack,
    one_thread,  # noqa: F401 (an autouse fixture)
    points,
    relative_error,
)
from widenet.errors import WidenetError
from widenet.kernels.empirical import empirical_ntk
from widenet.kernels.jacobians import jacobian
from widenet.kernels.ntk_vp import ntk_vector_product

TOL = 1e-10
METHODS = ("auto", "layerwise", "jacobian", "ntk-vp")


class Outer(nn.Module):
    """A head on ``inner``, which may be compiled."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        torch.manual_seed(9)
        self.head = nn.Linear(2, 2).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.inner(x)))


@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("method", METHODS)
def test_a_compiled_model_or_part_runs_eagerly_with_its_own_names(method, nested):
    """Dynamo failed (an AssertionError) on the probe's hooks and swapped parameters."""
    model = Outer(linear_stack()) if nested else linear_stack()
    compiled = (Outer(torch.compile(model.inner, backend="eager")) if nested
                else torch.compile(model, backend="eager"))
    x = points(4)
    result = empirical_ntk(compiled, x, outputs="full", per_layer=True, method=method)
    assert relative_error(result.full, brute_ntk(model, x)) < TOL
    assert list(result.blocks) == [name for name, _ in compiled.named_parameters()]
    assert list(jacobian(compiled, x)) == list(result.blocks)


class Embedded(nn.Module):
    """Token indices, passed as floats, converted back to indices for an embedding."""

    def __init__(self, sparse: bool = False):
        super().__init__()
        torch.manual_seed(6)
        self.embedding = nn.Embedding(7, 3, padding_idx=0, sparse=sparse)
        self.head = nn.Linear(2 * 3, 2)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.embedding(x.long())).flatten(1))


def test_integer_points_are_refused_saying_how_an_embedding_takes_float_ones():
    model, tokens = Embedded(), torch.tensor([[1, 0], [3, 3], [6, 2], [0, 0]])
    with pytest.raises(WidenetError, match=r"dtype torch\.int64; .*nn\.Embedding.*x\.long\(\)"):
        empirical_ntk(model, tokens)
    result = empirical_ntk(model, tokens.double(), outputs="full")
    assert relative_error(result.full, brute_ntk(model, tokens.double())) < TOL


@pytest.mark.parametrize("method", METHODS)
def test_an_uninitialized_lazy_module_is_refused_saying_to_run_it_first(method):
    model = nn.Sequential(nn.LazyLinear(3), nn.Tanh(), nn.Linear(3, 2)).double()
    with pytest.raises(WidenetError, match=r"uninitialized.*run the model once"):
        empirical_ntk(model, points(3), method=method)
    model(points(1))
    assert relative_error(empirical_ntk(model, points(3), method=method).ntk,
                          brute_ntk(model, points(3), outputs="trace")) < TOL


@pytest.mark.parametrize("method", ["auto", "jacobian", "ntk-vp"])
def test_an_embedding_with_sparse_gradients_has_the_kernel_of_a_dense_one(method):
    """sparse=True changes the layout of the gradients, not the function; torch.func raised."""
    tokens = torch.tensor([[1, 0], [3, 3], [6, 2], [0, 0]], dtype=torch.float64)
    model = Embedded(sparse=True)
    result = empirical_ntk(model, tokens, tokens[:2], outputs="full", method=method)
    assert relative_error(result.full, brute_ntk(Embedded(), tokens, tokens[:2])) < TOL
    assert model.embedding.sparse


@pytest.mark.parametrize("method", METHODS)
def test_a_budget_too_small_for_one_block_says_how_much_it_needs(method):
    """The need was printed in MiB to one decimal: '0.0 MiB, more than memory_budget=1000'."""
    with pytest.raises(WidenetError, match=r"needs about [1-9]\d*(\.\d+)? kB, more than "
                                           r"memory_budget=1000 bytes"):
        empirical_ntk(linear_stack(), points(4), memory_budget=1000, method=method)


class Attention(nn.Module):
    """A Transformer encoder layer on (n, T, d) points (sequence-first inside when not
    ``batch_first``), in eval mode, where torch takes fused attention kernels."""

    def __init__(self, batch_first: bool):
        super().__init__()
        torch.manual_seed(7)
        self.batch_first = batch_first
        self.layer = nn.TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.0,
                                                batch_first=batch_first)
        self.head = nn.Linear(3 * 4, 2)
        self.double().eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layer(x) if self.batch_first else self.layer(x.transpose(0, 1)).transpose(0, 1)
        return self.head(h.flatten(1))


@pytest.mark.parametrize("batch_first", [True, False])
def test_attention_in_eval_mode_has_forward_mode_derivatives(batch_first):
    """The fused attention kernels have none: ntk-vp and ntk_vector_product raised."""
    model, x1, x2 = Attention(batch_first), points(4, (3, 4), seed=1), points(3, (3, 4), seed=2)
    expected = brute_ntk(model, x1, x2)
    result = empirical_ntk(model, x1, x2, outputs="full", method="ntk-vp")
    assert relative_error(result.full, expected) < TOL
    v = points(3, (2,), seed=3)
    assert relative_error(ntk_vector_product(model, x1, v, x2=x2),
                          torch.einsum("ijab,jb->ia", expected, v)) < TOL
    assert torch.backends.mha.get_fastpath_enabled()


class TakesAMask(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(4, 2).double()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(x * mask)


@pytest.mark.parametrize(("model", "x", "torch_says"), [
    (Embedded(), torch.tensor([[1.0, 9.0], [0.0, 2.0]], dtype=torch.float64), "index out of range"),
    (linear_stack(), points(3, (4, 2)), "mat1 and mat2 shapes"),
    (TakesAMask(), points(3), "missing 1 required positional argument"),
])
@pytest.mark.parametrize("method", ["auto", "jacobian"])
def test_points_the_model_cannot_take_are_refused_as_such(model, x, torch_says, method):
    """torch's IndexError (an index out of an embedding's range) and TypeError (a forward that
    takes more arguments) came through raw, where a RuntimeError got the WidenetError."""
    with pytest.raises(WidenetError, match=f"the model cannot be applied to .*{torch_says}"):
        empirical_ntk(model, x, method=method)


class EmptyLayers(nn.Module):
    """A Linear with no inputs (only its bias acts) and one with no outputs beside an MLP."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(8)
        self.no_inputs, self.no_outputs = nn.Linear(0, 3), nn.Linear(4, 0)
        self.hidden, self.head = nn.Linear(4, 3), nn.Linear(3, 2)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hidden(x) + self.no_inputs(x[:, :0]) + self.no_outputs(x).sum(-1, keepdim=True)
        return self.head(torch.tanh(h))


@pytest.mark.parametrize("method", METHODS)
def test_layers_with_no_inputs_or_no_outputs_count_for_what_they_are(method):
    """The layer-wise factors of p = 0 inputs or q = 0 outputs failed to reshape (in the probe,
    for every method)."""
    model, x1, x2 = EmptyLayers(), points(4, seed=1), points(3, seed=2)
    result = empirical_ntk(model, x1, x2, outputs="full", per_layer=True, method=method)
    assert relative_error(result.full, brute_ntk(model, x1, x2)) < TOL
    assert list(result.blocks) == [name for name, _ in model.named_parameters()]


def test_the_probes_own_refusals_are_not_taken_for_points_the_model_cannot_take():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2)).double()
    with pytest.raises(WidenetError, match=r"^1 \(BatchNorm1d\) is in training mode"):
        empirical_ntk(model, points(3))
