"""The training loop: equivalence with a hand-written loop, divergence, resume, bad input."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import widenet as wn
from widenet.dynamics.checkpoint import Checkpoint
from widenet.dynamics.lazy import LazyModel
from widenet.dynamics.linearize import linearize
from widenet.dynamics.losses import (
    accuracy_for,
    argmax_accuracy,
    get_loss,
    mse,
    sign_accuracy,
)
from widenet.dynamics.monitor import Monitor, RunState
from widenet.dynamics.optim import NormalizedUpdateScaling, Optimizer
from widenet.dynamics.train import _divergence, train


def regression(n: int = 24, d: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x, torch.sin(x.sum(1, keepdim=True))


def net(seed: int = 0, **kwargs) -> wn.MLP:
    return wn.MLP(4, [32, 32], 1, "relu", bias_std=0.1, seed=seed, dtype=torch.float64, **kwargs)


def test_gd_equals_a_hand_written_loop() -> None:
    x, y = regression()
    model, reference = net(), net()
    result = train(model, x, y, lr=0.3, steps=15, log_every=5)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.3)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = 0.5 * (reference(x) - y).square().sum() / x.shape[0]
        losses.append(float(loss.detach()))
        loss.backward()
        optimizer.step()
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-13)
    assert result.status == "completed"
    assert result.steps == 15
    assert list(result.history["step"]) == [0, 5, 10, 15]
    assert result.history["loss"].iloc[1] == pytest.approx(losses[5], rel=1e-12)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_minibatch_sgd_with_momentum_equals_a_hand_written_loop(loss: str) -> None:
    """Epochs of torch.randperm(n) from a generator seeded by ``seed``, consecutive batches,
    the n mod batch_size points left over sitting out their epoch; heavy-ball v <- mu v + g,
    theta <- theta - lr v; the loss a mean over the batch, times loss_scale. Every step's
    parameters agree to round-off (a few ulps of 1)."""
    x, y = regression(n=10)
    classes = 3
    if loss == "cross_entropy":
        y = (torch.arange(10) % classes)

    def model_() -> wn.MLP:
        return wn.MLP(4, [16], 1 if loss == "mse" else classes, "tanh", seed=0,
                      dtype=torch.float64)

    def objective(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if loss == "mse":
            return 0.5 * (output - target).square().sum() / output.shape[0]
        picked = torch.log_softmax(output, 1)[torch.arange(len(target)), target]
        return -picked.mean()

    lr, mu, batch, scale, seed, steps = 0.2, 0.9, 4, 0.7, 5, 9
    reference = model_()
    parameters = list(reference.parameters())
    velocity = [torch.zeros_like(p) for p in parameters]
    generator, order, position = torch.Generator().manual_seed(seed), None, 10
    for _ in range(steps):
        if position + batch > 10:
            order, position = torch.randperm(10, generator=generator), 0
        index = order[position:position + batch]
        position += batch
        gradients = torch.autograd.grad(scale * objective(reference(x[index]), y[index]),
                                        parameters)
        with torch.no_grad():
            for p, v, g in zip(parameters, velocity, gradients, strict=True):
                v.mul_(mu).add_(g)
                p.sub_(lr * v)
    model = model_()
    train(model, x, y, lr=lr, steps=steps, loss=loss, loss_scale=scale, seed=seed,
          optimizer=Optimizer("sgd", momentum=mu, batch_size=batch))
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=8 * torch.finfo(torch.float64).eps)


class Counting(Monitor):
    """Records sum of parameters and a counter that lives in its state (tests resume)."""

    name = "counting"

    def __init__(self, every: int | None = None, fail_at: int | None = None):
        self.every, self.fail_at, self.calls = every, fail_at, 0

    def measure(self, state: RunState) -> dict[str, float]:
        if state.step == self.fail_at:
            raise KeyboardInterrupt
        self.calls += 1
        total = sum(float(p.detach().sum()) for p in state.model.parameters())
        return {"calls": self.calls, "param_sum": total, "has_grads": float(bool(state.gradients))}

    def state_dict(self) -> dict:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.calls = state["calls"]


def test_resume_ends_identical_to_an_uninterrupted_run(tmp_path) -> None:
    x, y = regression(n=40)
    kwargs = {"lr": 0.05, "steps": 30, "optimizer": Optimizer("sgd", batch_size=8, momentum=0.9),
              "log_every": 5, "seed": 7}
    whole = net()
    expected = train(whole, x, y, monitors=[Counting()],
                     checkpoint=Checkpoint(tmp_path / "a.pt", every=10), **kwargs)
    interrupted = net()
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, x, y, monitors=[Counting(fail_at=25)],
              checkpoint=Checkpoint(tmp_path / "b.pt", every=10), **kwargs)
    resumed_net = net(seed=99)  # whatever it holds is replaced by the checkpoint
    resumed = train(resumed_net, x, y, monitors=[Counting()],
                    checkpoint=Checkpoint(tmp_path / "b.pt", every=10, resume=True), **kwargs)
    for p, q in zip(whole.parameters(), resumed_net.parameters(), strict=True):
        assert torch.equal(p, q)
    assert resumed.history.equals(expected.history)
    assert resumed.measurements["counting"].equals(expected.measurements["counting"])


def test_a_diverging_run_is_recorded_not_raised() -> None:
    x, y = regression()
    result = train(net(), x, y, lr=50.0, steps=100, log_every=10)
    assert result.status == "diverged"
    assert result.steps < 100
    assert "loss" in result.reason
    last = result.history.iloc[-1]
    assert last["step"] == result.steps
    assert not last["loss"] < 1e3
    assert len(result.history) >= 2


def _gradient_at(step: int, value: float):
    """A gradient hook that sets every entry to ``value`` at the ``step``-th backward pass
    (counting from 0) and leaves the others alone."""
    calls = []

    def hook(gradient: torch.Tensor) -> torch.Tensor:
        calls.append(None)
        return torch.full_like(gradient, value) if len(calls) == step + 1 else gradient
    return hook


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_a_non_finite_gradient_at_a_finite_loss_stops_the_run_before_the_step(
        value: float) -> None:
    """The step would write inf/NaN into the model; the run ends as a diverged loss ends it,
    with the parameters of the diverging row theta_3, those after the last good step."""
    x, y = regression()
    model, reference = net(), net()
    model.layers[1].weight.register_hook(_gradient_at(3, value))
    result = train(model, x, y, lr=0.1, steps=10, log_every=5)
    train(reference, x, y, lr=0.1, steps=3, log_every=5)
    assert (result.status, result.steps) == ("diverged", 3)
    assert f"gradient of layers.1.weight became {value}" in result.reason
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q)
    last = result.history.iloc[-1]
    assert last["step"] == 3
    assert math.isfinite(last["loss"])
    assert not math.isfinite(last["grad_norm"])


def test_a_non_finite_sparse_gradient_stops_the_run_before_the_step() -> None:
    """An embedding with sparse=True: its gradient's values are tested (summed over repeated
    rows, as SGD adds them)."""
    class Lookup(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = torch.nn.Embedding(10, 1, sparse=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.embedding(x[:, 0].long().clamp(0, 9))

    torch.manual_seed(0)
    model = Lookup()
    calls = []

    def at_the_third_pass(gradient: torch.Tensor) -> torch.Tensor:  # sparse: no full_like
        calls.append(None)
        return gradient * math.inf if len(calls) == 3 else gradient
    model.embedding.weight.register_hook(at_the_third_pass)
    x = torch.arange(10.0).repeat(2).reshape(20, 1)
    result = train(model, x, torch.ones(20, 1), steps=6, log_every=1,
                   optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    assert (result.status, result.steps) == ("diverged", 2)
    assert "gradient of embedding.weight became inf" in result.reason
    assert bool(torch.isfinite(model.embedding.weight).all())


def test_a_gradient_whose_norm_overflows_with_finite_entries_is_stepped_on() -> None:
    """Entries near the largest float32 whose sums overflow are finite: no divergence (a
    learning rate of 0 keeps the step finite)."""
    x, y = regression()
    model = net().float()
    model.layers[1].weight.register_hook(_gradient_at(1, 3e38))  # 32 x 32 of them: 1-norm inf
    result = train(model, x.float(), y.float(), steps=3, log_every=1,
                   optimizer=lambda p: torch.optim.SGD(p, lr=0.0))
    assert (result.status, result.reason, result.steps) == ("completed", "", 3)
    assert result.history["grad_norm"].iloc[1] == math.inf


def test_a_net_that_fits_its_targets_at_the_start_is_not_called_diverged() -> None:
    x, _ = regression()
    model = net()
    with torch.no_grad():
        y = model(x)  # initial loss exactly 0; weight decay then moves the net off the targets
    result = train(model, x, y, steps=30, log_every=10,
                   optimizer=lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=0.1))
    assert result.history["loss"].iloc[0] == 0
    assert 0 < result.history["loss"].iloc[-1] < float(y.square().mean()) / 2  # zero-output loss
    assert (result.status, result.reason, result.steps) == ("completed", "", 30)


def test_divergence_is_judged_against_the_initial_or_the_zero_output_loss() -> None:
    assert _divergence(1e-3, 0.0, 0.5, 1e6) == ""
    assert "exceeded 1e+06 x 0.5, the larger of its initial value 0 and the loss of zero " \
           "outputs 0.5" in _divergence(6e5, 0.0, 0.5, 1e6)
    assert "initial value 2" in _divergence(3e6, 2.0, 0.5, 1e6)
    assert _divergence(1e300, 0.0, 0.0, 1e6) == ""  # no scale: only non-finite losses count
    assert _divergence(1e300, 0.0, math.inf, 1e6) == ""  # a non-finite zero-output loss is no scale
    assert "became nan" in _divergence(math.nan, 0.0, 0.0, 1e6)


def test_monitor_cadence_test_loss_and_progress_off() -> None:
    x, y = regression()
    xt, yt = regression(n=10, seed=1)
    result = train(net(), x, y, lr=0.1, steps=20, log_every=5, monitors=[Counting(every=10)],
                   test_data=(xt, yt), progress=False)
    history, counted = result.history, result.measurements["counting"]
    assert list(history["step"]) == [0, 5, 10, 15, 20]
    assert "calls" not in history.columns  # per-step rows only: no column mostly empty
    assert list(counted["step"]) == [0, 10, 20]
    assert list(counted["calls"]) == [1, 2, 3]
    assert counted["has_grads"].iloc[0] == 1.0  # the batch gradient at theta_0
    assert counted["has_grads"].iloc[-1] == 0.0  # no step follows the final row
    joined = result.measured("counting")
    assert list(joined["step"]) == [0, 10, 20]
    assert joined["loss"].tolist() == history["loss"].iloc[[0, 2, 4]].tolist()
    model = net()
    train(model, x, y, lr=0.1, steps=20, progress=False)
    with torch.no_grad():
        assert history["test_loss"].iloc[-1] == pytest.approx(float(mse(model(xt), yt)))


@pytest.mark.parametrize(("loss", "lr"), [("logistic", 0.5), ("exponential", 0.02),
                                         ("cross_entropy", 0.5)])
def test_classification_losses_train(loss: str, lr: float) -> None:
    x, _ = regression(n=40)
    labels = (x[:, 0] > 0).long()
    y = labels if loss == "cross_entropy" else 2.0 * labels.double() - 1
    outputs = 2 if loss == "cross_entropy" else 1
    model = wn.MLP(4, [32], outputs, "relu", seed=0, dtype=torch.float64)
    result = train(model, x, y, lr=lr, steps=100, loss=loss)
    assert result.history["loss"].iloc[-1] < 0.7 * result.history["loss"].iloc[0]


@pytest.mark.parametrize(("loss", "check"), [("cross_entropy", "_class_labels"),
                                           ("logistic", "_signed_labels")])
def test_the_labels_are_checked_once_before_training_not_at_every_step(
        loss: str, check: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A per-step check would cost a device sync each step: the training steps use the loss
    without it, and labels it refuses (in y or the test targets) stop the run before a step."""
    import widenet.dynamics.losses as losses

    x, _ = regression(n=12)
    labels = (x[:, 0] > 0).long()
    y = labels if loss == "cross_entropy" else 2.0 * labels.double() - 1
    outputs = 2 if loss == "cross_entropy" else 1
    calls = []
    checked = getattr(losses, check)
    monkeypatch.setattr(losses, check, lambda *args: calls.append(1) or checked(*args))
    model = wn.MLP(4, [8], outputs, "relu", seed=0, dtype=torch.float64)
    train(model, x, y, lr=0.1, steps=10, loss=loss, test_data=(x, y), log_every=100)
    assert len(calls) <= 4  # the accuracies of the two rows logged, at steps 0 and 10
    before = copy.deepcopy(model.state_dict())
    bad = y + 2
    for arguments in ({"y": bad}, {"y": y, "test_data": (x, bad)}):
        with pytest.raises(wn.WidenetError, match="labels"):
            train(model, x, lr=0.1, steps=10, loss=loss, **arguments)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_classification_losses_log_their_accuracy() -> None:
    """Cross-entropy: (1/n) #{argmax_k f_k = y}; logistic: (1/n) #{y f > 0}, on the training
    and the test set, from the same pass as the loss; mse logs none."""
    x, _ = regression(n=40)
    xt, _ = regression(n=15, seed=3)
    labels, labels_test = (x[:, 0] > 0).long(), (xt[:, 0] > 0).long()
    model = wn.MLP(4, [32], 2, "relu", seed=0, dtype=torch.float64)
    history = train(model, x, labels, lr=0.5, steps=20, loss="cross_entropy",
                    test_data=(xt, labels_test)).history
    with torch.no_grad():
        train_hits = (model(x).argmax(1) == labels).double().mean()
        test_hits = (model(xt).argmax(1) == labels_test).double().mean()
    assert history["accuracy"].iloc[-1] == float(train_hits)
    assert history["test_accuracy"].iloc[-1] == float(test_hits)
    assert history["accuracy"].iloc[-1] > history["accuracy"].iloc[0]
    signs = 2.0 * labels.double().unsqueeze(1) - 1
    single = wn.MLP(4, [32], 1, "relu", seed=0, dtype=torch.float64)
    history = train(single, x, signs, lr=0.5, steps=5, loss="logistic").history
    with torch.no_grad():
        assert history["accuracy"].iloc[-1] == float((single(x) * signs > 0).double().mean())
    assert "accuracy" not in train(net(), *regression(), lr=0.1, steps=2).history


def test_accuracy_formulas() -> None:
    output = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, -1.0]])
    assert argmax_accuracy(output, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)
    assert argmax_accuracy(output, torch.tensor([[1.0, 0], [0, 1], [0, 1]])) == pytest.approx(2 / 3)
    assert sign_accuracy(torch.tensor([[0.5], [-1.0]]), torch.tensor([1.0, 1.0])) == 0.5
    assert accuracy_for(torch.nn.CrossEntropyLoss()) is argmax_accuracy
    assert accuracy_for("exponential") is sign_accuracy
    assert accuracy_for("mse") is None


def test_measurements_are_joined_by_name_and_names_are_distinct() -> None:
    x, y = regression()
    result = train(net(), x, y, lr=0.1, steps=4, log_every=2, monitors=[Counting()])
    with pytest.raises(wn.WidenetError, match="named 'ntk' in this run; its monitors: counting"):
        result.measured("ntk")
    with pytest.raises(wn.WidenetError, match="name the monitors"):
        result.measured()
    assert result.measured("counting", how="left").shape[0] == len(result.history)
    with pytest.raises(wn.WidenetError, match="two monitors are named 'counting'"):
        train(net(), x, y, lr=0.1, steps=1, monitors=[Counting(), Counting(every=2)])


def test_losses_are_the_documented_means() -> None:
    f = torch.tensor([[0.5], [-1.0], [2.0]], dtype=torch.float64)
    y = torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)
    assert float(get_loss("mse")(f, y)) == pytest.approx((0.25 + 0 + 9) / 6)
    margins = [0.5, 1.0, -2.0]
    assert float(get_loss("logistic")(f, y)) == pytest.approx(
        sum(math.log1p(math.exp(-q)) for q in margins) / 3)
    assert float(get_loss("exponential")(f, y)) == pytest.approx(
        sum(math.exp(-q) for q in margins) / 3)


def test_lazy_training_approaches_the_linearized_trajectory() -> None:
    """Chizat et al.: training alpha (f - f_0) with loss / alpha^2 deviates from the linearized
    model's trajectory by O(1/alpha)."""
    x, y = regression()
    deviations = []
    for alpha in (4.0, 32.0):
        model, linear = LazyModel(net(), alpha), LazyModel(linearize(net()), alpha)
        for m in (model, linear):
            train(m, x, y, lr=0.2, steps=30, loss_scale=m.loss_scale)
        deviations.append(float((model(x) - linear(x)).detach().norm()))
    assert deviations[1] < deviations[0] / 4  # theory: 8x smaller


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"lr": 0.0}, "lr must be >"), ({"lr": -1.0}, "lr must be >"),
    ({"lr": float("nan")}, "lr must be a finite"), ({"loss": "hinge"}, "unknown loss"),
    ({"optimizer": "lbfgs"}, "unknown optimizer"),
    ({"optimizer": Optimizer("sgd", batch_size=100)}, "larger than the 24 training points"),
    ({"optimizer": Optimizer(batch_size=8)}, "full-batch"), ({"steps": -1}, "steps must be"),
    ({"checkpoint": 5}, "checkpoint must be a path"), ({"log_every": 0}, "log_every must be"),
])
def test_bad_configurations(kwargs: dict, message: str) -> None:
    x, y = regression()
    arguments = {"lr": 0.1, "steps": 5, **kwargs}
    with pytest.raises(wn.WidenetError, match=message):
        train(net(), x, y, **arguments)


def test_bad_data() -> None:
    x, y = regression()
    with pytest.raises(wn.WidenetError, match=r"x must have shape \(n, d\), one row per point, "
                       r"got shape \(24,\); n points of one feature are x.unsqueeze\(1\)"):
        train(net(), x[:, 0], y, lr=0.1, steps=1)
    with pytest.raises(wn.WidenetError, match="rows"):
        train(net(), x, y[:5], lr=0.1, steps=1)
    with pytest.raises(wn.WidenetError, match="NaN or inf"):
        train(net(), x, torch.full_like(y, float("nan")), lr=0.1, steps=1)


@pytest.mark.parametrize("dtype", [torch.bool, torch.complex128])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "logistic"])
def test_boolean_and_complex_targets_are_refused_before_training(dtype: torch.dtype,
                                                                 loss: str) -> None:
    """No loss takes them (torch fails inside the first step); the model is left untouched."""
    x, y = regression()
    model = net()
    before = [p.detach().clone() for p in model.parameters()]
    # y.double() makes 0/1 of booleans, not the -1/+1 labels the message said it gave
    signed = r"2 \* y\.double\(\) - 1 \(labels -1/\+1 from True/False\)" \
        if dtype == torch.bool else r"y\.double\(\) \(regression, -1/\+1 labels\)"
    with pytest.raises(wn.WidenetError, match=f"y has dtype {dtype}; .*{signed} or "
                       r"y\.long\(\) \(class labels\)"):
        train(model, x, (y > 0).to(dtype), lr=0.1, steps=2, loss=loss)
    with pytest.raises(wn.WidenetError, match=f"test y has dtype {dtype}"):
        train(model, x, y, lr=0.1, steps=2, test_data=(x, (y > 0).to(dtype)))
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


class _Flat(torch.nn.Module):
    """One score per point, shape (n,): no class axis."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 1, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)[:, 0]


class _Pair(_Flat):
    """Returns a tuple, as recurrent torch modules do."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.linear(x), x


def test_outputs_a_loss_cannot_take_are_refused_before_training() -> None:
    """cross_entropy on outputs without a class axis, and a model that returns a tuple, failed
    with a raw torch error inside the first step (or a message about mse's shapes)."""
    x, y = regression()
    labels = (y[:, 0] > 0).long()
    with pytest.raises(wn.WidenetError, match=r"cross_entropy needs outputs of shape \(n, k\)"
                       r", one score per class, but the model's are \(24,\).*'logistic'"):
        train(_Flat(), x, labels, lr=0.1, steps=1, loss="cross_entropy")
    with pytest.raises(wn.WidenetError, match="the model returns a tuple, not a tensor"):
        train(_Pair(), x, y, lr=0.1, steps=1)


@pytest.mark.parametrize("loader", [False, True])
def test_targets_computed_with_gradients_are_constants(loader: bool) -> None:
    """A teacher's outputs computed without torch.no_grad: the second step back-propagated
    through the teacher's freed graph (a raw RuntimeError), and the first gave the teacher and
    the inputs gradients. The run equals one on the detached targets."""
    x, _ = regression()
    x = x.clone().requires_grad_(True)
    teacher = net(seed=5)
    y = teacher(x)
    data = ([(x[:12], y[:12]), (x[12:], y[12:])],) if loader else (x, y)
    model, reference = net(), net()
    train(model, *data, lr=0.1, steps=4, test_data=(x, y))
    assert all(p.grad is None for p in teacher.parameters())
    assert x.grad is None
    plain = ([(x[:12].detach(), y[:12].detach()), (x[12:].detach(), y[12:].detach())],) \
        if loader else (x.detach(), y.detach())
    train(reference, *plain, lr=0.1, steps=4)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), reference.parameters(),
                                                strict=True))


def test_checkpoint_path_may_be_a_string(tmp_path) -> None:
    x, y = regression()
    result = train(net(), x, y, lr=0.1, steps=4,
                   checkpoint=Checkpoint(str(tmp_path / "c.pt"), every=2))
    assert result.status == "completed"
    assert (tmp_path / "c.pt").exists()


def test_monitors_run_at_their_own_cadence() -> None:
    """A monitor every 4 steps with log_every=6 is measured at 0, 4, 8, 12 and the end."""
    x, y = regression()
    result = train(net(), x, y, lr=0.1, steps=14, log_every=6, monitors=[Counting(every=4)])
    assert list(result.history["step"]) == [0, 4, 6, 8, 12, 14]
    assert list(result.measurements["counting"]["step"]) == [0, 4, 8, 12, 14]
    with pytest.raises(wn.WidenetError, match="every must be a positive integer"):
        train(net(), x, y, lr=0.1, steps=2, monitors=[Counting(every=0)])


def test_failed_starts_leave_no_hooks_on_the_model(tmp_path) -> None:
    x, y = regression()
    model = net()
    with pytest.raises(wn.WidenetError):
        train(model, x, y, lr=0.1, steps=2,
              optimizer=Optimizer(gradient_scaling=NormalizedUpdateScaling()),
              monitors=[wn.diagnostics.LinearizationMonitor()])
    assert all(not m._forward_hooks for m in model.modules())


def test_targets_that_do_not_fit_the_outputs() -> None:
    x, y = regression()
    with pytest.raises(wn.WidenetError, match="one target per output"):
        train(net(), x, torch.cat([y, y], 1), lr=0.1, steps=1)
    with pytest.raises(wn.WidenetError, match="one row per point"):
        train(net(), x, torch.tensor(1.0), lr=0.1, steps=1)
    with pytest.raises(wn.WidenetError, match="pair"):
        train(net(), x, y, lr=0.1, steps=1, test_data=x)
    with pytest.raises(wn.WidenetError, match="plain gradient descent"):
        train(net(), x, y, lr=0.1, steps=1, optimizer=Optimizer(momentum=0.9))


def test_inputs_the_model_cannot_take_are_a_widenet_error() -> None:
    x, y = regression()
    with pytest.raises(wn.WidenetError, match=r"cannot be applied to x of shape \(24, 3\)"):
        train(net(), x[:, :3], y, lr=0.1, steps=1)
    xt, yt = regression(n=5)
    with pytest.raises(wn.WidenetError, match=r"cannot be applied to test x of shape \(5, 5\)"):
        train(net(), x, y, lr=0.1, steps=1, test_data=(torch.cat([xt, xt[:, :1]], 1), yt))


def test_the_input_check_leaves_random_state_and_buffers_untouched() -> None:
    """A model with dropout and batch norm trains exactly as if nothing had probed it first: the
    check's forward pass restores the generator and the running statistics."""
    x, y = regression()

    def model() -> torch.nn.Module:
        torch.manual_seed(5)
        return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.BatchNorm1d(16),
                                   torch.nn.Dropout(0.3), torch.nn.Linear(16, 1)).double()

    probed, reference = model(), model()
    torch.manual_seed(11)
    train(probed, x, y, lr=0.1, steps=3, progress=False)
    torch.manual_seed(11)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        (0.5 * (reference(x) - y).square().sum() / x.shape[0]).backward()
        optimizer.step()
    with torch.no_grad():
        reference(x)  # the final row's forward pass (running statistics move in train mode)
    for (name, p), q in zip(probed.state_dict().items(), reference.state_dict().values(),
                            strict=True):
        assert torch.equal(p, q), name
