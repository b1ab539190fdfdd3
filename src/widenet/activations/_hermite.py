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

Error bound where the largest rule did not converge. With t_k = E[f(sqrt(q) z) h_k(z)] the true
coefficients (k < M from Gauss-Legendre panels, :class:`_Panels`, independent of the rule),
d_k = t_k - a_k, T = E[f^2] - sum_{k<M} t_k^2 the energy beyond the rule, and b, s, e, U the
same for the second variance, the true dual is sum_k t_k s_k rho^k, so for every rho in [-1, 1]

    |E[f1(u) f2(v)] - sum_{k<M} a_k b_k rho^k|
        <= sum_{k<M} (|t_k| |e_k| + |d_k| |b_k|) + sqrt(T U)
        <= ||t||_w ||e||_{1/w} + ||d||_{1/w} ||b||_w + sqrt(T U)

(|t s - a b| <= |t| |s - b| + |t - a| |b|, then Cauchy-Schwarz with the weights
w_k = (1 + k)^gamma, ||x||_w^2 = sum_k w_k x_k^2; the tail by Cauchy-Schwarz). The norms are
kept per variance for each gamma in GAMMAS and the smallest bound is used: large gamma puts
the weight where the rule errs (high k, aliasing), which makes the bound tight to a factor of
about 2 (a step at 1024 nodes: bound 3e-2, error 1.1e-2); gamma = 0 would be the plain
||f - p|| ||f|| bound, 10 to 200 times looser.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import roots_hermitenorm

from widenet.activations._gaussian import common_panels

SMALLEST_RULE = 32
EPS = float(np.finfo(np.float64).eps)
RESOLVED = 1e-10  # upper-half amplitude (relative) below which a rule has converged
UNRESOLVED_ERROR = 1e-4  # error bound, relative to sqrt(E[f(u)^2] E[f(v)^2]), that warns
# A largest rule whose upper half and change from the next smaller rule are both below SCREEN
# of its norm is taken as resolved without computing its bound (0.2 to 0.7 ms per variance, see
# _Panels): measured bounds there are far smaller (tanh at q = 4: 2e-8 and 1e-14; a kink,
# relu's coefficients, which decay slowest: bound 0.8 times the upper half's amplitude).
SCREEN = 1e-6
GAMMAS = (0.5, 1.0, 1.5, 2.0, 3.0)  # exponents of the weights (1 + k)^gamma of the error bound
NOISE = 16.0 * EPS  # a coefficient below NOISE * sqrt(sum a_k^2) is round-off: set to 0
# The series is cut where the rest of a point's coefficients has amplitude TAIL * sqrt(sum a_k^2):
# by Cauchy-Schwarz the part dropped from a pair is at most TAIL sqrt(E[phi(u)^2] E[phi(v)^2]).
TAIL = 1e-13
CACHE_BYTES = 64 * 2**20
TERMS = 2**16  # variances whose Defects' terms are kept (about 200 bytes each)
BAND = 4.0  # sqrt(q) ratio of the variances that share panels (see _Panels)
BLOCK = 64  # values of k whose h_k(z_i) _Panels.coefficients keeps at once
CHUNK = 256  # variances given to one _Panels (their f on the nodes: about 30 MiB)
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
class Defects:
    """Per variance, what bounds the error of its Mehler series (module docstring): for each
    gamma in GAMMAS (first axis) ||t||_w (``true_norm``), ||a||_w (``rule_norm``) and
    ||t - a||_{1/w} (``defect``), and ``tail`` = T, ``energy`` = E[f(sqrt(q) z)^2]. At a
    converged variance t is taken as a (defect and tail 0): its rule agreed with the next
    smaller one to RESOLVED; likewise at one whose largest rule did so to SCREEN."""

    true_norm: torch.Tensor
    rule_norm: torch.Tensor
    defect: torch.Tensor
    tail: torch.Tensor
    energy: torch.Tensor

    def reshape(self, shape: tuple[int, ...]) -> Defects:
        return Defects(*(t.reshape(t.shape[:-1] + tuple(shape)) for t in
                         (self.true_norm, self.rule_norm, self.defect, self.tail, self.energy)))


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
        norm = _weighted_norms(self.coefficients.movedim(0, -1), 1.0)
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
    defects = None if unresolved.numel() == 0 else _defects(f, q, found, unresolved)
    used = (found != 0).any(0).nonzero()
    found = found[inverse, :int(used.max()) + 1 if used.numel() else 1]
    if defects is not None:
        defects = Defects(*(t[..., inverse] for t in (
            defects.true_norm, defects.rule_norm, defects.defect, defects.tail, defects.energy)))
    return found, defects


def _weighted_norms(coefficients: torch.Tensor, sign: float) -> torch.Tensor:
    """(G, ...): ||x||_w over the last axis of ``coefficients`` with w_k = (1 + k)^(sign *
    gamma), for each gamma in GAMMAS."""
    k = torch.arange(coefficients.shape[-1], dtype=torch.float64, device=coefficients.device)
    squares = coefficients * coefficients
    return torch.stack([torch.sqrt((squares * (1.0 + k) ** (sign * gamma)).sum(-1))
                        for gamma in GAMMAS])


def _defects(f: Callable[[torch.Tensor], torch.Tensor], q: torch.Tensor, found: torch.Tensor,
             unresolved: torch.Tensor) -> Defects:
    """The :class:`Defects` of the (n, M) coefficients ``found`` of the n distinct variances q:
    at the ``unresolved`` ones from their true coefficients and E[f^2] (:class:`_Panels`, CHUNK
    variances of neighbouring q at once; each variance's terms are kept in ``_terms``, so that
    the blocks of pairs of one kernel, whose sets of variances overlap, compute each once), at
    the others with t = a."""
    rule = _weighted_norms(found, 1.0)
    key = (f, found.shape[1], q.device)
    values = q[unresolved].tolist()
    missing = [i for i, v in enumerate(values) if _terms.get((*key, v)) is None]
    missing = unresolved[torch.tensor(missing, dtype=torch.long, device=q.device)]
    for chunk in missing[torch.argsort(q[missing])].split(CHUNK) if missing.numel() else ():
        panels = _Panels(f, q[chunk])
        true, moment = panels.coefficients(found.shape[1]), panels.energy()
        computed = torch.cat([_weighted_norms(true, 1.0),
                              _weighted_norms(true - found[chunk], -1.0),
                              (moment - (true * true).sum(1)).clamp_min(0.0)[None],
                              moment[None]])
        for value, terms in zip(q[chunk].tolist(), computed.T, strict=True):
            _terms.put((*key, value), terms)
    true_norm, defect = rule.clone(), torch.zeros_like(rule)
    tail, energy = torch.zeros_like(q), (found * found).sum(1)
    if values:
        terms = torch.stack([_terms.get((*key, v)) for v in values], 1)
        count = len(GAMMAS)
        true_norm[:, unresolved], defect[:, unresolved] = terms[:count], terms[count:2 * count]
        tail[unresolved], energy[unresolved] = terms[-2], terms[-1]
    return Defects(true_norm, rule, defect, tail, energy)


@dataclass(frozen=True)
class _Band:
    """Variances sharing their panels: their ``rows`` among the n given to :class:`_Panels`,
    the nodes z_i > 0 and the roots of the weights sqrt(w_i) of the panels' positive half, and
    sqrt(w_i) (f(s_i) + f(-s_i)) (``even``) and sqrt(w_i) (f(s_i) - f(-s_i)) (``odd``) with
    s_i = sqrt(q) z_i, (len(rows), len(z)) each."""

    rows: torch.Tensor
    z: torch.Tensor
    root: torch.Tensor
    even: torch.Tensor
    odd: torch.Tensor


class _Panels:
    """E[f(sqrt(q) z)^2] and the true coefficients t_k = E[f(sqrt(q) z) h_k(z)] of n variances
    q >= 0 at once, on panels independent of the Gauss-Hermite rules.

    The variances are grouped in bands, sqrt(q) within a factor BAND of each other; each band
    shares the rule of :func:`common_panels`, which resolves each of its variances as finely as
    :func:`gaussian_panels` (q) alone (h_k oscillates with period about 2 pi / sqrt(2k) >= 0.1
    in z and a panel is at most 1/4 wide in z: tripling the panels moves t by 2e-16 at 2048; a
    factor r in sqrt(q) adds about 5 ln(r) 10^3 nodes to 6 10^3), less its nodes of weight below
    1e-40 (|z| > 13), which add less than 1e-20 sup|f| to any t_k. The rule is symmetric about
    0 and h_k(-z) = (-1)^k h_k(z), so over its positive half, with s_i = sqrt(q) z_i,

        t_k = sum_i w_i h_k(z_i) (f(s_i) + (-1)^k f(-s_i)),
        E[f^2] = sum_i w_i (f(s_i)^2 + f(-s_i)^2):

    the even k from :attr:`_Band.even`, the odd k from :attr:`_Band.odd` (one of which is 0 for
    an odd or even f)."""

    def __init__(self, f: Callable[[torch.Tensor], torch.Tensor], q: torch.Tensor):
        self.count = q.shape[0]
        order = torch.argsort(q).tolist()
        values = q.tolist()
        self.bands: list[_Band] = []
        while order:
            top = BAND**2 * max(values[order[0]], 1.0)
            size = next((i for i, index in enumerate(order) if values[index] > top), len(order))
            rows, order = order[:size], order[size:]
            z, weights = common_panels([values[i] for i in rows])
            keep = weights > 1e-40
            z, root = z[keep].to(q.device), torch.sqrt(weights[keep]).to(q.device)
            rows = torch.tensor(rows, device=q.device)
            s = torch.sqrt(q[rows])[:, None] * z
            plus, minus = (root * f(t).to(torch.float64) for t in (s, -s))
            self.bands.append(_Band(rows, z, root, plus + minus, plus - minus))

    def energy(self) -> torch.Tensor:
        """(n,): E[f(sqrt(q) z)^2]."""
        out = torch.empty(self.count, dtype=torch.float64, device=self.bands[0].z.device)
        for band in self.bands:  # (f+ + f-)^2 + (f+ - f-)^2 = 2 (f+^2 + f-^2)
            out[band.rows] = 0.5 * ((band.even * band.even).sum(1) + (band.odd * band.odd).sum(1))
        return out

    def coefficients(self, count: int) -> torch.Tensor:
        """(n, count): t_k for k < count. sqrt(w_i) h_k(z_i), bounded where h_k alone would
        overflow, comes from the recurrence h_{k+1} = (z h_k - sqrt(k) h_{k-1}) / sqrt(k + 1),
        run once on the nodes of all the bands, BLOCK values of k at a time; each block's even
        and odd k are multiplied into each band's even and odd part (two matrix products per
        band, whose variances share their nodes)."""
        z, root = (torch.cat([getattr(band, name) for band in self.bands])
                   for name in ("z", "root"))
        out = torch.zeros(self.count, count, dtype=torch.float64, device=z.device)
        parts, start = [], 0
        for band in self.bands:
            nodes = slice(start, start + band.z.shape[0])
            parts += [(band.rows, nodes, parity, values)
                      for parity, values in enumerate((band.even, band.odd))
                      if bool((values != 0).any())]  # an odd f leaves the even k at 0
            start = nodes.stop
        block = torch.empty(BLOCK, z.shape[0], dtype=torch.float64, device=z.device)
        previous, current = torch.zeros_like(root), root
        for k in range(count):
            row = block[k % BLOCK]
            if k == 0:
                row.copy_(current)
            else:
                torch.mul(z, current, out=row).sub_(previous, alpha=math.sqrt(k - 1))
                row.mul_(1.0 / math.sqrt(k))
            previous, current = current, row
            if k % BLOCK == BLOCK - 1 or k == count - 1:
                first = k - k % BLOCK
                for rows, nodes, parity, values in parts:
                    out[rows, first + parity:k + 1:2] = (
                        values @ block[parity:k + 1 - first:2, nodes].T)
        return out


def error_bound(first: Series, second: Series) -> torch.Tensor | None:
    """None where both series converged at every variance; else, broadcasting their variances
    against each other, the bound of the module docstring on the error of
    sum_k a_k(q1) a_k(q2) rho^k at any rho in [-1, 1], relative to
    sqrt(E[f(u)^2] E[f(v)^2]) (0 where both the bound and that scale are 0)."""
    if first.defects is None and second.defects is None:
        return None
    one, two = first.bound_terms(), second.bound_terms()
    bound = (one.true_norm * two.defect + one.defect * two.rule_norm).amin(0)
    bound = bound + torch.sqrt(one.tail * two.tail)
    scale = torch.sqrt(one.energy * two.energy)
    return torch.where(bound == 0, 0.0, bound / scale)


def warn_unresolved(first: Series, second: Series, name: str, largest: int) -> None:
    """Warn when :func:`error_bound` exceeds UNRESOLVED_ERROR at some pair of variances,
    naming the dual (``name``: E[f(u) f(v)] for f = name) and the worst pair's bound."""
    bound = error_bound(first, second)
    if bound is None:
        return
    bound = torch.nan_to_num(bound, nan=0.0)  # a NaN variance gives NaN duals, no warning
    worst = int(bound.argmax())
    if float(bound.reshape(-1)[worst]) <= UNRESOLVED_ERROR:
        return
    shape = bound.shape
    q1 = float(first.q.expand(shape).reshape(-1)[worst])
    q2 = float(second.q.expand(shape).reshape(-1)[worst])
    warnings.warn(f"the Hermite series of this activation is not resolved by {largest} nodes "
                  f"at variances q = {q1:.4g}, {q2:.4g}: E[f(u) f(v)], f = {name}, may be off "
                  f"by up to {float(bound.reshape(-1)[worst]):.3g} of "
                  f"sqrt(E[f(u)^2] E[f(v)^2]) (a bound at every correlation, above "
                  f"{UNRESOLVED_ERROR:g}); pass a larger degree (at most 2048) or a smoother "
                  "activation", UserWarning, stacklevel=4)  # the caller of duals or a moment


class _Cache:
    """The most recently used values, up to ``limit`` in all of their ``measure`` (an
    unresolved :class:`Series` too: its defects are kept, so that every call using it warns
    again)."""

    def __init__(self, limit: int, measure: Callable[[object], int]):
        self.entries: OrderedDict[tuple, object] = OrderedDict()
        self.limit, self.measure, self.size = limit, measure, 0

    def get(self, key: tuple) -> object | None:
        found = self.entries.get(key)
        if found is not None:
            self.entries.move_to_end(key)
        return found

    def put(self, key: tuple, value: object) -> None:
        self.entries[key] = value
        self.size += self.measure(value)
        while self.size > self.limit and len(self.entries) > 1:
            _, dropped = self.entries.popitem(last=False)
            self.size -= self.measure(dropped)


def _bytes(series: Series) -> int:
    tensors = [series.coefficients, series.q]
    if series.defects is not None:
        d = series.defects
        tensors += [d.true_norm, d.rule_norm, d.defect, d.tail, d.energy]
    return sum(t.numel() * t.element_size() for t in tensors)


_cache = _Cache(CACHE_BYTES, _bytes)  # Series, by f, rule size and q's bytes
_terms = _Cache(TERMS, lambda terms: 1)  # a variance's Defects terms, by f, rule, q


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
