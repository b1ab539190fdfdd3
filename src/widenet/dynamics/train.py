"""The training loop: full-batch GD, minibatch SGD with momentum, or Adam, with monitors.

Every ``log_every`` steps (and at the end) one row goes into the History: the step, the
full-batch training loss at theta_s, the norm of the batch gradient at theta_s, the optimizer's
base learning rate, the test loss when test data are given, and whatever the monitors measure.
A non-finite batch loss, or one above ``divergence_factor`` times the initial loss, ends the
run with status "diverged", keeping every row logged so far plus the diverging one. With
``checkpoint=PATH`` the run state (model, optimizer, sampler, monitors, history) is written
atomically every ``checkpoint_every`` steps; ``resume=True`` continues from it, and ends exactly
where the uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from widenet.diagnostics.monitors import Monitor, RunState
from widenet.dynamics.losses import Loss, get_loss
from widenet.dynamics.optim import GradientScaling, build_optimizer
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
          loss: str | Loss = "mse", optimizer: str = "gd", batch_size: int | None = None,
          momentum: float = 0.0, loss_scale: float = 1.0, monitors: Sequence[Monitor] = (),
          log_every: int = 10, gradient_scaling: GradientScaling | None = None,
          test_data: tuple[torch.Tensor, torch.Tensor] | None = None, seed: int = 0,
          divergence_factor: float = 1e6, checkpoint: str | Path | None = None,
          checkpoint_every: int = 100, resume: bool = False, progress: bool | None = None
          ) -> TrainResult:
    """Train ``model`` in place for ``steps`` optimizer steps and return its History.

    optimizer: "gd" (full batch, no momentum), "sgd" (``batch_size`` points per step drawn
    without replacement in epochs shuffled by ``seed``; heavy-ball ``momentum``) or "adam".
    The learning rate of each parameter is lr times the model's ``lr_scales`` (the
    parametrization's), and the objective is loss_scale * loss (e.g. 1/alpha^2 for lazy
    training). Inputs are cast to the model's dtype and device. ``progress=None`` shows a bar
    only on a terminal.
    """
    loss_fn = get_loss(loss)
    parameter = next(model.parameters(), None)
    if parameter is None:
        raise WidenetError("the model has no parameters to train")
    x = data_matrix(x, "x").to(parameter.dtype).to(parameter.device)
    y = _targets(y, x.shape[0], "y").to(parameter.device)
    lr = finite_real(lr, "lr", minimum=0.0, strict=True)
    steps = nonnegative_int(steps, "steps")
    log_every = positive_int(log_every, "log_every")
    checkpoint_every = positive_int(checkpoint_every, "checkpoint_every")
    loss_scale = finite_real(loss_scale, "loss_scale", minimum=0.0, strict=True)
    divergence_factor = finite_real(divergence_factor, "divergence_factor", minimum=1.0)
    batch = _batch_size(optimizer, batch_size, x.shape[0])
    if test_data is not None:
        if not isinstance(test_data, tuple | list) or len(test_data) != 2:
            raise WidenetError("test_data must be a pair (x_test, y_test)")
        x_test = data_matrix(test_data[0], "test x").to(parameter.dtype).to(parameter.device)
        test_data = (x_test, _targets(test_data[1], x_test.shape[0], "test y").to(x.device))
    if resume and checkpoint is None:
        raise WidenetError("resume=True needs checkpoint=PATH")
    checkpoint = None if checkpoint is None else Path(checkpoint)
    for monitor in monitors:
        if monitor.every is not None:
            positive_int(monitor.every, f"{type(monitor).__name__}.every")

    opt = build_optimizer(model, optimizer, lr, momentum=momentum)
    sampler = _Sampler(x.shape[0], batch, seed)
    show = sys.stderr.isatty() if progress is None else progress
    try:
        loop = _Loop(model, x, y, loss_fn, loss_scale, lr, optimizer, momentum, opt, sampler,
                     list(monitors), gradient_scaling, test_data)
        start = 0
        if resume and checkpoint.exists():
            start = loop.load(checkpoint)
        else:
            loop.start()
        return loop.run(start, steps, log_every, divergence_factor, checkpoint, checkpoint_every,
                        show)
    finally:
        if gradient_scaling is not None:
            gradient_scaling.detach()


def _targets(y: object, n: int, name: str) -> torch.Tensor:
    if not isinstance(y, torch.Tensor) or y.ndim == 0:
        raise WidenetError(f"{name} must be a torch.Tensor with one row per point, got "
                           f"{type(y).__name__} {tuple(getattr(y, 'shape', ()))}")
    if y.shape[0] != n:
        raise WidenetError(f"{name} has {y.shape[0]} rows but the inputs have {n}")
    if y.is_floating_point() and not bool(torch.isfinite(y).all()):
        raise WidenetError(f"{name} contains NaN or inf values")
    return y


def _batch_size(optimizer: str, batch_size: int | None, n: int) -> int:
    if batch_size is None:
        return n
    batch_size = positive_int(batch_size, "batch_size")
    if batch_size > n:
        raise WidenetError(f"batch_size {batch_size} is larger than the {n} training points")
    if optimizer == "gd" and batch_size != n:
        raise WidenetError("optimizer 'gd' is full-batch; use optimizer='sgd' for minibatches")
    return batch_size


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
        self.generator.set_state(state["generator"])
        self.order, self.position = state["order"], state["position"]


class _Loop:
    """One training run's moving parts, so that steps, logging and checkpoints share them."""

    def __init__(self, model, x, y, loss_fn, loss_scale, lr, optimizer_name, momentum, optimizer,
                 sampler, monitors, gradient_scaling, test_data):
        self.model, self.x, self.y = model, x, y
        self.loss_fn, self.loss_scale, self.lr = loss_fn, loss_scale, lr
        self.optimizer_name, self.momentum = optimizer_name, momentum
        self.optimizer, self.sampler = optimizer, sampler
        self.monitors, self.gradient_scaling, self.test_data = monitors, gradient_scaling, test_data
        self.rows: list[dict] = []
        self.initial_loss = math.nan
        if gradient_scaling is not None:
            gradient_scaling.attach(model)

    def state(self, step: int, gradients: dict[str, torch.Tensor]) -> RunState:
        return RunState(self.model, self.x, self.y, self.loss_fn, self.lr, step, gradients,
                        self.optimizer_name, self.loss_scale, self.momentum,
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
            checkpoint: Path | None, checkpoint_every: int, show: bool) -> TrainResult:
        bar = tqdm(total=steps, initial=start, disable=not show, desc="training")
        for step in range(start, steps + 1):
            indices = self.sampler.next() if step < steps else None
            xb, yb = (self.x, self.y) if indices is None else (self.x[indices], self.y[indices])
            self.optimizer.zero_grad(set_to_none=True)
            factors: dict[str, float] = {}
            with torch.enable_grad(), self.recording():
                batch_loss = self.loss_fn(self.model(xb), yb)
                if step < steps:
                    (self.loss_scale * batch_loss).backward()
            if step < steps and self.gradient_scaling is not None:
                factors = self.gradient_scaling.apply()
            # Divergence is judged on the batch loss: no extra full pass on unlogged SGD steps.
            value = float(batch_loss.detach())
            if step == 0:
                self.initial_loss = value if indices is None else self.full_loss(self.x, self.y)
            diverged = _divergence(value, self.initial_loss, divergence_factor)
            last = step == steps or bool(diverged)
            due = [m for m in self.monitors if last or step % (m.every or log_every) == 0]
            if last or due or step % log_every == 0:
                full = value if indices is None else self.full_loss(self.x, self.y)
                self.log(step, full, factors, due)
            if diverged:
                bar.close()
                return TrainResult(self.history(), "diverged", diverged, step)
            if step < steps:
                self.optimizer.step()
                bar.update()
                if checkpoint is not None and (step + 1) % checkpoint_every == 0:
                    self.save(checkpoint, step + 1)
        bar.close()
        return TrainResult(self.history(), "completed", "", steps)

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

    def save(self, path: Path, step: int) -> None:
        """Write the run state to ``path`` atomically (a temporary file, then a rename)."""
        state = {"step": step, "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(),
                 "sampler": self.sampler.state_dict(), "rows": self.rows,
                 "initial_loss": self.initial_loss,
                 "monitors": [m.state_dict() for m in self.monitors]}
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        torch.save(state, temporary)
        os.replace(temporary, path)

    def load(self, path: Path) -> int:
        """Restore the run state from ``path``; return the step to continue from."""
        state = torch.load(path, weights_only=False, map_location=self.x.device)
        if len(state["monitors"]) != len(self.monitors):
            raise WidenetError(f"checkpoint {path} was written with {len(state['monitors'])} "
                               f"monitors, this run has {len(self.monitors)}; resume with the "
                               "same monitors")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.rows, self.initial_loss = state["rows"], state["initial_loss"]
        for monitor, monitor_state in zip(self.monitors, state["monitors"], strict=True):
            monitor.load_state_dict(monitor_state)
        return state["step"]


def _divergence(loss: float, initial: float, factor: float) -> str:
    """Why the run diverged at this loss, or "" if it did not."""
    if not math.isfinite(loss):
        return f"the training loss became {loss}"
    if loss > factor * max(initial, 1e-300):
        return f"the training loss {loss:.3g} exceeded {factor:g} x its initial {initial:.3g}"
    return ""
