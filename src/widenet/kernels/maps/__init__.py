"""Kernel maps by layer type, and the plan the engine runs (docs/theory.md section 7).

:func:`compile_plan` turns a model into a list of ops (one module per layer family registers
its maps on :func:`~widenet.kernels.maps.base.ops_of`), resolves the stds of plain torch layers,
checks what the limit needs (Gaussian inputs of nonlinear activations and layer norms,
uncorrelated branches) and decides,
walking backwards from the output, in which mode (FLAT, DIAG, FULL) each op runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from torch import nn

from widenet.kernels.maps import elementwise, mlp, structure, weighted  # noqa: F401 (register)
from widenet.kernels.maps.base import Builder, Law, Mode, Op, Shape, ops_of
from widenet.kernels.maps.elementwise import ActivationOp
from widenet.kernels.maps.structure import branch_need, law_after
from widenet.kernels.maps.weighted import WeightedOp

__all__ = ["Builder", "Mode", "Plan", "Shape", "compile_plan"]


@dataclass
class Plan:
    """The ops of a model, with the input's and output's shapes and modes."""

    ops: list[Op]
    shape_in: Shape
    shape_out: Shape
    mode_in: Mode
    mode_out: Mode
    finite_ntk: bool

    def walk(self) -> Iterator[Op]:
        """Every op, branches included, in the order they run."""
        yield from _walk(self.ops)

    @property
    def largest_mode(self) -> Mode:
        return max([self.mode_in, *(op.mode_in for op in self.walk())])

    def entries_per_pair(self) -> int:
        """The largest number of kernel entries one pair of inputs holds at any op: P^0, P or
        P^2 for the FLAT, DIAG and FULL modes (Mode's values are these powers)."""
        return max([1, *(shape.positions ** int(op.mode_in) for op in self.walk()
                         for shape in (op.shape_in, op.shape_out))])


def _walk(ops: list[Op]) -> Iterator[Op]:
    for op in ops:
        yield op
        for branch in op.children():
            yield from _walk(branch)


def compile_plan(model: nn.Module, shape: Shape, builder: Builder) -> Plan:
    """The plan of ``model`` on inputs of ``shape`` (see the module docstring)."""
    ops, shape_out = ops_of(model, shape, builder, "")
    builder.check_names()
    ordered = list(_walk(ops))
    for index, op in enumerate(ordered):
        op.index = index
    _resolve_weight_stds(ordered)
    law_after(ops, Law.INPUT)
    mode_out = Mode.DIAG if shape_out.spatial else Mode.FLAT
    mode_in = branch_need(ops, mode_out)
    finite = all(op.finite_ntk for op in ordered if isinstance(op, WeightedOp))
    return Plan(ops, shape, shape_out, mode_in, mode_out, finite)


def _resolve_weight_stds(ordered: list[Op]) -> None:
    """weight_std None (plain torch layers): the edge-of-chaos std of the nearest activation
    after the layer, else before it, else 1 (the rule of widenet.nn.Sequential)."""
    for index, op in enumerate(ordered):
        if not isinstance(op, WeightedOp) or op.weight_var is not None:
            continue
        after = [o for o in ordered[index + 1:] if isinstance(o, ActivationOp)]
        before = [o for o in ordered[:index] if isinstance(o, ActivationOp)]
        nearest = after[0] if after else (before[-1] if before else None)
        op.set_weight_std(1.0 if nearest is None else
                          nearest.activation.edge_of_chaos(math.sqrt(op.bias_var)))
