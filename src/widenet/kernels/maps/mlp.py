"""widenet.MLP as kernel ops: Dense, activation, Dense, ..., Dense (docs/theory.md section 3)."""

from __future__ import annotations

from widenet.errors import WidenetError
from widenet.kernels.maps.base import Builder, Op, Shape, child_name, ops_of
from widenet.kernels.maps.elementwise import ActivationOp
from widenet.kernels.maps.weighted import dense_ops
from widenet.models import MLP


@ops_of.register
def _(module: MLP, shape: Shape, builder: Builder, name: str) -> tuple[list[Op], Shape]:
    if not module.parametrization.kernel_limit:
        raise WidenetError(f"infinite_kernels covers the ntk and standard parametrizations, "
                           f"not {module.parametrization.name!r} (whose limit is not this "
                           "kernel recursion); build the MLP with parametrization='ntk'")
    ops: list[Op] = []
    for index, layer in enumerate(module.layers):
        layer_name = child_name(name, f"layers.{index}")
        builder.claim(layer, layer_name)
        if index:
            ops.append(ActivationOp(child_name(name, "activation"), shape, module.activation))
        more, shape = dense_ops(layer_name, shape, layer, layer.in_features, layer.out_features,
                                module.weight_std, module.bias_std,
                                module.parametrization.finite_ntk)
        ops.extend(more)
    return ops, shape
