"""Hermite coefficients of phi(sqrt(q) z) and the Mehler series of Gaussian duals.

With h_k = He_k / sqrt(k!) the orthonormal Hermite polynomials of z ~ N(0, 1) and
a_k(q) = E[phi(sqrt(q) z) h_k(z)], Mehler's formula gives, for (u, v) ~ N(0, [[q1, c],
[c, q2]]) and rho = c / sqrt(q1 q2),

    E[phi(u) phi(v)] = sum_k a_k(q1) a_k(q2) rho^k.

Over a set of points this is sum_k diag(a_k) R^(k) diag(a_k), R^(k) the k-th elementwise power
of the correlation matrix: a sum of Schur products of PSD matrices, so every truncation of it
(any coefficients at all) gives a PSD kernel matrix, whatever the points' variances.

The coefficients come from an M-node Gauss-Hermite rule, a_k = sum_i w_i phi(sqrt(q) z_i)
h_k(z_i) for k < M. These are exactly the Hermite coefficients of p, the polynomial of degree
< M interpolating phi(sqrt(q) z) at the nodes (the rule integrates p h_k exactly), so the series
is the exact dual E[p1(z1) p2(z2)] of these surrogates, and sum_k a_k^2 = sum_i w_i phi_i^2 is
the rule's E[phi^2] (discrete Parseval). M doubles from 32 for each point until the upper half
of its coefficients is below RESOLVED of their norm and the coefficients agree with the previous
rule's to RESOLVED (a resolved, converged interpolant: a small upper half alone can be aliasing,
a phi oscillating faster than the rule samples folding into a smooth polynomial), or M
reaches the given maximum (a phi(sqrt(q) z) that is nearly a step: the series then converges
slowly in rho near +-1, but stays PSD and exact at rho = +-1 and 0 up to the rule's error).

Where the largest rule did not converge, the error of the series is bounded at every
correlation (:mod:`widenet.activations._hermite_bound`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import roots_hermitenorm

from widenet.activations._cache import Cache
from widenet.activations._hermite_bound import Defects, true_defects, weighted_norms

SMALLEST_RULE = 32
EPS = float(np.finfo(np.float64).eps)
RESOLVED = 1e-10  # upper-half amplitude (relative) below which a rule has converged
# A largest rule whose upper half and change from the next smaller rule are both below SCREEN
# of its norm is taken as resolved without computing its bound (0.2 to 0.7 ms per variance, see
# _Panels): measured bounds there are far smaller (tanh at q = 4: 2e-8 and 1e-14; a kink,
# relu's coefficients, which decay slowest: bound 0.8 times the upper half's amplitude).
SCREEN = 1e-6
NOISE = 16.0 * EPS  # a coefficient below NOISE * sqrt(sum a_k^2) is round-off: set to 0
# The series is cut where the rest of a point's coefficients has amplitude TAIL * sqrt(sum a_k^2):
# by Cauchy-Schwarz the part dropped from a pair is at most TAIL sqrt(E[phi(u)^2] E[phi(v)^2]).
TAIL = 1e-13
CACHE_BYTES = 64 * 2**20
POWERS = 2**20  # entries of rho's powers summed at once by mehler_sum


@functools.cache
def _rule(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """(z, H): the nodes z_i of the ``nodes``-point Gauss-Hermite rule for z ~ N(0, 1) and the
    (nodes, nodes) matrix H_ik = w_i h_k(z_i).

    Starting from scipy's nodes and weights (for more than 150 nodes scipy's asymptotic ones are
    about 1e-14 off, which would cost as much accuracy), the orthogonal matrix
    sqrt(w_i) h_k(z_i) is built by the bounded three-term recurrence
    h_{k+1} = (z h_k - sqrt(k) h_{k-1}) / sqrt(k + 1); one Newton step on h_M
    (h_M' = sqrt(M) h_{M-1}) corrects each node, the recurrence is run again and each row is
    scaled to unit norm, which makes w_i the Christoffel numbers 1 / sum_k h_k(z_i)^2. Nodes
    whose weight is below 1e-300 are left as they are: they contribute about 0, as they should.
    """
    z, w = roots_hermitenorm(nodes)
    root = np.sqrt(w / math.sqrt(2.0 * math.pi))
    good = root > 1e-150
    basis, top = _recurrence(z, root, nodes)
    z = np.where(good, z - top / (math.sqrt(nodes) * np.where(good, basis[:, -1], 1.0)), z)
    basis, _ = _recurrence(z, root, nodes)
    norm = np.sqrt((basis * basis).sum(1))
    basis /= np.where(good, norm, 1.0)[:, None]
    return z, basis[:, :1] * basis


@functools.cache
def _rule_on(nodes: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_rule` as float64 tensors on ``device`` (copied there once)."""
    return tuple(torch.as_tensor(t, device=device) for t in _rule(nodes))


def _recurrence(z: np.ndarray, root: np.ndarray, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """(root_i h_k(z_i) for k < nodes, root_i h_nodes(z_i)); the recurrence runs on contiguous
    rows of k, the first is returned C-contiguous in (i, k)."""
    basis = np.empty((nodes + 1, nodes))
    basis[0] = root
    basis[1] = z * root
    for k in range(1, nodes):
        basis[k + 1] = (z * basis[k] - math.sqrt(k) * basis[k - 1]) / math.sqrt(k + 1)
    return torch.from_numpy(basis[:nodes]).T.contiguous().numpy(), basis[nodes]  # blocked copy


def _rule_sizes(largest: int) -> list[int]:
    """32, 64, ... doubling, ending with ``largest`` itself."""
    sizes = []
    size = min(SMALLEST_RULE, largest)
    while size < largest:
        sizes.append(size)
        size *= 2
    return [*sizes, largest]


@dataclass(frozen=True)
class Series:
    """The Hermite coefficients of f(sqrt(q) z), (K, *q.shape) float64, for the variances q
    (float64, q's shape), and their :class:`Defects` where some variance left the largest rule
    unconverged (None when every one converged)."""

    coefficients: torch.Tensor
    q: torch.Tensor
    defects: Defects | None

    def bound_terms(self) -> Defects:
        """:attr:`defects`, or those of a series that converged at every variance."""
        if self.defects is not None:
            return self.defects
        norm = weighted_norms(self.coefficients.movedim(0, -1), 1.0)
        zero = torch.zeros_like(self.q)
        return Defects(norm, norm, torch.zeros_like(norm), zero,
                       (self.coefficients * self.coefficients).sum(0))


def hermite_series(f: Callable[[torch.Tensor], torch.Tensor], q: torch.Tensor, largest: int
                   ) -> Series:
    """The :class:`Series` of f for every entry of q (a variance >= 0): its coefficients
    a_k(q) = E[f(sqrt(q) z) h_k(z)], k < K, (K, *q.shape) float64, each entry's from the
    smallest rule that resolves it (at most ``largest`` nodes, see the module docstring), cut
    after its last coefficient that matters (TAIL) and with round-off coefficients set to 0; K
    is the longest entry's length. Each entry's coefficients depend on that entry alone, so a
    point gets the same ones in every block of pairs (to the round-off of a matrix product;
    the blocks of one call hit a cache keyed by q's bytes)."""
    flat = q.detach().to(torch.float64).reshape(-1)
    key = (f, largest, flat.device, flat.cpu().numpy().tobytes())
    found = _cache.get(key)
    if found is None:
        coefficients, defects = _coefficients(f, flat, largest)
        found = Series(coefficients.T.contiguous(), flat, defects)
        _cache.put(key, found)
    return Series(found.coefficients.reshape(-1, *q.shape), found.q.reshape(q.shape),
                  None if found.defects is None else found.defects.reshape(q.shape))


def _coefficients(f: Callable[[torch.Tensor], torch.Tensor], q: torch.Tensor, largest: int
                  ) -> tuple[torch.Tensor, Defects | None]:
    """(n, K) coefficients for the n variances q (see :func:`hermite_series`), computed once
    per distinct variance (inputs of one norm share one), and their :class:`Defects` (flat)
    when some finite variance left the largest rule unconverged, else None."""
    q, inverse = torch.unique(q, return_inverse=True)
    scale = torch.sqrt(q.clamp_min(0.0))[:, None]
    found = torch.zeros(q.shape[0], largest, dtype=torch.float64, device=q.device)
    pending = torch.arange(q.shape[0], device=q.device)
    unresolved = pending[:0]
    coarser = None  # the previous rule's coefficients of the pending entries
    for size in _rule_sizes(largest):
        if pending.numel() == 0:
            break
        z, basis = _rule_on(size, q.device)
        coefficients = f(scale[pending] * z).to(torch.float64) @ basis
        energy = (coefficients * coefficients).sum(1)
        tail = (coefficients[:, size // 2:] ** 2).sum(1)
        # a small tail alone can be aliasing (phi oscillating faster than the rule samples
        # folds into a smooth polynomial): the coarser rule must agree as well
        change = (torch.full_like(tail, math.inf) if coarser is None else
                  ((coefficients[:, :coarser.shape[1]] - coarser) ** 2).sum(1))
        # f vanishing on every node of a positive variance says nothing of f between the nodes
        # (tanh's derivative at q >= 1e4 is a spike the coarse rules step over): not resolved
        seen = (energy > 0) | (q[pending] == 0)
        converged = (torch.maximum(tail, change) <= RESOLVED**2 * energy) & seen
        if size == largest:
            rough = (torch.maximum(tail, change) > SCREEN**2 * energy) | ~seen
            unresolved = pending[rough & torch.isfinite(q[pending])]
        resolved = converged | (size == largest)
        found[pending[resolved], :size] = coefficients[resolved]
        pending, coarser = pending[~resolved], coefficients[~resolved]
    energy = (found * found).sum(1, keepdim=True)
    rest = (found * found).flip(1).cumsum(1).flip(1)  # sum over j >= k of a_j^2
    negligible = (rest <= TAIL**2 * energy) | (found.abs() <= NOISE * torch.sqrt(energy))
    found = torch.where(negligible, 0.0, found)  # keeps NaN: a NaN is never negligible
    defects = None if unresolved.numel() == 0 else true_defects(f, q, found, unresolved)
    used = (found != 0).any(0).nonzero()
    found = found[inverse, :int(used.max()) + 1 if used.numel() else 1]
    if defects is not None:
        defects = Defects(*(t[..., inverse] for t in (
            defects.true_norm, defects.rule_norm, defects.defect, defects.tail, defects.energy)))
    return found, defects


def _bytes(series: Series) -> int:
    tensors = [series.coefficients, series.q]
    if series.defects is not None:
        d = series.defects
        tensors += [d.true_norm, d.rule_norm, d.defect, d.tail, d.energy]
    return sum(t.numel() * t.element_size() for t in tensors)


_cache = Cache(CACHE_BYTES, _bytes)  # Series, by f, rule size and q's bytes


def mehler_sum(a1: torch.Tensor, a2: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """sum_k a1[k] a2[k] rho^k, broadcasting a1[k], a2[k] and rho (a1, a2 of one length K).
    When only odd (or only even) k have non-zero terms, as for odd (even) phi, it runs over
    rho^2 with half the terms. Terms are summed G at a time, sum_j a1[k+j] a2[k+j] rho^j with
    the powers rho^0..rho^(G-1) computed once, Horner's rule across the groups; G = 1 (plain
    Horner, two passes over the block per term) when the block is large."""
    count = a1.shape[0]
    terms = ((a1 != 0).reshape(count, -1).any(1) & (a2 != 0).reshape(count, -1).any(1)
             ).nonzero().flatten().tolist()
    out = torch.zeros_like(rho)
    if not terms:
        return out
    parity = terms[0] % 2
    step = 2 if all(k % 2 == parity for k in terms) else 1
    power = rho * rho if step == 2 else rho
    first = parity if step == 2 else 0
    a1, a2 = (a[first:terms[-1] + 1:step].reshape(-1, *_leading_ones(a, rho), *a.shape[1:])
              for a in (a1, a2))
    group = max(1, min(a1.shape[0], POWERS // max(1, rho.numel())))
    if group == 1:
        for k in range(a1.shape[0] - 1, -1, -1):
            out.mul_(power).addcmul_(a1[k], a2[k])
    else:
        powers = torch.cat([torch.ones_like(power)[None],
                            power.expand(group - 1, *power.shape).cumprod(0)])
        top = powers[-1] * power  # power^group
        for start in range(((a1.shape[0] - 1) // group) * group, -1, -group):
            size = min(group, a1.shape[0] - start)
            chunk = (a1[start:start + size] * powers[:size]).mul_(a2[start:start + size])
            out.mul_(top).add_(chunk.sum(0))
    return out.mul_(rho) if step == 2 and parity == 1 else out


def _leading_ones(a: torch.Tensor, rho: torch.Tensor) -> tuple[int, ...]:
    """Ones that align a[k]'s axes with rho's trailing ones, as broadcasting a[k] would."""
    return (1,) * (rho.ndim - (a.ndim - 1))
