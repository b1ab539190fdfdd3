"""Hidden features of any torch module for the feature monitors: which layers are found, what
they read, the default monitors on four kinds of model, and hooks that never outlive a read."""

from __future__ import annotations

import copy
import warnings

import pandas as pd
import pytest
import torch
from torch import nn

import widenet as wn
from widenet.diagnostics import default_monitors
from widenet.diagnostics.builtin import FeatureMovementMonitor, SoftRankMonitor
from widenet.diagnostics.feature_layers import HiddenFeatures, feature_layers
from widenet.diagnostics.features import soft_ranks
from widenet.dynamics.losses import mse
from widenet.dynamics.monitor import RunState
from widenet.errors import WidenetError

F64 = torch.float64


class TwoLayer(nn.Module):
    """A custom module with its own forward: no structure to read the features from."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(3, 16), nn.Linear(16, 12), nn.Linear(12, 1)
        self.act = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc2(self.act(self.fc1(x)))))


def data(n: int = 24, shape: tuple[int, ...] = (3,)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, *shape, generator=g, dtype=F64)
    return x, torch.sin(x.reshape(n, -1)[:, :1])


def no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def relative(after: torch.Tensor, before: torch.Tensor) -> float:
    with torch.no_grad():
        return float((after - before).norm() / before.norm())


def train_with_defaults(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs):
    return wn.train(model, x, y, lr=0.05, steps=4, log_every=2,
                    monitors=default_monitors(**kwargs))


def feature_rows(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs) -> pd.DataFrame:
    """The feature monitors' measurements of a short run with the default monitors."""
    return train_with_defaults(model, x, y, **kwargs).measured("feature_movement", "soft_ranks")


def monitor_rows(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> pd.DataFrame:
    """The default monitors' rows at step 0 and after 4 GD steps, driven by hand (for inputs
    that widenet.train does not take, such as images)."""
    monitors = default_monitors()
    state = RunState(model, x, y, mse, 0.05, 0)
    for monitor in monitors:
        monitor.start(state)
    rows = [{k: v for m in monitors for k, v in m.measure(state).items()}]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(4):
        optimizer.zero_grad()
        mse(model(x), y).backward()
        optimizer.step()
    state.step = 4
    rows.append({k: v for m in monitors for k, v in m.measure(state).items()})
    return pd.DataFrame(rows)


def check_features(history, model: nn.Module, initial: nn.Module, x: torch.Tensor,
                   features: dict[str, object]) -> None:
    """Each label's movement and the last label's soft ranks against features computed by hand
    (``features[label](net, x)``) before and after training."""
    last = history.iloc[-1]
    for label, compute in features.items():
        with torch.no_grad():
            before, after = compute(initial, x), compute(model, x)
        assert last[f"feature_movement/{label}"] == pytest.approx(relative(after, before))
        assert history.iloc[0][f"feature_movement/{label}"] == 0.0
    with torch.no_grad():
        final = compute(model, x).reshape(len(x), -1)
    assert last[f"stable_rank/{label}"] == pytest.approx(soft_ranks(final).stable_rank)
    assert [c for c in history if c.startswith("stable_rank/")] == [f"stable_rank/{label}"]
    assert no_hooks(model)


def test_default_monitors_on_a_plain_sequential_read_its_activations() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Sequential(nn.Linear(16, 12), nn.Tanh()),
                          nn.Linear(12, 1), nn.Sigmoid()).double()
    initial, (x, y) = copy.deepcopy(model), data()
    history = feature_rows(model, x, y)
    check_features(history, model, initial, x, {
        "1": lambda net, x: torch.relu(net[0](x)),
        "2": lambda net, x: net[2](torch.relu(net[0](x)))})  # not the output's sigmoid
    assert "feature_movement/3" not in history


def test_default_monitors_on_a_widenet_cnn_flatten_conv_features() -> None:
    model = wn.nn.cnn(1, (5, 5), channels=6, depth=2, seed=0, dtype=F64)
    initial, (x, y) = copy.deepcopy(model), data(12, (1, 5, 5))
    history = monitor_rows(model, x, y)
    check_features(history, model, initial, x, {
        "1": lambda net, x: net[:2](x).flatten(1), "2": lambda net, x: net[:4](x).flatten(1)})


def test_default_monitors_on_an_mlp_read_its_hidden_layers() -> None:
    model = wn.MLP(3, [16, 12], 1, "abs", seed=0, dtype=F64)
    initial, (x, y) = copy.deepcopy(model), data()
    history = feature_rows(model, x, y)
    check_features(history, model, initial, x, {
        "1": lambda net, x: net.activation(net.layers[0](x)),
        "2": lambda net, x: net.activation(net.layers[1](net.activation(net.layers[0](x))))})


def test_default_monitors_on_a_custom_module_read_the_named_modules() -> None:
    torch.manual_seed(0)
    model = TwoLayer().double()
    initial, (x, y) = copy.deepcopy(model), data()
    history = feature_rows(model, x, y, feature_modules=[model.act, "fc2"])
    check_features(history, model, initial, x, {
        "act": lambda net, x: torch.tanh(net.fc1(x)),
        "fc2": lambda net, x: net.fc2(torch.tanh(net.fc1(x)))})


def test_default_monitors_leave_out_unknown_features_with_a_warning() -> None:
    torch.manual_seed(0)
    model, (x, y) = TwoLayer().double(), data()
    with pytest.warns(UserWarning, match=r"left out: .*TwoLayer.*feature_modules="):
        result = train_with_defaults(model, x, y)
    for name in ("feature_movement", "soft_ranks"):
        assert list(result.measurements[name].columns) == ["step"]
        assert result.measurements[name].empty
    assert len(result.measured("weight_movement", "ntk")["ntk_movement"]) == 2
    assert no_hooks(model)


def test_an_explicit_feature_monitor_refuses_a_model_it_cannot_read() -> None:
    model, (x, y) = TwoLayer().double(), data()
    for monitor in (FeatureMovementMonitor(), SoftRankMonitor()):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(WidenetError, match="name the modules"):
                wn.train(model, x, y, lr=0.1, steps=1, monitors=[monitor])


@pytest.mark.parametrize(("model", "modules", "message"), [
    (nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1)), None, "no activation module"),
    (nn.Sequential(nn.Linear(3, 3), nn.Softmax(dim=1)), None, "no activation module"),
    (TwoLayer(), ["fc3"], "no submodule 'fc3'"),
    (TwoLayer(), [nn.ReLU()], "not a submodule"),
    (TwoLayer(), ["fc1", "fc1"], "twice"),
    (TwoLayer(), "fc1", "non-empty list"),
    (TwoLayer(), [], "non-empty list"),
])
def test_feature_layers_errors(model: nn.Module, modules: object, message: str) -> None:
    with pytest.raises(WidenetError, match=message):
        feature_layers(model, modules)


def test_a_shared_activation_instance_is_not_guessed_at() -> None:
    act = nn.ReLU()
    model = nn.Sequential(nn.Linear(3, 4), act, nn.Linear(4, 4), act, nn.Linear(4, 1))
    with pytest.raises(WidenetError, match="several places"):
        feature_layers(model)
    assert feature_layers(model, ["0", "2"]).labels == ("0", "2")


def test_monitors_sharing_features_run_one_forward_pass_per_step() -> None:
    model, (x, y) = wn.MLP(3, [8], 1, seed=0, dtype=F64), data()
    calls = []
    model.layers[0].register_forward_hook(lambda *_: calls.append(1))
    shared = HiddenFeatures()
    movement, ranks = FeatureMovementMonitor(modules=shared), SoftRankMonitor(modules=shared)
    state = RunState(model, x, y, mse, 0.1, 0)
    movement.start(state)
    ranks.start(state)
    assert len(calls) == 1
    movement.measure(state)
    ranks.measure(state)
    assert len(calls) == 1  # same step, same parameters: the features are reused
    with torch.no_grad():
        model.layers[0].weight.add_(1.0)
    first = ranks.measure(state)
    assert len(calls) == 2  # the parameters changed: read again
    state.step = 1
    assert movement.measure(state)["feature_movement/1"] > 0
    assert ranks.measure(state) == first
    assert len(calls) == 3


def test_hooks_are_removed_when_the_forward_pass_raises() -> None:
    class Failing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.act = nn.Linear(3, 4), nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.act(self.fc(x))
            raise RuntimeError("boom")

    model = Failing()
    with pytest.raises(wn.WidenetError, match=r"model\(x\) failed: boom"):
        feature_layers(model, ["act"]).read(model, torch.randn(2, 3))
    assert no_hooks(model)
