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
"""

from __future__ import annotations

import functools
import math
import warnings
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch
from scipy.special import roots_hermitenorm

from widenet.activations._gaussian import gaussian_panels

SMALLEST_RULE = 32
EPS = float(np.finfo(np.float64).eps)
RESOLVED = 1e-10  # upper-half amplitude (relative) below which a rule has converged
UNRESOLVED_ENERGY = 1e-4  # relative error of the largest rule's E[phi^2] that warns
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
    """(root_i h_k(z_i) for k < nodes, root_i h_nodes(z_i))."""
    basis = np.empty((nodes, nodes + 1))
    basis[:, 0] = root
    basis[:, 1] = z * root
    for k in range(1, nodes):
        basis[:, k + 1] = (z * basis[:, k] - math.sqrt(k) * basis[:, k - 1]) / math.sqrt(k + 1)
    return basis[:, :nodes], basis[:, nodes]


def _rule_sizes(largest: int) -> list[int]:
    """32, 64, ... doubling, ending with ``largest`` itself."""
    sizes = []
    size = min(SMALLEST_RULE, largest)
    while size < largest:
        sizes.append(size)
        size *= 2
    return [*sizes, largest]


def hermite_coefficients(f: Callable[[torch.Tensor], torch.Tensor], q: torch.Tensor,
                         largest: int) -> torch.Tensor:
    """(K, *q.shape) float64 tensor of a_k(q) = E[f(sqrt(q) z) h_k(z)], k < K, for every entry
    of q (a variance >= 0), each from the smallest rule that resolves it (at most ``largest``
    nodes, see the module docstring), cut after its last coefficient that matters (TAIL) and
    with round-off coefficients set to 0; K is the longest entry's length. Each entry's
    coefficients depend on that entry alone, so a point gets the same ones in every block of
    pairs (to the round-off of a matrix product; the blocks of one call hit a cache keyed by
    q's bytes)."""
    flat = q.detach().to(torch.float64).reshape(-1)
    key = (f, largest, flat.device, flat.cpu().numpy().tobytes())
    found = _cache.get(key)
    if found is None:
        found, unresolved = _coefficients(f, flat, largest)
        found = found.T.contiguous()
        if not unresolved:  # an unresolved set is recomputed, so that every call warns
            _cache.put(key, found)
    return found.reshape(-1, *q.shape)


def _coefficients(f: Callable[[torch.Tensor], torch.Tensor], q: torch.Tensor, largest: int
                  ) -> tuple[torch.Tensor, bool]:
    """(n, K) coefficients for the n variances q (see :func:`hermite_coefficients`), computed
    once per distinct variance (inputs of one norm share one), and whether some variance was
    left unresolved (:func:`_warn_unresolved` warned)."""
    q, inverse = torch.unique(q, return_inverse=True)
    scale = torch.sqrt(q.clamp_min(0.0))[:, None]
    found = torch.zeros(q.shape[0], largest, dtype=torch.float64, device=q.device)
    pending = torch.arange(q.shape[0], device=q.device)
    unresolved = False
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
        agrees = (torch.zeros_like(tail, dtype=torch.bool) if coarser is None else
                  ((coefficients[:, :coarser.shape[1]] - coarser) ** 2).sum(1)
                  <= RESOLVED**2 * energy)
        # f vanishing on every node of a positive variance says nothing of f between the nodes
        # (tanh's derivative at q >= 1e4 is a spike the coarse rules step over): not resolved
        seen = (energy > 0) | (q[pending] == 0)
        converged = (tail <= RESOLVED**2 * energy) & agrees & seen
        if size == largest and not bool(converged.all()):
            unresolved = _warn_unresolved(f, energy[~converged], q[pending[~converged]],
                                          largest)
        resolved = converged | (size == largest)
        found[pending[resolved], :size] = coefficients[resolved]
        pending, coarser = pending[~resolved], coefficients[~resolved]
    energy = (found * found).sum(1, keepdim=True)
    rest = (found * found).flip(1).cumsum(1).flip(1)  # sum over j >= k of a_j^2
    negligible = (rest <= TAIL**2 * energy) | (found.abs() <= NOISE * torch.sqrt(energy))
    found = torch.where(negligible, 0.0, found)  # keeps NaN: a NaN is never negligible
    used = (found != 0).any(0).nonzero()
    return found[inverse, :int(used.max()) + 1 if used.numel() else 1], unresolved


def _warn_unresolved(f: Callable[[torch.Tensor], torch.Tensor], energy: torch.Tensor,
                     q: torch.Tensor, largest: int) -> bool:
    """Warn (and say so) when the largest rule's E[f^2] = sum_k a_k^2, the series' diagonal,
    misses E[f(sqrt(q) z)^2] from :func:`gaussian_panels` by more than UNRESOLVED_ENERGY
    (relative), or is 0 at a variance q > 0 (f vanished on every node): the interpolant does not
    represent f. The change between the two largest rules was no bound on that error: a nearly
    step f gives both the same E[f^2] (tanh at q = 1e4: change 2e-5, error 8e-3), and gelu's
    E[phi'^2] at q = 1000 moved by 7e-3 < 1e-2 while 2% off."""
    exact = energy.clone()  # a NaN or infinite variance is not checked
    for index in torch.isfinite(q).nonzero().reshape(-1).tolist():
        s, weights = gaussian_panels(float(q[index]))
        exact[index] = float((weights * f(s).to(torch.float64) ** 2).sum())
    moved = ((energy - exact).abs() > UNRESOLVED_ENERGY * exact.abs()) | (
        (energy == 0) & (q > 0))
    if bool(moved.any()):
        warnings.warn(f"the Hermite series of this activation is not resolved by {largest} "
                      f"nodes at variance q = {float(q[moved][0]):.4g} (E[f^2], f = phi or "
                      f"phi', is more than {UNRESOLVED_ENERGY:g} off, or 0 on every node): the "
                      "kernel may be inaccurate; "
                      "pass a larger degree (at most 2048) or a smoother activation",
                      UserWarning, stacklevel=5)
    return bool(moved.any())


class _Cache:
    """The most recently used coefficient tensors, up to CACHE_BYTES in all."""

    def __init__(self):
        self.entries: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self.size = 0

    def get(self, key: tuple) -> torch.Tensor | None:
        found = self.entries.get(key)
        if found is not None:
            self.entries.move_to_end(key)
        return found

    def put(self, key: tuple, value: torch.Tensor) -> None:
        self.entries[key] = value
        self.size += value.numel() * value.element_size()
        while self.size > CACHE_BYTES and len(self.entries) > 1:
            _, dropped = self.entries.popitem(last=False)
            self.size -= dropped.numel() * dropped.element_size()


_cache = _Cache()


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
