"""Gaussian-expectation helpers shared by the activations: correlations and J(rho)."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

TensorLike = torch.Tensor | float

TWO_OVER_PI = 2.0 / math.pi


def as_tensors(*values: TensorLike) -> list[torch.Tensor]:
    """All arguments as tensors of the tensor arguments' promoted dtype (float64 if none is a
    tensor) on their device."""
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    dtype = functools.reduce(torch.promote_types, [t.dtype for t in tensors] or [torch.float64])
    device = tensors[0].device if tensors else None
    return [torch.as_tensor(v, dtype=dtype, device=device) for v in values]


def broadcast_shape(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """The broadcast of tensor shapes (what torch.broadcast_shapes gives, without its cost of
    about a millisecond per call, which the blockwise kernels would pay thousands of times)."""
    ndim = max(len(s) for s in shapes)
    result = [1] * ndim
    for shape in shapes:
        for axis, size in enumerate(shape, start=ndim - len(shape)):
            if size != 1:
                if result[axis] not in (1, size):
                    raise ValueError(f"shapes {shapes} do not broadcast")
                result[axis] = size
    return tuple(result)


def correlation_into(q1: torch.Tensor, q2: torch.Tensor, c: torch.Tensor, out: torch.Tensor
                     ) -> torch.Tensor:
    """rho = c / sqrt(q1 q2) clamped to [-1, 1], written into ``out`` (which must not alias c).

    Where q1 q2 = 0 (a zero-variance coordinate) rho is set to 0, the value every dual below
    takes as its limit there. The root is taken as sqrt(q1) sqrt(q2), a product of two numbers
    (so rho(x, x') == rho(x', x)) that neither overflows nor underflows for any positive
    variances; c is divided by it (1 / sqrt(q1 q2) would overflow for variances below the
    dtype's smallest normal number, about 1e-38 in float32, and 0 * inf gave NaN). rho is
    inflated by 4 units of round-off before the clamp, so that identical points, whose computed
    c / sqrt(q1 q2) can miss 1 by a few ulps, get rho = 1 exactly: arcsin is so steep there that
    a 1e-16 miss would cost 1e-8 (float32: 1e-7 would cost 5e-4) in E[phi'(u) phi'(v)].
    """
    roots = product_into(torch.sqrt(q1), torch.sqrt(q2), out)
    inflate = 1.0 + 4.0 * torch.finfo(c.dtype).eps
    rho = torch.div(c, roots, out=out).nan_to_num_(0.0, 0.0, 0.0)  # 0 where a root is 0
    return rho.mul_(inflate).clamp_(-1.0, 1.0)


def product_into(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """a * b written into ``out``, broadcast to its shape (which may be larger than a * b's)."""
    if broadcast_shape(a.shape, b.shape) == tuple(out.shape):
        return torch.mul(a, b, out=out)
    return out.copy_(a * b)


def correlation(q1: torch.Tensor, q2: torch.Tensor, c: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(sqrt(q1 q2), rho), with rho as in :func:`correlation_into`."""
    rho = torch.empty(broadcast_shape(q1.shape, q2.shape, c.shape), dtype=c.dtype,
                      device=c.device)
    return torch.sqrt(q1) * torch.sqrt(q2), correlation_into(q1, q2, c, rho)


def arc_cosine_j(rho: torch.Tensor) -> torch.Tensor:
    """J(rho) = (2/pi) (sqrt(1 - rho^2) + rho arcsin rho); E[|u||v|] = sqrt(q1 q2) J(rho).

    sqrt(1 - rho^2) is evaluated as sqrt((1 - rho)(1 + rho)), accurate near |rho| = 1.
    """
    root = ((1.0 - rho) * (1.0 + rho)).sqrt_()
    return root.addcmul_(rho, torch.asin(rho)).mul_(TWO_OVER_PI)


NEAR = 40.0  # |s| below which phi may have features of width ~1 (tanh' and gelu's bend)
REACH = 38.0  # N(0, 1)'s density underflows float64 past 38 standard deviations
PANELS = 152  # panels of the outer range (and of the inner one at q < 1)


@functools.cache
def _legendre(nodes: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gauss-Legendre rule on [-1, 1] as float64 tensors."""
    return tuple(torch.from_numpy(t) for t in np.polynomial.legendre.leggauss(nodes))


def _layout(q: float) -> tuple[float, int, float]:
    """(near, count, reach) for q > 0: :func:`gaussian_panels` lays ``count`` equal panels on
    0 <= s <= near and, where reach > near, PANELS equal ones on near <= s <= reach (and the same
    on s < 0). count <= NEAR / 0.25 = 160 at every q."""
    root = math.sqrt(q)
    reach = REACH * root
    near = min(reach, NEAR)
    return near, math.ceil(near / min(0.25, root / 4.0)), reach


def gaussian_panels(q: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes s and weights w with sum_i w_i f(s_i) = E[f(u)], u ~ N(0, q), for functions whose
    features have width ~1 in s or sqrt(q): 16-point Gauss-Legendre panels, symmetric about 0
    (a kink there falls on a panel's edge), at most min(1/4, sqrt(q)/4) wide for
    |s| < min(NEAR, REACH sqrt(q)) and sqrt(q)/4 beyond, out to REACH sqrt(q): about 10^4 nodes
    at any q > 0; q = 0 gives the single node 0."""
    if q <= 0.0:
        return torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    root = math.sqrt(q)
    near, count, reach = _layout(q)
    edges = torch.linspace(0.0, near, count + 1, dtype=torch.float64)
    if reach > near:
        edges = torch.cat([edges, torch.linspace(near, reach, PANELS + 1,
                                                 dtype=torch.float64)[1:]])
    return _nodes(torch.cat([-edges.flip(0)[:-1], edges]), root)


def common_panels(q: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """The nodes z_i > 0 and weights w_i of a rule symmetric about 0 (its other half is -z_i with
    the same weights), sum_i w_i (g(z_i) + g(-z_i)) = E[g(z)], z ~ N(0, 1), that resolves
    g(z) = f(sqrt(q) z) h(z) at least as finely as :func:`gaussian_panels` (q) does in
    s = sqrt(q) z, for every variance q >= 0 given at once: 16-point Gauss-Legendre panels,
    symmetric about 0, each no wider than any panel of any gaussian_panels(q), mapped to z, that
    it overlaps.

    In z, gaussian_panels(q) has ``count`` equal panels on [0, e], e = near / sqrt(q), and
    PANELS on [e, REACH] where reach > near (:func:`_layout`). The panels are laid from 0 on,
    each [z, z + d] with d = max(z, e_min) / n below e_max (e_min, e_max the smallest and
    largest e, n the largest count: e / count >= max(z, e_min) / n for every e > z), cut to
    (REACH - e) / PANELS for the largest e below z + d: uniform up to e_min, then growing by
    the factor 1 + 1/n, about n (1 + ln(e_max / e_min)) panels up to e_max, then at most
    PANELS. q = 0 (f(0 z) is constant) asks for panels 1/4 wide in z, as q = 1 does."""
    layouts = [_layout(v) for v in q if v > 0.0] or [_layout(1.0)]
    roots = [math.sqrt(v) for v in q if v > 0.0] or [1.0]
    ends = [near / root for (near, _, _), root in zip(layouts, roots, strict=True)]
    first, last = min(ends), max(ends)
    finest = max(count for _, count, _ in layouts)
    outer = np.sort([e for e, (near, _, reach) in zip(ends, layouts, strict=True)
                     if reach > near])
    edges = [0.0]
    while edges[-1] < REACH:
        z = edges[-1]
        width = max(z, first) / finest if z < last else math.inf
        crossed = np.searchsorted(outer, z + width)  # outer[:crossed] < z + width
        if crossed:
            width = min(width, (REACH - outer[crossed - 1]) / PANELS)
        edges.append(min(z + width, REACH))
    return _nodes(torch.tensor(edges, dtype=torch.float64), 1.0)


def _nodes(edges: torch.Tensor, root: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes s and weights of the N(0, root^2) measure on 16-point Gauss-Legendre panels
    between the (increasing) ``edges``."""
    x, v = _legendre()
    middle, half = (edges[1:] + edges[:-1])[:, None] / 2, (edges[1:] - edges[:-1])[:, None] / 2
    s = (middle + half * x).reshape(-1)
    density = torch.exp(-0.5 * (s / root) ** 2) / (root * math.sqrt(2.0 * math.pi))
    return s, (half * v).reshape(-1) * density
