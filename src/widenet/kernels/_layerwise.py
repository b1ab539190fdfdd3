"""The layer-wise empirical NTK: Gram products of layer inputs and output gradients.

For every supported layer (see ``_layers``) one forward pass records the layer inputs A and
one backward pass, batched over the kc output units, gives G = df_a/dz. The NTK block of the
weight is m_w^2 sum_{t,s} (A A'^T) * (G G'^T) and that of the bias m_b^2 (sum_t G)(sum_s G')^T,
so the Jacobian (P columns) is never formed. For a convolution with T output pixels, when
it is cheaper (k p q < T^2 (p + k q) per pair of points, k -> k^2 for full outputs), the
per-example weight gradients sum_t G_t A_t^T (q x p) are formed instead and Gram-multiplied.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from widenet.errors import WidenetError
from widenet.kernels._audit import Audit
from widenet.kernels._factors import Factor, FactorMethod, Group, arrange, output_pairs
from widenet.kernels._functional import FunctionalModel, check_last_point, unbatched
from widenet.kernels._layers import LayerAdapter


class LayerwiseMethod(FactorMethod):
    """Features: the factors (A, G) of every trainable parameter; contraction: their Grams."""

    def __init__(self, fmodel: FunctionalModel, audit: Audit, mode: str):
        self.fmodel = fmodel
        self.audit = audit
        self.mode = mode
        self.per_example = tuple(_per_example_cheaper(*sizes, output_pairs(mode, audit.outputs))
                                 for sizes in audit.layer_sizes)

    def features(self, x: torch.Tensor, outs: slice) -> list[Group]:
        """Factors of all trainable parameters on the points ``x`` for the outputs ``outs``."""
        layers = self.audit.layers
        with torch.enable_grad(), _capture(layers, self.audit.in_place) as captured:
            f = self.fmodel(self.fmodel.params, x)[:, outs]
        _check_calls(layers, captured, x.shape[0])
        self._check_last_point(x, outs, f, captured)
        with unbatched("reverse-mode", "check that autograd can differentiate its forward pass "
                       "(a tensor it saved must not be changed in place)"):
            grads = _output_gradients(f, [captured[layer.module].output for layer in layers])
        factors: list[Factor] = []
        for layer, per_example, g in zip(layers, self.per_example, grads, strict=True):
            a = layer.inputs(captured[layer.module].input)
            factors += _layer_factors(layer, a, layer.grads(g), per_example)
        return arrange(factors, self.mode)

    def _check_last_point(self, x: torch.Tensor, outs: slice, f: torch.Tensor,
                          captured: dict) -> None:
        """Raise unless the last of the points ``x`` alone gives the last row of the outputs
        ``f`` and of every layer's input and output as ``captured`` on them: the rows must follow
        the points on every batch, not only on the probe (a model that sorts its batch by a
        feature does so on a probe whose points are in order, and not on others). The pass on
        the last point alone is the probe's when that point was one of its points (the last of
        the data always is, see ``probe_points``), else made here."""
        if x.shape[0] == 1:
            return
        layers = self.audit.layers
        single = self.audit.single(x[-1])
        if single is None:
            with torch.enable_grad(), _capture(layers, self.audit.in_place) as alone:
                last = self.fmodel(self.fmodel.params, x[-1:])
            calls = [None if alone.get(layer.module) is None else
                     (alone[layer.module].input, alone[layer.module].output) for layer in layers]
        else:
            last, calls = single.output, single.calls
        pairs = [("the model's output", f, last[:, outs])]
        for layer, one in zip(layers, calls, strict=True):
            call = captured[layer.module]
            a, z = (None, None) if one is None else one
            pairs += [(f"the input of {layer.path}", call.input, a),
                      (f"the output of {layer.path}", call.output, z)]
        check_last_point(pairs, x.shape[0],
                         "use method='jacobian', which differentiates every point alone",
                         LayerwiseInapplicableError)

    def feature_memory(self, c: int, kc: int) -> int:
        """Scalars held while forming the factors of c points and kc outputs."""
        scalars = c * self.audit.activations * (kc + 1)
        for (t, p, q), per_example in zip(self.audit.layer_sizes, self.per_example, strict=True):
            scalars += c * (kc * t * q + t * p + (kc * p * q if per_example else 0))
        return scalars

    def block_memory(self, c1: int, c2: int, kc: int, per_layer: bool) -> int:
        """Scalars of one block's temporaries: the largest layer's Grams, and the blocks."""
        pairs = output_pairs(self.mode, kc)
        gram = max((c1 * c2 * (pairs + 1) * (1 if per_example else t * t)
                    for (t, _, _), per_example in zip(self.audit.layer_sizes, self.per_example,
                                                      strict=True)), default=0)
        return gram + c1 * c2 * pairs * (len(self.fmodel.params) if per_layer else 1)


def _per_example_cheaper(positions: int, p: int, q: int, pairs: int) -> bool:
    """Whether forming per-example weight gradients beats the positions-squared Gram path."""
    return positions > 1 and pairs * p * q < positions * positions * (p + pairs * q)


@dataclass(frozen=True)
class _Call:
    """A layer's recorded call: its input, the output that gradients are taken with respect to,
    and their version counters when the call returned (None: copies, which nothing changes)."""

    input: torch.Tensor
    output: torch.Tensor
    versions: tuple[int, int] | None

    def changed(self) -> bool:
        """Whether the input or output was modified in place after the call."""
        return (self.versions is not None
                and self.versions != (self.input._version, self.output._version))


@contextlib.contextmanager
def _capture(layers: tuple[LayerAdapter, ...], in_place: tuple[bool, ...]) -> Iterator[dict]:
    """Forward hooks recording module -> _Call and making layer outputs differentiable.

    A layer whose input does not require grad (nothing upstream does: the first layer, or one
    after a part run under no_grad) is called on a detached leaf of it that does, so that its
    output requires grad and gradients with respect to it exist (the graph behind the input is
    not needed; a leaf is a view, not a copy). The input and output are then kept as they are,
    without copies, unless the audit saw them modified in place after the layer ran
    (``in_place``, e.g. ReLU(inplace=True) next): then the input is copied and the model
    continues with a copy of the output, so that neither the recorded input nor the output the
    gradients are taken with respect to change. The version counters of what is kept uncopied
    are recorded for ``_check_calls`` to verify. An output that still does not require grad is
    replaced by a detached leaf that does, and the model continues with a copy of it. Calls
    made with gradient recording off are left alone: they add nothing to the derivatives, and
    the audit has checked that each layer has exactly one recorded call.
    """
    captured: dict = {}

    def enter(module, args):
        if not torch.is_grad_enabled() or args[0].requires_grad:
            return None
        return (args[0].detach().requires_grad_(), *args[1:])

    def leave(module, args, output, copy):
        if not torch.is_grad_enabled():
            return None
        a = args[0].detach()
        if copy:
            a = a.clone()
        if output.requires_grad and not copy:
            captured[module] = _Call(a, output, (a._version, output._version))
            return None
        z = output if output.requires_grad else output.detach().requires_grad_()
        captured[module] = _Call(a, z, None if copy else (a._version, z._version))
        return z.clone()

    handles = [hook for layer, copy in zip(layers, in_place, strict=True)
               for hook in (layer.module.register_forward_pre_hook(enter),
                            layer.module.register_forward_hook(
                                functools.partial(leave, copy=copy)))]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


class LayerwiseInapplicableError(WidenetError):
    """The layer-wise pass found, on the points of a chunk, what the probe did not show: a layer
    not called once on the chunk's rows, or its input or output changed in place afterwards."""


def _check_calls(layers: tuple[LayerAdapter, ...], captured: dict, c: int) -> None:
    """Raise ``LayerwiseInapplicableError`` unless every layer was called once with gradient
    recording on, on a tensor of c rows, and what was kept of it uncopied was not modified in
    place (guards behind the audit, for a model that changes with the number of points)."""
    for layer in layers:
        call = captured.get(layer.module)
        if call is None or call.input.shape[0] != c or call.output.shape[0] != c:
            raise LayerwiseInapplicableError(
                f"{layer.path} was not called on the {c} points of a chunk as on the probe, so "
                "the layer-wise method does not apply to this model; use method='jacobian'")
        if call.changed():
            raise LayerwiseInapplicableError(
                f"the input or output of {layer.path} was modified in place on the {c} points "
                "of a chunk but not on the probe, so the layer-wise method does not apply to "
                "this model; use method='jacobian'")


def _output_gradients(f: torch.Tensor, zs: list[torch.Tensor]) -> list[torch.Tensor]:
    """d f[:, a] / d z for every output a at once: (kc, c, *z.shape[1:]) for each z.

    The points are independent, so the gradient of sum_i f[i, a] gives every point's row; the
    kc output units are one backward pass batched over one-hot cotangents.
    """
    c, kc = f.shape
    if not f.requires_grad:
        return [z.new_zeros(kc, *z.shape) for z in zs]
    if kc == 1:
        grads = torch.autograd.grad(f, zs, torch.ones_like(f), allow_unused=True)
        grads = [None if g is None else g.unsqueeze(0) for g in grads]
    else:
        basis = torch.eye(kc, dtype=f.dtype, device=f.device)[:, None, :].expand(kc, c, kc)
        grads = torch.autograd.grad(f, zs, basis, is_grads_batched=True, allow_unused=True)
    return [z.new_zeros(kc, *z.shape) if g is None else g for g, z in zip(grads, zs, strict=True)]


def _layer_factors(layer: LayerAdapter, a: torch.Tensor, g: torch.Tensor,
                   per_example: bool) -> list[Factor]:
    """The weight and bias factors of one layer from A (c, T, p) and G (kc, c, T, q)."""
    factors = []
    if layer.weight is not None:
        if per_example:
            rows = torch.einsum("aitq,itp->aiqp", g, a).flatten(2).unsqueeze(2)
            factors.append(Factor(layer.weight, layer.weight_scale, rows, None))
        else:
            factors.append(Factor(layer.weight, layer.weight_scale, g, a))
    if layer.bias is not None:
        summed = g if g.shape[2] == 1 else g.sum(2, keepdim=True)
        factors.append(Factor(layer.bias, layer.bias_scale, summed, None))
    return factors
