"""The training loop: full-batch GD, minibatch SGD with momentum, Adam or any torch optimizer,
on tensors or a DataLoader, with monitors.

Every ``log_every`` steps (and at the end) one row goes into the History: the step, the
full-batch training loss at theta_s (and the accuracy, for classification losses), the norm of
the batch gradient at theta_s, the optimizer's base learning rate, the test loss (and accuracy)
when test data are given. Each monitor's numbers go into its own table of measurements, one row
per step where it ran (``TrainResult.measurements``; ``TrainResult.measured`` joins them with
the History). A non-finite batch loss, or one above ``divergence_factor`` times the loss scale
(the larger of the initial full-batch loss and the loss of zero outputs on the training set),
ends the run with status "diverged", keeping every row logged so far plus the diverging one;
so does a NaN or infinite gradient at a finite loss, found before the optimizer would write it
into the model (the parameters stay theta_s, those of the diverging row).
The zero-output loss (||y||^2/(2n) for MSE, log k for cross-entropy over k classes) sets the
scale when the initial loss is about 0, as for a net that already fits its targets: a loss
compared with a vanishing initial one alone would count every rounding error as divergence.
Where both are 0 only a non-finite loss counts.

With ``checkpoint=Checkpoint(path, every, resume)`` the run state (model, optimizer, batches,
monitors, rows; widenet.dynamics.checkpoint) is written atomically before the first step
(the run's first, or a resumed run's) and every ``every`` steps;
``resume=True`` continues from it after checking that it belongs to this run, and ends exactly
where the uninterrupted run would have.

Each step is :meth:`_Loop.gradient` (forward and backward on the step's batch), then the row if
one is due, then (the loss and the gradients checked) the optimizer's update;
:meth:`_Loop.finish` measures the final row at theta_T.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from widenet.dynamics.arguments import check_inputs_fit, check_monitors, checked_targets
from widenet.dynamics.batches import (
    LoaderBatches,
    TensorBatches,
    check_loader,
    check_resumable,
    gathered,
    is_loader,
    loader_description,
)
from widenet.dynamics.checkpoint import (
    Checkpoint,
    checkpoint_spec,
    fingerprint,
    load_checkpoint,
    random_state,
    restore_random_state,
    save_checkpoint,
    saved,
)
from widenet.dynamics.losses import Loss, accuracy_for, check_targets, get_loss, unchecked
from widenet.dynamics.monitor import Monitor, RunState
from widenet.dynamics.optim import Optimizer, OptimizerFactory, Updates, resolve_optimizer
from widenet.errors import WidenetError
from widenet.seeds import check_seed
from widenet.validation import data_matrix, finite_real, nonnegative_int, positive_int


@dataclass
class TrainResult:
    """The History (one row per logged step: step, loss, lr, grad_norm, accuracy, test_loss,
    test_accuracy, xi/...), the final status ("completed" or "diverged"), why it diverged (empty
    otherwise), the number of optimizer steps taken, and each monitor's measurements
    ({monitor.name: a table with ``step`` and the monitor's columns, one row per step where it
    ran}): no column of either table is empty on most rows."""

    history: pd.DataFrame
    status: str
    reason: str
    steps: int
    measurements: dict[str, pd.DataFrame] = field(default_factory=dict)

    def measured(self, *monitors: str, how: str = "inner") -> pd.DataFrame:
        """The History's rows at the steps where every named monitor ran, with those monitors'
        columns beside: ``result.measured("ntk")[["step", "loss", "ntk_movement"]]``.
        ``how="left"`` keeps every History row instead (NaN where a monitor did not run)."""
        if how not in ("inner", "left"):
            raise WidenetError(f"how must be 'inner' or 'left', got {how!r}")
        if not monitors:
            raise WidenetError("name the monitors to join, e.g. result.measured('ntk'); this "
                               f"run has {', '.join(self.measurements) or 'none'}")
        table = self.history
        for name in monitors:
            if name not in self.measurements:
                raise WidenetError(f"no monitor named {name!r} in this run; its monitors: "
                                   f"{', '.join(self.measurements) or 'none'}")
            table = table.merge(self.measurements[name], on="step", how=how)
        return table


def train(model: nn.Module, x: torch.Tensor | Iterable, y: torch.Tensor | None = None, *,
          lr: float | None = None, steps: int, loss: str | Loss = "mse",
          loss_scale: float = 1.0,
          optimizer: str | Optimizer | torch.optim.Optimizer | OptimizerFactory = "gd",
          monitors: Sequence[Monitor] = (), log_every: int = 10,
          test_data: tuple[torch.Tensor, torch.Tensor] | None = None, seed: int = 0,
          checkpoint: str | Path | Checkpoint | None = None, divergence_factor: float = 1e6,
          progress: bool | None = None) -> TrainResult:
    """Train ``model`` in place for ``steps`` optimizer steps and return its History.

    Data: tensors ``x`` (n, d) and ``y``, or ``x`` a ``torch.utils.data.DataLoader`` (or any
    re-iterable of (x, y) batches, e.g. a list) and no ``y``. From a loader, step s takes its
    next batch; when a pass ends the next one begins, so one epoch is ``len(loader)`` steps
    (``steps = epochs * len(loader)`` trains for whole epochs); the logged loss and the
    monitors use the whole training set, gathered once (widenet.dynamics.batches).

    The objective is loss_scale * loss (e.g. 1/alpha^2 for lazy training). ``optimizer``: a
    name in any case ("gd", "sgd", "Adam") or an :class:`Optimizer` spec (momentum, batch size,
    gradient scaling; SGD minibatches of tensors are shuffled by ``seed``), both built at base
    learning rate ``lr`` times the model's ``lr_scales`` (the parametrization's); or a
    ``torch.optim.Optimizer`` on the model's parameters, or a factory ``callable(params) ->
    Optimizer`` given the model's trainable parameters: these keep their own learning rates
    (leave ``lr`` out; the History's ``lr`` is the first group's). ``checkpoint``: a path or a
    :class:`Checkpoint` (every, resume). The run stops with status "diverged" at a non-finite
    loss or one above ``divergence_factor`` times the larger of the initial loss and the loss of
    zero outputs, or at a non-finite gradient, before the step (module docstring). Inputs are
    cast to the model's dtype and device. ``progress=None`` shows a bar only on a terminal.
    """
    loss_fn = get_loss(loss)
    if not isinstance(model, nn.Module):
        raise WidenetError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    parameter = next(model.parameters(), None)
    if parameter is None:
        raise WidenetError("the model has no parameters to train")
    if isinstance(x, DataLoader) and y is not None:
        raise WidenetError("the loader yields the targets; leave y out with a DataLoader")
    loader = x if y is None and is_loader(x) else None
    if loader is not None:
        check_loader(loader)
        x, y = gathered(loader)
        where = "the loader's "
    elif y is None:
        raise WidenetError("give the targets y (or a DataLoader of (x, y) batches as x)")
    else:
        where = ""
    # The data are constants: detached, so that targets computed with gradients (a teacher's
    # outputs) neither receive gradients nor have their graph back-propagated at every step.
    x = data_matrix(x, f"{where}x").detach().to(parameter.dtype).to(parameter.device)
    y = checked_targets(y, x.shape[0], f"{where}y").detach().to(parameter.device)
    lr = None if lr is None else finite_real(lr, "lr", minimum=0.0, strict=True)
    steps = nonnegative_int(steps, "steps")
    log_every = positive_int(log_every, "log_every")
    loss_scale = finite_real(loss_scale, "loss_scale", minimum=0.0, strict=True)
    divergence_factor = finite_real(divergence_factor, "divergence_factor", minimum=1.0)
    seed = check_seed(seed)
    if test_data is not None:
        if not isinstance(test_data, tuple | list) or len(test_data) != 2:
            raise WidenetError("test_data must be a pair (x_test, y_test)")
        x_test = data_matrix(test_data[0], "test x").detach().to(parameter.dtype) \
            .to(parameter.device)
        y_test = checked_targets(test_data[1], x_test.shape[0], "test y")
        test_data = (x_test, y_test.detach().to(x.device))
    checkpoint = checkpoint_spec(checkpoint)
    if checkpoint is not None and loader is not None:
        check_resumable(loader)
    monitors = list(monitors)
    check_monitors(monitors)
    outputs = check_inputs_fit(model, x, "x")
    check_targets(loss_fn, y, (x.shape[0], *outputs))
    if test_data is not None:
        check_inputs_fit(model, test_data[0], "test x")
        check_targets(loss_fn, test_data[1], (test_data[0].shape[0], *outputs))
    updates = resolve_optimizer(optimizer, model, lr, loader=loader is not None)
    batches = TensorBatches(x, y, updates.batch(x.shape[0]), seed) if loader is None \
        else LoaderBatches(loader, parameter.dtype, parameter.device)

    run = None
    if checkpoint is not None:
        x_test, y_test = (None, None) if test_data is None else test_data
        settings = {"lr": lr, "loss_scale": loss_scale, "seed": seed, "log_every": log_every,
                    "divergence_factor": divergence_factor}
        if loader is not None:
            settings["loader"] = loader_description(loader)
        run = fingerprint(model, {"x": x, "y": y, "test x": x_test, "test y": y_test}, loss,
                          updates.description, settings, monitors)
    show = sys.stderr.isatty() if progress is None else progress
    scaling = updates.gradient_scaling
    try:
        loop = _Loop(model, x, y, loss_fn, loss_scale, updates, batches, monitors, test_data,
                     outputs)
        start = 0
        if checkpoint is not None and checkpoint.resume and saved(checkpoint.path):
            start = loop.load(load_checkpoint(checkpoint.path, run, model, steps, x.device,
                                              batches.KEYS))
        else:
            loop.start()
        saving = None if checkpoint is None else (checkpoint, run)
        if saving is not None:  # a path that cannot be written (a read-only folder) fails
            loop.save(saving, start)  # here, before any step
        return loop.run(start, steps, log_every, divergence_factor, saving, show)
    finally:
        if scaling is not None:
            scaling.detach()


class _Loop:
    """One training run's moving parts, so that steps, logging and checkpoints share them."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Loss,
                 loss_scale: float, updates: Updates, batches: TensorBatches | LoaderBatches,
                 monitors: list[Monitor], test_data: tuple[torch.Tensor, torch.Tensor] | None,
                 outputs: tuple[int, ...]):
        self.model, self.x, self.y = model, x, y
        self.loss_fn, self.loss_scale, self.accuracy = loss_fn, loss_scale, accuracy_for(loss_fn)
        self.step_loss = unchecked(loss_fn)  # train checked the targets' labels once
        self.updates, self.optimizer = updates, updates.optimizer
        self.batches, self.monitors, self.test_data = batches, monitors, test_data
        self.gradient_scaling = updates.gradient_scaling
        names = {id(p): name for name, p in model.named_parameters()}
        # The parameters the optimizer steps, named: their gradients are checked before a step.
        self.trained = [(names[id(p)], p) for group in self.optimizer.param_groups
                        for p in group["params"]]
        self.rows: list[dict] = []
        self.measured: dict[str, list[dict]] = {monitor.name: [] for monitor in monitors}
        self.initial_loss = math.nan
        with torch.no_grad():  # the loss of zero outputs: the divergence scale's floor
            zeros = torch.zeros(x.shape[0], *outputs, dtype=x.dtype, device=x.device)
            self.zero_loss = float(_scalar(self.step_loss(zeros, y)))
        self.output: torch.Tensor | None = None  # the last full-batch forward pass's outputs
        if self.gradient_scaling is not None:
            self.gradient_scaling.attach(model)

    def state(self, step: int, gradients: dict[str, torch.Tensor]) -> RunState:
        return RunState(self.model, self.x, self.y, self.loss_fn, self.updates.lr(), step,
                        gradients, self.updates.name, self.loss_scale, self.updates.momentum,
                        self.gradient_scaling is not None)

    def recording(self) -> contextlib.AbstractContextManager:
        """Let the gradient scaling observe this forward/backward pass (and no other)."""
        if self.gradient_scaling is None:
            return contextlib.nullcontext()
        return self.gradient_scaling.recording()

    def start(self) -> None:
        for monitor in self.monitors:
            monitor.start(self.state(0, {}))

    def evaluate(self, x: torch.Tensor, y: torch.Tensor, prefix: str = "") -> dict[str, float]:
        """The loss (and accuracy, for a classification loss) on (x, y) at the current theta."""
        with torch.no_grad():
            output = self.model(x)
            row = {f"{prefix}loss": float(self.step_loss(output, y))}
            if self.accuracy is not None:
                row[f"{prefix}accuracy"] = self.accuracy(output, y)
        return row

    def run(self, start: int, steps: int, log_every: int, divergence_factor: float,
            saving: tuple[Checkpoint, dict] | None, show: bool) -> TrainResult:
        """Steps start..steps-1 (log, then update), then the final measurement at theta_T."""
        with tqdm(total=steps, initial=start, disable=not show, desc="training") as bar:
            for step in range(start, steps):
                batch_loss, suspect, full_batch, factors = self.gradient(step)
                # Divergence is judged on the batch loss: no extra full pass on unlogged steps.
                if step == 0:
                    self.initial_loss = batch_loss if full_batch \
                        else self.evaluate(self.x, self.y)["loss"]
                diverged = _divergence(batch_loss, self.initial_loss, self.zero_loss,
                                       divergence_factor) \
                    or (self.gradient_divergence() if suspect else "")
                due = [m for m in self.monitors
                       if diverged or step % (m.every or log_every) == 0]
                if diverged or due or step % log_every == 0:
                    self.log(step, self.training_row(batch_loss, full_batch), factors, due)
                if diverged:
                    return self.result("diverged", diverged, step)
                self.optimizer.step()
                bar.update()
                if saving is not None and (step + 1) % saving[0].every == 0:
                    self.save(saving, step + 1)
        return self.finish(steps, divergence_factor)

    def gradient(self, step: int) -> tuple[float, bool, bool, dict[str, float]]:
        """The forward and backward pass of step ``step`` on its batch at theta_s, gradient
        scaling applied: the batch loss, whether an entry of the optimizer's parameters'
        gradients may be NaN or infinite (the sum of their per-tensor sums is not finite:
        always so when an entry is, rarely when finite entries overflow), whether the batch is
        the whole training set, and the scaling factors xi_l (empty without scaling)."""
        xb, yb, full_batch = self.batches.next(step)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad(), self.recording():
            output = self.model(xb)
            batch_loss = _scalar(self.step_loss(output, yb))
            (self.loss_scale * batch_loss).backward()
        self.output = output.detach() if full_batch else None
        factors = {} if self.gradient_scaling is None else self.gradient_scaling.apply()
        # One number read (the sum of the per-tensor sums, sparse ones too; stacking them
        # would cost more than the sums on a small net): it is not finite when an entry is not
        total = sum(p.grad.sum() for _, p in self.trained if p.grad is not None)
        return float(batch_loss.detach()), not math.isfinite(total), full_batch, factors

    def gradient_divergence(self) -> str:
        """Why the run stops before the optimizer steps on gradients of which an entry is NaN
        or infinite (the step would write it into the model), naming the first such parameter;
        "" if every entry is finite."""
        for name, parameter in self.trained:
            entries = None if parameter.grad is None else _dense(parameter.grad)
            if entries is not None and not bool(torch.isfinite(entries).all()):
                kind = "nan" if bool(entries.isnan().any()) else "inf"
                return (f"the gradient of {name} became {kind} while the training loss was "
                        "finite; the parameters are left as they were before this step")
        return ""

    def training_row(self, batch_loss: float, full_batch: bool) -> dict[str, float]:
        """The full-batch loss (and accuracy) at theta_s, from this step's pass when its batch
        was the whole set."""
        if not full_batch:
            return self.evaluate(self.x, self.y)
        row = {"loss": batch_loss}
        if self.accuracy is not None:
            row["accuracy"] = self.accuracy(self.output, self.y)
        return row

    def finish(self, steps: int, divergence_factor: float) -> TrainResult:
        """The final row at theta_T: the full-batch loss and every monitor, with no gradient
        (no step follows); the run diverged if that loss did."""
        self.optimizer.zero_grad(set_to_none=True)
        row = self.evaluate(self.x, self.y)
        if steps == 0:
            self.initial_loss = row["loss"]
        diverged = _divergence(row["loss"], self.initial_loss, self.zero_loss, divergence_factor)
        self.log(steps, row, {}, self.monitors)
        return self.result("diverged" if diverged else "completed", diverged, steps)

    def log(self, step: int, evaluated: dict[str, float], factors: dict[str, float],
            monitors: list[Monitor]) -> None:
        """Append the History row at this step and each due monitor's measurement (none when
        the loss is not finite)."""
        row: dict[str, float] = {"step": step, **evaluated, "lr": self.updates.lr(), **factors}
        gradients = {n: p.grad for n, p in self.model.named_parameters() if p.grad is not None}
        if gradients:
            row["grad_norm"] = math.sqrt(sum(float(g.square().sum()) for g in gradients.values()))
        if self.test_data is not None:
            row.update(self.evaluate(*self.test_data, prefix="test_"))
        self.rows.append(row)
        if not math.isfinite(evaluated["loss"]):
            return
        state = self.state(step, gradients)
        for monitor in monitors:
            measured = monitor.measure(state)
            if measured:
                self.measured[monitor.name].append({"step": step, **measured})

    def result(self, status: str, reason: str, steps: int) -> TrainResult:
        measurements = {name: pd.DataFrame(rows) if rows else pd.DataFrame({"step": []})
                        for name, rows in self.measured.items()}
        return TrainResult(pd.DataFrame(self.rows), status, reason, steps, measurements)

    def save(self, saving: tuple[Checkpoint, dict], step: int) -> None:
        """Write the run state after ``step`` steps to the checkpoint (see widenet.dynamics.
        checkpoint for what it holds)."""
        checkpoint, run = saving
        save_checkpoint(checkpoint.path, {
            "step": step, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "sampler": self.batches.state_dict(),
            "rows": self.rows, "measurements": self.measured, "initial_loss": self.initial_loss,
            "monitors": [m.state_dict() for m in self.monitors],
            "rng": random_state(self.x.device)}, run)

    def load(self, content: dict) -> int:
        """Restore the run state from a checked checkpoint; return the step to continue from."""
        if set(content["measurements"]) != set(self.measured):
            raise WidenetError("the checkpoint's measurements are for monitors named "
                               f"{sorted(content['measurements'])}, not this run's "
                               f"{sorted(self.measured)}; resume with the same monitors")
        self.model.load_state_dict(content["model"])
        self.optimizer.load_state_dict(content["optimizer"])
        self.batches.load_state_dict(content["sampler"])
        self.rows, self.initial_loss = content["rows"], content["initial_loss"]
        self.measured = content["measurements"]
        for monitor, monitor_state in zip(self.monitors, content["monitors"], strict=True):
            monitor.load_state_dict(monitor_state)
        # Last: replaying the interrupted pass of a loader draws from the global generator
        # (a DataLoader's base seed), a draw the saved state already followed.
        restore_random_state(content["rng"], self.x.device)
        return content["step"]


def _scalar(loss: object) -> torch.Tensor:
    """The loss's value, checked to be a one-element tensor."""
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise WidenetError("the loss must return a scalar tensor (reduce the per-point losses "
                           f"with .mean() or .sum()), got {type(loss).__name__} of shape "
                           f"{tuple(getattr(loss, 'shape', ()))}")
    return loss


def _dense(gradient: torch.Tensor) -> torch.Tensor:
    """The gradient's entries as a dense tensor: a sparse gradient's values, summed over
    repeated indices as the optimizer adds them."""
    return gradient.coalesce().values() if gradient.is_sparse else gradient


def _divergence(loss: float, initial: float, zero: float, factor: float) -> str:
    """Why the run diverged at this loss, or "" if it did not: the loss is not finite, or above
    ``factor`` times the larger of the ``initial`` loss and the ``zero``-output loss (module
    docstring; a non-finite zero-output loss is left out); when both are 0 only a non-finite
    loss counts."""
    if not math.isfinite(loss):
        return f"the training loss became {loss}"
    scale = max(initial, zero if math.isfinite(zero) else 0.0)
    if scale > 0 and loss > factor * scale:
        return (f"the training loss {loss:.3g} exceeded {factor:g} x {scale:.3g}, the larger "
                f"of its initial value {initial:.3g} and the loss of zero outputs {zero:.3g}")
    return ""
