"""The empirical neural tangent kernel of any torch model, exact and memory-bounded.

K(x_i, x'_j)_ab = <d f_a(x_i) / d theta, d f_b(x'_j) / d theta>, the sum running over all
trainable parameters theta of the model (Jacot et al. 2018); per parameter, the blocks
G^(h) of Du et al. (2018), which sum to K. Three exact methods compute it:

- "layerwise": Gram products of layer inputs and output gradients for nn.Linear, nn.Conv1d/2d
  and widenet's Dense, never forming the Jacobian (see ``_layerwise``);
- "jacobian": per-point Jacobians by vmap(jacrev), contracted parameter by parameter;
- "ntk-vp": columns of K as Jacobian-vector products along Jacobian rows.

"auto" takes "layerwise" when one probe forward pass shows it is exact for the model (every
trainable parameter in one supported module, called once, used nowhere else) and "jacobian"
otherwise; it also falls back to "jacobian" when the layer-wise pass finds the model behaving on
the points of a chunk otherwise than on the probe (a layer that stops following the points, an
output changed in place only in larger batches), where method="layerwise" raises. Calls and
uses under torch.no_grad do not count (they add nothing to reverse-mode derivatives), so that
LazyModel(f, alpha), whose f(x; w_0) term runs under no_grad, takes the fast path: its kernel is
alpha^2 times that of f. Models whose outputs couple the points of a batch (BatchNorm in
training mode) or are random (dropout in training mode) are refused: their NTK is not defined.
The kernel is a value at the points: points that require grad give the same kernel as detached
ones, detached from them (torch.func's derivatives through a Jacobian are not exact for every
model, e.g. with LayerNorm, so no method offers a derivative in the points, nor in tensors the
model holds that require grad).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from widenet.errors import WidenetError
from widenet.kernels._audit import Audit, prepare
from widenet.kernels._blocks import (
    DEFAULT_MEMORY_BUDGET,
    BlockMethod,
    assemble,
    check_chunking,
    plan_blocks,
)
from widenet.kernels._factors import MODES, TOTAL
from widenet.kernels._functional import FunctionalModel, on_values
from widenet.kernels._layerwise import LayerwiseInapplicableError, LayerwiseMethod
from widenet.kernels.jacobians import JacobianMethod
from widenet.kernels.ntk_vp import VectorProductMethod
from widenet.kernels.result import Kernels

METHODS = ("auto", "layerwise", "jacobian", "ntk-vp")
_IMPLEMENTATIONS = {"layerwise": LayerwiseMethod, "jacobian": JacobianMethod,
                    "ntk-vp": VectorProductMethod}


@on_values
def empirical_ntk(model: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None, *,
                  outputs: str = "trace", per_layer: bool = False, method: str = "auto",
                  chunk_size: int | None = None,
                  memory_budget: int = DEFAULT_MEMORY_BUDGET) -> Kernels:
    """The empirical NTK K(x1, x2) = J(x1) J(x2)^T of ``model`` at its current parameters.

    x1 has shape (n1, ...), x2 (n2, ...) with the same per-point shape (default: x2 = x1, giving
    a symmetric positive semi-definite kernel). With k the number of outputs per point (the
    model's per-point output flattened) and K[i, j, a, b] = <d f_a(x1_i), d f_b(x2_j)>, the
    result is a ``Kernels`` (docs/kernels.md, "Kernel convention") whose ``.ntk`` is the kernel
    per output unit (1/k) sum_a K_aa, shape (n1, n2), and ``.outputs`` is k. ``outputs`` selects
    what else it keeps: "trace" nothing more; "diagonal" also ``.diagonal`` = K_aa, shape
    (n1, n2, k); "full" also ``.full`` = K_ab, shape (n1, n2, k, k). ``per_layer=True`` fills
    ``.blocks`` with one (n1, n2) block per trainable parameter, on the scale of ``.ntk``, which
    is their sum. ``method`` is "auto", "layerwise", "jacobian" or "ntk-vp" (module docstring).
    Work is split into chunks of ``chunk_size`` points (and of outputs) so that the working
    memory beyond the result stays under ``memory_budget`` bytes; by default the chunks are
    as large as the budget allows. The result has the dtype and device of x1; the model is
    evaluated functionally with detached copies of its parameters, which are left untouched.
    """
    _check_options(outputs, per_layer, method, chunk_size, memory_budget)
    fmodel, audit = prepare(model, x1, x2)
    chosen = _choose(method, audit)
    options = (x1, x2, outputs, per_layer, chunk_size, memory_budget)
    try:
        blocks = _blocks(_IMPLEMENTATIONS[chosen](fmodel, audit, outputs), fmodel, audit,
                         *options)
    except LayerwiseInapplicableError:
        if method != "auto":
            raise
        blocks = _blocks(JacobianMethod(fmodel, audit, outputs), fmodel, audit, *options)
    return _result(blocks, fmodel, outputs, per_layer, audit.outputs)


def _blocks(implementation: BlockMethod, fmodel: FunctionalModel, audit: Audit,
            x1: torch.Tensor, x2: torch.Tensor | None, outputs: str, per_layer: bool,
            chunk_size: int | None, memory_budget: int) -> dict[str, torch.Tensor]:
    """The kernel's blocks, assembled by ``implementation`` within the memory budget."""
    n2 = (x1 if x2 is None else x2).shape[0]
    plan = plan_blocks(implementation, x1.shape[0], n2, audit.outputs,
                       itemsize=x1.element_size(), budget=memory_budget, chunk_size=chunk_size,
                       per_layer=per_layer, symmetric=x2 is None,
                       halved_squares=implementation.halves_squares(x1))
    return assemble(implementation, x1, x2, audit.outputs, plan,
                    tuple(fmodel.params) if per_layer else (TOTAL,))


def _check_options(outputs: object, per_layer: object, method: object, chunk_size: object,
                   memory_budget: object) -> None:
    if outputs not in MODES:
        raise WidenetError(f"outputs must be one of {', '.join(map(repr, MODES))}, "
                           f"got {outputs!r}")
    if not isinstance(per_layer, bool):
        raise WidenetError(f"per_layer must be True or False, got {per_layer!r}")
    if method not in METHODS:
        raise WidenetError(f"method must be one of {', '.join(map(repr, METHODS))}, "
                           f"got {method!r}")
    check_chunking(chunk_size, memory_budget)


def _choose(method: str, audit: Audit) -> str:
    """The method to run: "auto" -> "layerwise" when exact for the model, else "jacobian"."""
    problem = audit.layerwise_problem
    if method == "auto":
        return "jacobian" if problem else "layerwise"
    if method == "layerwise" and problem:
        raise WidenetError(f"method='layerwise' would be wrong for this model: {problem}; "
                           "use method='auto', 'jacobian' or 'ntk-vp'")
    if method == "ntk-vp" and audit.untracked:
        raise WidenetError(f"method='ntk-vp' would be wrong for this model: parameter "
                           f"{audit.untracked[0]!r} is used under torch.no_grad, which "
                           "forward-mode derivatives ignore; use method='auto', 'layerwise' "
                           "or 'jacobian'")
    return method


def _result(blocks: dict[str, torch.Tensor], fmodel: FunctionalModel, outputs: str,
            per_layer: bool, k: int) -> Kernels:
    """The ``Kernels`` of assembled blocks in the layout of ``outputs`` (see ``empirical_ntk``).

    With ``per_layer``, ``ntk`` is the sum of the per-parameter blocks, in their order.
    """
    if not per_layer:
        return Kernels(None, _per_output_unit(blocks[TOTAL], outputs, k), outputs=k,
                       **_kept(outputs, lambda: blocks[TOTAL]))
    ordered = {name: blocks[name] for name in fmodel.params}
    per_unit = {name: _per_output_unit(block, outputs, k) for name, block in ordered.items()}
    return Kernels(None, sum(per_unit.values()), per_unit, outputs=k,
                   **_kept(outputs, lambda: sum(ordered.values())))


def _per_output_unit(block: torch.Tensor, outputs: str, k: int) -> torch.Tensor:
    """(1/k) sum_a K_aa, shape (n1, n2), from a block in the layout of ``outputs``."""
    if outputs == "full":
        block = torch.diagonal(block, dim1=2, dim2=3)
    if outputs != "trace":
        block = block.sum(-1)
    return block if k == 1 else block / k


def _kept(outputs: str, total: Callable[[], torch.Tensor]) -> dict[str, torch.Tensor]:
    """{"full": K_ab} or {"diagonal": K_aa} (``total()`` computes it), nothing for "trace"."""
    return {} if outputs == "trace" else {outputs: total()}
