"""The Monitor protocol: what the training loop (widenet.dynamics.train) asks of a diagnostic.

A monitor is called at logged steps with the :class:`RunState` (parameters theta_s, the batch
gradient at theta_s before the update, the data) and returns a flat dict of numbers that becomes
that step's row in its table of measurements (``TrainResult.measurements[monitor.name]``, a
pandas DataFrame with ``step`` and those columns; an empty dict adds no row). Monitors
that compare with the start (theta_0, K_0, ...) record it in :meth:`Monitor.start` and expose it
through ``state_dict`` so that a resumed run measures against the same reference; that state
is written into the run's checkpoint, so it must consist of tensors, numbers, strings, booleans,
None, lists, tuples and dicts (checkpoints are loaded with ``torch.load(weights_only=True)``).
The diagnostics in widenet.diagnostics implement this protocol; the loop never imports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from widenet.dynamics.losses import Loss


@dataclass
class RunState:
    """What a monitor sees at step s: the model at theta_s, the full training data (a loader's
    gathered once), the loss, the base learning rate (a torch optimizer object's first group's),
    the batch gradient at theta_s (after any gradient scaling, before the optimizer step; empty
    at the final row, where no step follows), the optimizer's name ("gd", "sgd", "adam", or a
    torch optimizer class's name in lower case), the factor on the loss, the heavy-ball
    momentum and whether gradient scaling is on."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    loss_fn: Loss
    lr: float
    step: int
    gradients: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizer: str = "gd"
    loss_scale: float = 1.0
    momentum: float = 0.0
    gradient_scaled: bool = False


class Monitor:
    """A diagnostic measured every ``every`` steps (None: every ``log_every`` steps of the
    training loop) and at the final step; each measurement adds a History row if none was due.
    ``name`` names its table of measurements (distinct within a run)."""

    name: str = "monitor"
    every: int | None = None

    def start(self, state: RunState) -> None:
        """Record references at step 0 (called once, not again on resume)."""

    def measure(self, state: RunState) -> dict[str, float]:
        """The numbers for this step's row, keyed by column name."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """What must survive a checkpoint for a resumed run to measure the same numbers."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
