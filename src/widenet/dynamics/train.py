"""The training loop: full-batch GD, minibatch SGD with momentum, or Adam, with monitors.

Every ``log_every`` steps (and at the end) one row goes into the History: the step, the
full-batch training loss at theta_s, the norm of the batch gradient at theta_s, the optimizer's
base learning rate, the test loss when test data are given, and whatever the monitors measure.
A non-finite batch loss, or one above ``divergence_factor`` times the initial loss, ends the
run with status "diverged", keeping every row logged so far plus the diverging one. With
``checkpoint=Checkpoint(path, every, resume)`` the run state (model, optimizer, sampler,
monitors, history; widenet.dynamics.checkpoint) is written atomically every ``every`` steps;
``resume=True`` continues from it after checking that it belongs to this run, and ends exactly
where the uninterrupted run would have.

Each step is :meth:`_Loop.gradient` (forward and backward on the step's batch), then the row if
one is due, then the optimizer's update; :meth:`_Loop.finish` measures the final row at theta_T.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from widenet.dynamics.checkpoint import (
    Checkpoint,
    checkpoint_spec,
    fingerprint,
    load_checkpoint,
    save_checkpoint,
)
from widenet.dynamics.losses import Loss, get_loss
from widenet.dynamics.monitor import Monitor, RunState
from widenet.dynamics.optim import Optimizer
from widenet.errors import WidenetError
from widenet.validation import data_matrix, finite_real, nonnegative_int, positive_int


@dataclass
class TrainResult:
    """The History (one row per logged step), the final status ("completed" or "diverged"),
    why it diverged (empty otherwise) and the number of optimizer steps taken."""

    history: pd.DataFrame
    status: str
    reason: str
    steps: int


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, lr: float, steps: int,
          loss: str | Loss = "mse", loss_scale: float = 1.0,
          optimizer: str | Optimizer = "gd", monitors: Sequence[Monitor] = (),
          log_every: int = 10, test_data: tuple[torch.Tensor, torch.Tensor] | None = None,
          seed: int = 0, checkpoint: str | Path | Checkpoint | None = None,
          divergence_factor: float = 1e6, progress: bool | None = None) -> TrainResult:
    """Train ``model`` in place for ``steps`` optimizer steps and return its History.

    The objective is loss_scale * loss (e.g. 1/alpha^2 for lazy training). ``optimizer``: a
    name ("gd", "sgd", "adam") or an :class:`Optimizer` with momentum, batch size and gradient
    scaling; SGD minibatches are shuffled by ``seed``. The learning rate of each parameter is
    lr times the model's ``lr_scales`` (the parametrization's). ``checkpoint``: a path or a
    :class:`Checkpoint` (every, resume). Inputs are cast to the model's dtype and device.
    ``progress=None`` shows a bar only on a terminal.
    """
    loss_fn = get_loss(loss)
    if not isinstance(model, nn.Module):
        raise WidenetError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    parameter = next(model.parameters(), None)
    if parameter is None:
        raise WidenetError("the model has no parameters to train")
    x = data_matrix(x, "x").to(parameter.dtype).to(parameter.device)
    y = _targets(y, x.shape[0], "y").to(parameter.device)
    lr = finite_real(lr, "lr", minimum=0.0, strict=True)
    steps = nonnegative_int(steps, "steps")
    log_every = positive_int(log_every, "log_every")
    loss_scale = finite_real(loss_scale, "loss_scale", minimum=0.0, strict=True)
    divergence_factor = finite_real(divergence_factor, "divergence_factor", minimum=1.0)
    seed = nonnegative_int(seed, "seed")
    optimizer = optimizer if isinstance(optimizer, Optimizer) else Optimizer(optimizer)
    batch = optimizer.batch(x.shape[0])
    if test_data is not None:
        if not isinstance(test_data, tuple | list) or len(test_data) != 2:
            raise WidenetError("test_data must be a pair (x_test, y_test)")
        x_test = data_matrix(test_data[0], "test x").to(parameter.dtype).to(parameter.device)
        test_data = (x_test, _targets(test_data[1], x_test.shape[0], "test y").to(x.device))
    checkpoint = checkpoint_spec(checkpoint)
    monitors = list(monitors)
    for monitor in monitors:
        if monitor.every is not None:
            positive_int(monitor.every, f"{type(monitor).__name__}.every")
    _check_inputs_fit(model, x, "x")
    if test_data is not None:
        _check_inputs_fit(model, test_data[0], "test x")

    run = None
    if checkpoint is not None:
        x_test, y_test = (None, None) if test_data is None else test_data
        run = fingerprint(model, {"x": x, "y": y, "test x": x_test, "test y": y_test}, loss,
                          optimizer, {"lr": lr, "loss_scale": loss_scale, "seed": seed,
                                      "log_every": log_every,
                                      "divergence_factor": divergence_factor}, monitors)
    sampler = _Sampler(x.shape[0], batch, seed)
    show = sys.stderr.isatty() if progress is None else progress
    scaling = optimizer.gradient_scaling
    try:
        loop = _Loop(model, x, y, loss_fn, loss_scale, lr, optimizer, sampler, monitors,
                     test_data)
        start = 0
        if checkpoint is not None and checkpoint.resume and checkpoint.path.exists():
            start = loop.load(load_checkpoint(checkpoint.path, run, model, steps, x.device))
        else:
            loop.start()
        saving = None if checkpoint is None else (checkpoint, run)
        return loop.run(start, steps, log_every, divergence_factor, saving, show)
    finally:
        if scaling is not None:
            scaling.detach()


def _check_inputs_fit(model: nn.Module, x: torch.Tensor, name: str) -> None:
    """Apply the model to the first two points of ``x``, leaving no trace (random state and
    buffers are restored), so that inputs the model cannot take (another input dimension, say)
    are refused with a WidenetError before the run starts instead of failing inside it."""
    saved = [(buffer, buffer.clone()) for buffer in model.buffers()]
    devices = [x.device.index or 0] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            model(x[:2])
    except RuntimeError as error:
        lines = str(error).strip().splitlines() or [type(error).__name__]
        raise WidenetError(f"the model cannot be applied to {name} of shape {tuple(x.shape)} "
                           f"({lines[0][:120]}); give inputs with the model's input "
                           "dimension") from error
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def _targets(y: object, n: int, name: str) -> torch.Tensor:
    if not isinstance(y, torch.Tensor) or y.ndim == 0:
        raise WidenetError(f"{name} must be a torch.Tensor with one row per point, got "
                           f"{type(y).__name__} {tuple(getattr(y, 'shape', ()))}")
    if y.shape[0] != n:
        raise WidenetError(f"{name} has {y.shape[0]} rows but the inputs have {n}")
    if y.is_floating_point() and not bool(torch.isfinite(y).all()):
        raise WidenetError(f"{name} contains NaN or inf values")
    return y


class _Sampler:
    """Minibatch indices: epochs of a permutation drawn from a seeded generator."""

    def __init__(self, n: int, batch: int, seed: int):
        self.n, self.batch = n, batch
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.arange(n)
        self.position = n

    def next(self) -> torch.Tensor | None:
        """Indices of the next batch, or None for the full batch."""
        if self.batch == self.n:
            return None
        if self.position + self.batch > self.n:
            self.order = torch.randperm(self.n, generator=self.generator)
            self.position = 0
        indices = self.order[self.position:self.position + self.batch]
        self.position += self.batch
        return indices

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order,
                "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        # The generator and the order live on the CPU, wherever the checkpoint was mapped.
        self.generator.set_state(state["generator"].cpu())
        self.order, self.position = state["order"].cpu(), state["position"]


class _Loop:
    """One training run's moving parts, so that steps, logging and checkpoints share them."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Loss,
                 loss_scale: float, lr: float, optimizer: Optimizer, sampler: _Sampler,
                 monitors: list[Monitor], test_data: tuple[torch.Tensor, torch.Tensor] | None):
        self.model, self.x, self.y = model, x, y
        self.loss_fn, self.loss_scale, self.lr = loss_fn, loss_scale, lr
        self.spec, self.optimizer = optimizer, optimizer.build(model, lr)
        self.sampler, self.monitors, self.test_data = sampler, monitors, test_data
        self.gradient_scaling = optimizer.gradient_scaling
        self.rows: list[dict] = []
        self.initial_loss = math.nan
        if self.gradient_scaling is not None:
            self.gradient_scaling.attach(model)

    def state(self, step: int, gradients: dict[str, torch.Tensor]) -> RunState:
        return RunState(self.model, self.x, self.y, self.loss_fn, self.lr, step, gradients,
                        self.spec.name, self.loss_scale, self.spec.momentum,
                        self.gradient_scaling is not None)

    def recording(self) -> contextlib.AbstractContextManager:
        """Let the gradient scaling observe this forward/backward pass (and no other)."""
        if self.gradient_scaling is None:
            return contextlib.nullcontext()
        return self.gradient_scaling.recording()

    def start(self) -> None:
        for monitor in self.monitors:
            monitor.start(self.state(0, {}))

    def full_loss(self, x: torch.Tensor, y: torch.Tensor) -> float:
        with torch.no_grad():
            return float(self.loss_fn(self.model(x), y))

    def run(self, start: int, steps: int, log_every: int, divergence_factor: float,
            saving: tuple[Checkpoint, dict] | None, show: bool) -> TrainResult:
        """Steps start..steps-1 (log, then update), then the final measurement at theta_T."""
        with tqdm(total=steps, initial=start, disable=not show, desc="training") as bar:
            for step in range(start, steps):
                batch_loss, full_batch, factors = self.gradient(step)
                # Divergence is judged on the batch loss: no extra full pass on unlogged steps.
                if step == 0:
                    self.initial_loss = batch_loss if full_batch else self.full_loss(self.x,
                                                                                     self.y)
                diverged = _divergence(batch_loss, self.initial_loss, divergence_factor)
                due = [m for m in self.monitors
                       if diverged or step % (m.every or log_every) == 0]
                if diverged or due or step % log_every == 0:
                    full = batch_loss if full_batch else self.full_loss(self.x, self.y)
                    self.log(step, full, factors, due)
                if diverged:
                    return TrainResult(self.history(), "diverged", diverged, step)
                self.optimizer.step()
                bar.update()
                if saving is not None and (step + 1) % saving[0].every == 0:
                    self.save(saving, step + 1)
        return self.finish(steps, divergence_factor)

    def gradient(self, step: int) -> tuple[float, bool, dict[str, float]]:
        """The forward and backward pass of step s on its batch at theta_s, gradient scaling
        applied: the batch loss, whether the batch is the whole training set, and the scaling
        factors xi_l (empty without scaling)."""
        indices = self.sampler.next()
        xb, yb = (self.x, self.y) if indices is None else (self.x[indices], self.y[indices])
        self.optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad(), self.recording():
            batch_loss = self.loss_fn(self.model(xb), yb)
            (self.loss_scale * batch_loss).backward()
        factors = {} if self.gradient_scaling is None else self.gradient_scaling.apply()
        return float(batch_loss.detach()), indices is None, factors

    def finish(self, steps: int, divergence_factor: float) -> TrainResult:
        """The final row at theta_T: the full-batch loss and every monitor, with no gradient
        (no step follows); the run diverged if that loss did."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.full_loss(self.x, self.y)
        if steps == 0:
            self.initial_loss = loss
        diverged = _divergence(loss, self.initial_loss, divergence_factor)
        self.log(steps, loss, {}, self.monitors)
        return TrainResult(self.history(), "diverged" if diverged else "completed", diverged,
                           steps)

    def log(self, step: int, loss: float, factors: dict[str, float],
            monitors: list[Monitor]) -> None:
        row: dict[str, float] = {"step": step, "loss": loss, "lr": self.lr, **factors}
        gradients = {n: p.grad for n, p in self.model.named_parameters() if p.grad is not None}
        if gradients:
            row["grad_norm"] = math.sqrt(sum(float(g.square().sum()) for g in gradients.values()))
        if self.test_data is not None:
            row["test_loss"] = self.full_loss(*self.test_data)
        if math.isfinite(loss):
            state = self.state(step, gradients)
            for monitor in monitors:
                row.update(monitor.measure(state))
        self.rows.append(row)

    def history(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def save(self, saving: tuple[Checkpoint, dict], step: int) -> None:
        """Write the run state after ``step`` steps to the checkpoint (see widenet.dynamics.
        checkpoint for what it holds)."""
        checkpoint, run = saving
        save_checkpoint(checkpoint.path, {
            "step": step, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "sampler": self.sampler.state_dict(),
            "rows": self.rows, "initial_loss": self.initial_loss,
            "monitors": [m.state_dict() for m in self.monitors]}, run)

    def load(self, content: dict) -> int:
        """Restore the run state from a checked checkpoint; return the step to continue from."""
        self.model.load_state_dict(content["model"])
        self.optimizer.load_state_dict(content["optimizer"])
        self.sampler.load_state_dict(content["sampler"])
        self.rows, self.initial_loss = content["rows"], content["initial_loss"]
        for monitor, monitor_state in zip(self.monitors, content["monitors"], strict=True):
            monitor.load_state_dict(monitor_state)
        return content["step"]


def _divergence(loss: float, initial: float, factor: float) -> str:
    """Why the run diverged at this loss, or "" if it did not."""
    if not math.isfinite(loss):
        return f"the training loss became {loss}"
    if loss > factor * max(initial, 1e-300):
        return f"the training loss {loss:.3g} exceeded {factor:g} x its initial {initial:.3g}"
    return ""
