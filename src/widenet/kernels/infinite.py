"""Exact infinite-width NNGP and NTK of an MLP (docs/theory.md section 3), computed blockwise.

With c_l = Sigma^l(x, x'), q_l = Sigma^l(x, x), q'_l = Sigma^l(x', x') and (u, v) ~ N(0, Sigma^l):

    Sigma^1       = sigma_w^2 <x, x'> / d + sigma_b^2,             Theta^1 = Sigma^1
    Sigma^{l+1}   = sigma_w^2 E[phi(u) phi(v)] + sigma_b^2
    Sigmadot^{l+1} = sigma_w^2 E[phi'(u) phi'(v)]
    Theta^{l+1}   = Sigma^{l+1} + Sigmadot^{l+1} * Theta^l          (l = 1..L)

NNGP = Sigma^{L+1} and NTK = Theta^{L+1}, per output unit (with k outputs the kernels are these
times I_k). Entry (i, j) depends only on x_i, x_j and the diagonal variances, so the matrices are
filled block by block: peak memory is the output plus a few blocks, and for x2 = None only the
blocks on and above the diagonal are computed and then mirrored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from widenet.errors import WidenetError
from widenet.models import MLP
from widenet.validation import data_matrix, positive_int

BlockFunction = Callable[[slice, slice], list[torch.Tensor]]

BLOCK_BYTES = 2**20  # default block: about 1 MiB per working array, so a layer stays in cache
_RECURSION_PARAMETRIZATIONS = ("ntk", "standard")


@dataclass(frozen=True)
class LayerKernels:
    """The recursion's intermediate kernels, kept with ``per_layer=True``.

    sigma[l - 1] = Sigma^l for l = 1..L+1; sigma_dot[l - 2] = Sigmadot^l for l = 2..L+1.
    ntk_blocks[name] is the contribution of the parameter ``name`` (as in
    ``net.named_parameters()``) to the NTK: for dense layer l,
        weight: (Sigma^l - sigma_b^2) * P_l,   bias: sigma_b^2 * P_l,
    with P_l = Sigmadot^{l+1} * ... * Sigmadot^{L+1} (P_{L+1} = 1); they sum to Theta^{L+1}.
    ntk_blocks is empty for parametrizations without a finite NTK.
    """

    sigma: tuple[torch.Tensor, ...]
    sigma_dot: tuple[torch.Tensor, ...]
    ntk_blocks: dict[str, torch.Tensor]


@dataclass(frozen=True)
class InfiniteKernels:
    """The infinite-width kernels of a net on (x1, x2): ``nngp`` and ``ntk``, each (n1, n2)."""

    nngp: torch.Tensor
    _ntk: torch.Tensor | None
    parametrization: str
    layers: LayerKernels | None = None

    @property
    def ntk(self) -> torch.Tensor:
        """Theta^{L+1}; raises for parametrizations whose NTK has no finite limit."""
        if self._ntk is None:
            raise WidenetError(
                f"the {self.parametrization!r} parametrization has no finite infinite-width NTK "
                "(its empirical NTK grows with width); build the MLP with "
                "parametrization='ntk' for the NTK. The NNGP (.nngp) is available.")
        return self._ntk


def infinite_kernels(net: MLP, x1: torch.Tensor, x2: torch.Tensor | None = None, *,
                     per_layer: bool = False, dtype: torch.dtype | None = None,
                     block_size: int | None = None) -> InfiniteKernels:
    """The NNGP and NTK of ``net``'s infinite-width limit between the rows of x1 and x2.

    Only the net's depth, activation, stds and parametrization matter, not its widths or
    weights. The result has the inputs' dtype (``dtype=`` overrides; float64 is recommended for
    spectra) and device. ``x2=None`` means x2 = x1 and gives exactly symmetric matrices.
    ``per_layer=True`` also returns the intermediate kernels and the per-parameter NTK blocks
    (see :class:`LayerKernels`); that keeps 2L + 1 extra matrices in memory.
    ``block_size`` sets the side of the blocks the matrices are filled in (default: 1 MiB per
    block, 512 in float32 and 362 in float64).
    """
    if not isinstance(net, MLP):
        raise WidenetError(f"infinite_kernels needs a widenet.MLP, got {type(net).__name__}")
    if net.parametrization.name not in _RECURSION_PARAMETRIZATIONS:
        covered = " and ".join(_RECURSION_PARAMETRIZATIONS)
        raise WidenetError(f"infinite_kernels covers the {covered} parametrizations, not "
                           f"{net.parametrization.name!r} (whose limit is not this kernel "
                           "recursion); build the MLP with parametrization='ntk'")
    x1 = data_matrix(x1, "x1", features=net.in_features)
    symmetric = x2 is None
    x2 = x1 if symmetric else data_matrix(x2, "x2", features=net.in_features)
    if x1.device != x2.device:
        raise WidenetError(f"x1 is on {x1.device} but x2 is on {x2.device}; move both to one "
                           "device")
    dtype = dtype or torch.promote_types(x1.dtype, x2.dtype)
    if not dtype.is_floating_point:
        raise WidenetError(f"dtype must be a floating-point dtype, got {dtype}")
    default_block = math.isqrt(BLOCK_BYTES // torch.empty((), dtype=dtype).element_size())
    block = positive_int(block_size or default_block, "block_size")
    recursion = _Recursion(net, x1.to(dtype), x2.to(dtype), per_layer=per_layer,
                           symmetric=symmetric)
    matrices = _fill_blocks(recursion, recursion.output_count, x1.shape[0], x2.shape[0],
                            block, symmetric)
    return recursion.assemble(matrices)


class _Recursion:
    """The section-3 recursion for one net on one pair of inputs, evaluated block by block."""

    def __init__(self, net: MLP, x1: torch.Tensor, x2: torch.Tensor, *, per_layer: bool,
                 symmetric: bool):
        self.activation = net.activation
        self.depth = net.depth
        self.weight_var = net.weight_std**2
        self.bias_var = net.bias_std**2
        self.parametrization = net.parametrization
        self.want_ntk = net.parametrization.finite_ntk
        self.per_layer = per_layer
        self.parameter_names = [name for name, _ in net.named_parameters()]
        self.x1, self.x2 = x1, x2
        self.symmetric = symmetric
        self._workspace: torch.Tensor | None = None
        self.q1, self.q2 = self.diagonal_variances(x1), self.diagonal_variances(x2)
        self.output_count = ((2 if self.want_ntk else 1)
                             + (2 * self.depth + 1 if per_layer else 0))

    def diagonal_variances(self, x: torch.Tensor) -> torch.Tensor:
        """Rows q_l(x) = Sigma^l(x, x) for l = 1..L+1, shape (L+1, n).

        q_1 = sigma_w^2 ||x||^2 / d + sigma_b^2, q_{l+1} = sigma_w^2 E[phi(u)^2] + sigma_b^2.
        """
        q = [(x * x).mean(dim=1).mul_(self.weight_var).add_(self.bias_var)]
        for _ in range(self.depth):
            q.append(self.activation.second_moment(q[-1]).mul(self.weight_var)
                     .add_(self.bias_var))
        return torch.stack(q)

    def block(self, rows: slice, cols: slice) -> list[torch.Tensor]:
        """[NNGP, (NTK), (Sigma^1..Sigma^{L+1}, Sigmadot^2..Sigmadot^{L+1})] on one block."""
        x1, x2 = self.x1[rows], self.x2[cols]
        # Five buffers reused across layers and blocks (fresh arrays cost page faults): the
        # activation writes E[phi phi] into `spare` and E[phi' phi'] into `sigma_dot`, which
        # become Sigma^{l+1} and Sigmadot^{l+1}.
        sigma, theta, spare, sigma_dot, work = self.buffers(x1.shape[0], x2.shape[0])
        torch.matmul(x1, x2.T, out=sigma).mul_(self.weight_var / x1.shape[1])
        sigma.add_(self.bias_var)
        # On the diagonal Sigma^1(x, x) = q_1(x) by definition; writing q_1 there makes rho = 1
        # exactly (a matmul and a mean round differently, by more than rho's snap at large d).
        if self.symmetric and rows == cols:
            sigma.diagonal().copy_(self.q1[0, rows])
        theta = theta.copy_(sigma) if self.want_ntk else None
        sigmas, sigma_dots = ([sigma.clone()], []) if self.per_layer else ([], [])
        for layer in range(self.depth):
            q1 = self.q1[layer, rows].unsqueeze(1)
            q2 = self.q2[layer, cols].unsqueeze(0)
            product, _ = self.activation.duals_into(q1, q2, sigma, spare, sigma_dot, work)
            spare, sigma = sigma, product.mul_(self.weight_var).add_(self.bias_var)
            if self.want_ntk or self.per_layer:
                sigma_dot.mul_(self.weight_var)
            if theta is not None:
                theta.mul_(sigma_dot).add_(sigma)
            if self.per_layer:
                sigmas.append(sigma.clone())
                sigma_dots.append(sigma_dot.clone())
        head = [sigma] if theta is None else [sigma, theta]
        return head + sigmas + sigma_dots

    def buffers(self, rows: int, cols: int) -> list[torch.Tensor]:
        """Five contiguous (rows, cols) views into workspace arrays allocated once per call."""
        size = rows * cols
        if self._workspace is None or self._workspace.shape[1] < size:
            self._workspace = torch.empty(5, size, dtype=self.x1.dtype, device=self.x1.device)
        return [flat[:size].view(rows, cols) for flat in self._workspace]

    def assemble(self, matrices: list[torch.Tensor]) -> InfiniteKernels:
        """Wrap the filled matrices (in the order of :meth:`block`) into InfiniteKernels."""
        nngp = matrices[0]
        ntk = matrices[1] if self.want_ntk else None
        layers = None
        if self.per_layer:
            rest = matrices[2 if self.want_ntk else 1:]
            sigmas, sigma_dots = rest[:self.depth + 1], rest[self.depth + 1:]
            blocks = self.ntk_blocks(sigmas, sigma_dots) if self.want_ntk else {}
            layers = LayerKernels(tuple(sigmas), tuple(sigma_dots), blocks)
        return InfiniteKernels(nngp, ntk, self.parametrization.name, layers)

    def ntk_blocks(self, sigmas: list[torch.Tensor], sigma_dots: list[torch.Tensor]
                   ) -> dict[str, torch.Tensor]:
        """Per-parameter NTK contributions, keyed like ``net.named_parameters()``."""
        blocks: dict[str, torch.Tensor] = {}
        suffix = torch.ones_like(sigmas[0])
        for layer in reversed(range(self.depth + 1)):
            blocks[f"layers.{layer}.weight"] = (sigmas[layer] - self.bias_var) * suffix
            if self.bias_var > 0:
                blocks[f"layers.{layer}.bias"] = self.bias_var * suffix
            if layer > 0:
                suffix = suffix * sigma_dots[layer - 1]
        return {name: blocks[name] for name in self.parameter_names}


def _block_pairs(n1: int, n2: int, block: int, symmetric: bool
                 ) -> Iterator[tuple[slice, slice]]:
    """Row and column slices of the blocks to compute (upper triangle only when symmetric)."""
    for i in range(0, n1, block):
        for j in range(i if symmetric else 0, n2, block):
            yield slice(i, min(i + block, n1)), slice(j, min(j + block, n2))


def _fill_blocks(recursion: _Recursion, count: int, n1: int, n2: int, block: int,
                 symmetric: bool) -> list[torch.Tensor]:
    """Allocate ``count`` (n1, n2) matrices and fill them block by block.

    When symmetric, each off-diagonal block is mirrored and each diagonal block is made exactly
    symmetric from its upper triangle.
    """
    x = recursion.x1
    outputs = [torch.empty(n1, n2, dtype=x.dtype, device=x.device) for _ in range(count)]
    for rows, cols in _block_pairs(n1, n2, block, symmetric):
        for output, value in zip(outputs, recursion.block(rows, cols), strict=True):
            _check_finite(value)
            if symmetric and rows == cols:
                value = torch.triu(value) + torch.triu(value, diagonal=1).T
            output[rows, cols] = value
            if symmetric and rows != cols:
                output[cols, rows] = value.T
    return outputs


def _check_finite(block: torch.Tensor) -> None:
    """Raise if a block overflowed: its sum is finite unless an entry is not (or, rarely, the
    entries are so large that they overflow when added, which the exact test then rules out)."""
    if bool(torch.isfinite(block.sum())) or bool(torch.isfinite(block).all()):
        return
    remedy = ("rescale the inputs" if block.dtype == torch.float64
              else "pass dtype=torch.float64 or rescale the inputs")
    raise WidenetError(f"the kernel overflowed in {block.dtype}: the inputs' norms are too large "
                       f"for it; {remedy}")
