"""The one result type of every kernel computation, finite or infinite (docs/kernels.md).

Convention: for a model with k outputs per point, the empirical NTK is the (n1 k) x (n2 k) matrix
with entries K_ab(x, x') = <d f_a(x) / d theta, d f_b(x') / d theta>; as every width grows it
tends to Theta(x, x') I_k. The kernel *per output unit*

    ntk(x, x') = (1/k) sum_a K_aa(x, x')

therefore tends to Theta for any k, and a finite net and its limit compare in one subtraction:
``empirical_ntk(net, x).ntk - infinite_kernels(net, x).ntk``. ``blocks`` splits ``ntk`` by
trainable parameter on the same scale, so ``sum(blocks.values()) == ntk``. The full form K_ab and
the diagonal form K_aa are kept, unnormalized, when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from widenet.errors import WidenetError


@dataclass(frozen=True)
class Kernels:
    """Kernels between the points of x1 (rows) and x2 (columns).

    Attributes:
        nngp: the NNGP kernel Sigma (n1, n2) of an infinite-width limit; None for an empirical
            kernel (a finite net has no NNGP, only samples of it).
        ntk: the NTK per output unit (n1, n2), see the module docstring. Reading it raises
            when the kernel has none (an infinite limit whose NTK diverges with width).
        blocks: per-parameter contributions to ``ntk``, keyed like ``model.named_parameters()``
            and in that order; empty unless asked for (``per_layer=True``).
        outputs: k, the number of outputs per point.
        full: K_ab, shape (n1, n2, k, k), when asked for (``outputs="full"``), else None.
        diagonal: K_aa, shape (n1, n2, k), when asked for (``outputs="diagonal"``), else None.
        layers: an infinite limit's intermediate kernels when asked for (``per_layer=True``).
        missing_ntk: why ``ntk`` is absent (the message reading it raises), else None.
    """

    nngp: torch.Tensor | None
    _ntk: torch.Tensor | None
    blocks: dict[str, torch.Tensor] = field(default_factory=dict)
    outputs: int = 1
    full: torch.Tensor | None = None
    diagonal: torch.Tensor | None = None
    layers: Any = None
    missing_ntk: str | None = None

    @property
    def ntk(self) -> torch.Tensor:
        """The NTK per output unit, (1/k) sum_a K_aa; raises if this kernel has none."""
        if self._ntk is None:
            raise WidenetError(self.missing_ntk or "this result holds no NTK")
        return self._ntk
