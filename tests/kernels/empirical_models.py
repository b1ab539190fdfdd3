"""Models and brute-force references for the empirical-NTK tests.

The reference Jacobian is as naive as it gets: one ``torch.autograd.grad`` call per point and
output unit, on a float64 copy of the model, with respect to ``model.named_parameters()``.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from widenet.kernels.result import Kernels
from widenet.models import MLP


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These kernels are tiny: one thread avoids OpenMP overhead (and stalls on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def brute_jacobian(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """{name: (n, k, parameter size)}: d f_a(x_i) / d parameter, point by point, unit by unit.

    A float64 model is used as it is (a model with torch.nn.utils.weight_norm cannot be copied).
    """
    if any(t.dtype != torch.float64 for t in (*model.parameters(), *model.buffers())
           if t.is_floating_point()):
        model = copy.deepcopy(model).double()
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    rows = []
    for i in range(x.shape[0]):
        out = model(x[i:i + 1].double()).reshape(-1)
        grads = [torch.autograd.grad(out[a], [p for _, p in named], retain_graph=True,
                                     allow_unused=True, materialize_grads=True)
                 for a in range(out.numel())]
        rows.append([torch.stack([g[h].reshape(-1) for g in grads]) for h in range(len(named))])
    return {name: torch.stack([row[h] for row in rows]) for h, (name, _) in enumerate(named)}


def brute_blocks(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None,
                 outputs: str = "full") -> dict[str, torch.Tensor]:
    """Per-parameter NTK blocks J_h(x1) J_h(x2)^T in the layout of ``outputs``."""
    j1 = brute_jacobian(model, x1)
    j2 = j1 if x2 is None else brute_jacobian(model, x2)
    return {name: reduce_outputs(torch.einsum("iap,jbp->ijab", j1[name], j2[name]), outputs)
            for name in j1}


def brute_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None,
              outputs: str = "full") -> torch.Tensor:
    return sum(brute_blocks(model, x1, x2, outputs).values())


def reduce_outputs(full: torch.Tensor, outputs: str) -> torch.Tensor:
    """(n1, n2, k, k) -> what ``empirical_ntk(..., outputs=outputs)`` keeps: K_ab for "full",
    K_aa for "diagonal", the kernel per output unit (1/k) sum_a K_aa for "trace"."""
    if outputs == "full":
        return full
    diagonal = torch.diagonal(full, dim1=2, dim2=3)
    return diagonal.mean(-1) if outputs == "trace" else diagonal


def kept(result: Kernels, outputs: str) -> torch.Tensor:
    """The part of an empirical ``Kernels`` that ``outputs`` asked for (see ``reduce_outputs``)."""
    return {"trace": result.ntk, "diagonal": result.diagonal, "full": result.full}[outputs]


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


# ---- models ---------------------------------------------------------------------------------

def widenet_mlp(bias: bool = True, k: int = 3, width: int = 7) -> nn.Module:
    return MLP(4, [width, width + 1], k, activation="tanh", bias_std=0.3 if bias else 0.0,
               seed=1, dtype=torch.float64)


def linear_stack(bias: bool = True, k: int = 2) -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(4, 6, bias=bias), nn.ReLU(), nn.Linear(6, 5, bias=bias),
                         nn.Tanh(), nn.Linear(5, k, bias=bias)).double()


def inplace_relu_stack() -> nn.Module:
    """In-place ReLUs rewrite the layer outputs after the layers ran."""
    torch.manual_seed(8)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(inplace=True), nn.Linear(5, 5),
                         nn.ReLU(inplace=True), nn.Linear(5, 2)).double()


class RewrittenAbove(nn.Module):
    """The second layer's output is rewritten in place (through a view) after the layer ran, on
    batches of more than ``points`` points only."""

    def __init__(self, points: int):
        super().__init__()
        torch.manual_seed(9)
        self.first, self.second = nn.Linear(4, 5), nn.Linear(5, 2)
        self.points = points
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.second(torch.tanh(self.first(x)))
        if x.shape[0] > self.points:
            z[:, :1].mul_(2.0)
        return z


class SmallCNN(nn.Module):
    """Conv2d (padding, stride) -> Conv1d over rows -> Linear on a sequence -> Linear."""

    def __init__(self, bias: bool = True, k: int = 2):
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(2, 3, 3, padding=1, bias=bias)
        self.conv2 = nn.Conv2d(3, 4, 3, stride=2, dilation=1, bias=bias)
        self.conv1d = nn.Conv1d(4, 3, 2, padding=1, bias=bias)
        self.mix = nn.Linear(3, 2, bias=bias)
        self.head = nn.Linear(2 * 5, k, bias=bias)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))               # (n, 3, 6, 6)
        h = torch.tanh(self.conv2(h))              # (n, 4, 2, 2)
        h = torch.relu(self.conv1d(h.flatten(2)))  # (n, 3, 5)
        h = self.mix(h.transpose(1, 2))            # (n, 5, 2): a Linear at 5 positions
        return self.head(h.flatten(1))


class Scale(nn.Module):
    """A custom module with its own parameter: the layer-wise method does not know it."""

    def __init__(self, features: int):
        super().__init__()
        self.gain = nn.Parameter(torch.linspace(0.5, 1.5, features, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


class ScaledOutput(nn.Module):
    """A learnable scalar (a 0-dim parameter) times an MLP, used in the parent's forward."""

    def __init__(self):
        super().__init__()
        self.net = linear_stack()
        self.scale = nn.Parameter(torch.tensor(1.7, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.net(x)


class UpdatesBuffers(nn.Module):
    """Counts its calls and keeps a running mean of its inputs (buffers updated in place in
    forward, the second one from the points), which it subtracts before the update: the output
    is that of the current state. ``update=False``: the same function without the updates."""

    def __init__(self, update: bool = True):
        super().__init__()
        self.net = linear_stack()
        self.register_buffer("calls", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.full((4,), 0.5, dtype=torch.float64))
        self.update = update

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x - self.mean)
        if self.update:
            self.calls += 1
            self.mean.mul_(0.9).add_(0.1 * x.detach().mean(0))
        return out


def custom_model(k: int = 2) -> nn.Module:
    torch.manual_seed(4)
    return nn.Sequential(nn.Linear(4, 6), Scale(6), nn.Tanh(), nn.LayerNorm(6),
                         nn.Linear(6, k)).double()


class CalledTwice(nn.Module):
    """One Linear applied twice: its weight is shared between two uses."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.inner = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.inner(torch.tanh(self.inner(x)))))


class TiedWeights(nn.Module):
    """Two Linear modules registering the same weight Parameter."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(6)
        self.first = nn.Linear(4, 4)
        self.second = nn.Linear(4, 4, bias=False)
        self.second.weight = self.first.weight
        self.head = nn.Linear(4, 2)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.second(torch.tanh(self.first(x)))))


class UsedOutside(nn.Module):
    """A Linear called once whose weight is also used directly by the parent (an output tie)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(7)
        self.embed = nn.Linear(3, 4, bias=False)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(torch.tanh(self.embed(x)), self.embed.weight.T)


class MatrixOutput(nn.Module):
    """Per-point output of shape (2, 3): k = 6 output units."""

    def __init__(self):
        super().__init__()
        self.net = linear_stack(k=6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(-1, 2, 3)


class ScalarOutput(nn.Module):
    """Per-point scalar output, shape (n,)."""

    def __init__(self):
        super().__init__()
        self.net = linear_stack(k=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, 0]


class Squeezed(nn.Module):
    """``f(x).squeeze()``: shape (n,) for n > 1 points and a scalar for one."""

    def __init__(self):
        super().__init__()
        self.net = linear_stack(k=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze()


class CenterBatch(nn.Module):
    """Subtracts the batch mean: a point's output depends on the other points."""

    def __init__(self):
        super().__init__()
        self.net = linear_stack()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x - x.mean(0))


class WritesItsInput(nn.Module):
    """Shifts its input in place before a linear stack (as ReLU(inplace=True) first would)."""

    def __init__(self):
        super().__init__()
        self.net = linear_stack()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.sub_(0.5))


class DoubledAboveThree(nn.Module):
    """Doubles its output on batches of more than 3 points, which the probe (3 points, and 1)
    does not see: per point (alone), a linear stack."""

    def __init__(self):
        super().__init__()
        self.net = linear_stack()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * (2.0 if x.shape[0] > 3 else 1.0)


class Prototypes(nn.Module):
    """Scores against class prototypes: a Linear applied to a fixed (classes, d) tensor, whose
    first axis is not the points whatever their number."""

    def __init__(self, classes: int = 2):
        super().__init__()
        torch.manual_seed(10)
        self.embed = nn.Linear(4, 5)
        self.project = nn.Linear(4, 5)
        self.register_buffer("prototypes", torch.randn(classes, 4))
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.embed(x)) @ torch.tanh(self.project(self.prototypes)).T


class SequenceFirst(nn.Module):
    """Points of shape (T, d) = (2, 4) run through a Linear as a sequence-first (T, n, d) tensor."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(11)
        self.step = nn.Linear(4, 3)
        self.head = nn.Linear(6, 2)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.step(x.transpose(0, 1)))  # (2, n, 3)
        return self.head(h.transpose(0, 1).flatten(1))


class ReversedBatch(nn.Module):
    """A Linear applied to the batch in reverse order (and reversed back): each point's output is
    its own, but row i of the layer belongs to point n - 1 - i."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(12)
        self.inner = nn.Linear(4, 5)
        self.head = nn.Linear(5, 2)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.inner(x.flip(0))).flip(0))


def weight_normed() -> nn.Module:
    """torch.nn.utils.weight_norm at the top level: weight = g v / ||v|| set by a pre-hook."""
    torch.manual_seed(13)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return nn.utils.weight_norm(nn.Linear(4, 3).double())


def parametrized_weight_norm() -> nn.Module:
    torch.manual_seed(14)
    return nn.utils.parametrizations.weight_norm(nn.Linear(4, 3).double())


class Aliased(nn.Module):
    """One Linear registered under two attribute names (``self.alias = self.l``)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(15)
        self.l = nn.Linear(4, 3)
        self.alias = self.l
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.alias(torch.tanh(x))


class Distances(nn.Module):
    """Distances (torch.cdist) of a Linear's features to 3 fixed prototypes, then a Linear:
    jacrev's batched derivatives of cdist are a few per cent off."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(20)
        self.embed = nn.Linear(4, 5)
        self.head = nn.Linear(3, 2)
        self.register_buffer("prototypes", torch.randn(1, 3, 5))
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distances = torch.cdist(self.embed(x)[:, None], self.prototypes)[:, 0]
        return self.head(torch.tanh(distances))


def prelu_stack() -> nn.Module:
    torch.manual_seed(16)
    return nn.Sequential(nn.Linear(4, 5), nn.PReLU(5), nn.Linear(5, 2)).double()


class Recurrent(nn.Module):
    """An LSTM or GRU over points of shape (T, d) = (3, 4), read out at the last step."""

    def __init__(self, kind: type[nn.Module]):
        super().__init__()
        torch.manual_seed(17)
        self.rnn = kind(4, 3, batch_first=True)
        self.head = nn.Linear(3, 2)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def points(n: int, shape: tuple[int, ...] = (4,), seed: int = 0) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


# name -> (model factory, per-point input shape, whether the layer-wise method is exact)
MODELS = {
    "mlp": (widenet_mlp, (4,), True),
    "mlp-no-bias": (lambda: widenet_mlp(bias=False), (4,), True),
    "linear": (linear_stack, (4,), True),
    "linear-no-bias": (lambda: linear_stack(bias=False), (4,), True),
    "inplace-relu": (inplace_relu_stack, (4,), True),
    "cnn": (SmallCNN, (2, 6, 6), True),
    "cnn-no-bias": (lambda: SmallCNN(bias=False), (2, 6, 6), True),
    "matrix-output": (MatrixOutput, (4,), True),
    "scalar-output": (ScalarOutput, (4,), True),
    "squeezed": (Squeezed, (4,), True),
    "custom": (custom_model, (4,), False),
    "scalar-parameter": (ScaledOutput, (4,), False),
    "called-twice": (CalledTwice, (4,), False),
    "tied-weights": (TiedWeights, (4,), False),
    "used-outside": (UsedOutside, (3,), False),
    "prototypes": (Prototypes, (4,), False),
    "prototypes-3": (lambda: Prototypes(classes=3), (4,), False),  # 3 = the audit's probe size
    "sequence-first": (SequenceFirst, (2, 4), False),
    "reversed-batch": (ReversedBatch, (4,), False),
    "weight-norm": (weight_normed, (4,), False),
    "parametrized-weight-norm": (parametrized_weight_norm, (4,), False),
    "aliased": (Aliased, (4,), True),
    "prelu": (prelu_stack, (4,), False),
    "cdist": (Distances, (4,), True),
    "lstm": (lambda: Recurrent(nn.LSTM), (3, 4), False),
    "gru": (lambda: Recurrent(nn.GRU), (3, 4), False),
}
# models for which torch has no forward-mode derivatives (method="ntk-vp" refuses them)
NO_FORWARD_MODE = {"weight-norm", "parametrized-weight-norm", "cdist"}
