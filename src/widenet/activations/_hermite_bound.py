"""The error of a truncated Mehler series where the largest Gauss-Hermite rule did not converge.

For a variance q whose M-node rule gave the coefficients a_k (:mod:`._hermite`), with
t_k = E[f(sqrt(q) z) h_k(z)] the true coefficients (k < M from Gauss-Legendre panels,
:class:`_Panels`, independent of the rule), d_k = t_k - a_k, T = E[f^2] - sum_{k<M} t_k^2
the energy beyond the rule, and b, s, e, U the same for the second variance, the true dual is
sum_k t_k s_k rho^k, so for every rho in [-1, 1]

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

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from widenet.activations._cache import Cache
from widenet.activations._gaussian import common_panels

GAMMAS = (0.5, 1.0, 1.5, 2.0, 3.0)  # exponents of the weights (1 + k)^gamma of the error bound
UNRESOLVED_ERROR = 1e-4  # error bound, relative to sqrt(E[f(u)^2] E[f(v)^2]), that warns
TERMS = 2**16  # variances whose Defects' terms are kept (about 200 bytes each)
BAND = 4.0  # sqrt(q) ratio of the variances that share panels (see _Panels)
BLOCK = 64  # values of k whose h_k(z_i) _Panels.coefficients keeps at once
CHUNK = 256  # variances given to one _Panels (their f on the nodes: about 30 MiB)


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


def weighted_norms(coefficients: torch.Tensor, sign: float) -> torch.Tensor:
    """(G, ...): ||x||_w over the last axis of ``coefficients`` with w_k = (1 + k)^(sign *
    gamma), for each gamma in GAMMAS."""
    k = torch.arange(coefficients.shape[-1], dtype=torch.float64, device=coefficients.device)
    squares = coefficients * coefficients
    return torch.stack([torch.sqrt((squares * (1.0 + k) ** (sign * gamma)).sum(-1))
                        for gamma in GAMMAS])


def true_defects(f: Callable[[torch.Tensor], torch.Tensor], q: torch.Tensor, found: torch.Tensor,
             unresolved: torch.Tensor) -> Defects:
    """The :class:`Defects` of the (n, M) coefficients ``found`` of the n distinct variances q:
    at the ``unresolved`` ones from their true coefficients and E[f^2] (:class:`_Panels`, CHUNK
    variances of neighbouring q at once; each variance's terms are kept in ``_terms``, so that
    the blocks of pairs of one kernel, whose sets of variances overlap, compute each once), at
    the others with t = a."""
    rule = weighted_norms(found, 1.0)
    key = (f, found.shape[1], q.device)
    values = q[unresolved].tolist()
    missing = [i for i, v in enumerate(values) if _terms.get((*key, v)) is None]
    missing = unresolved[torch.tensor(missing, dtype=torch.long, device=q.device)]
    for chunk in missing[torch.argsort(q[missing])].split(CHUNK) if missing.numel() else ():
        panels = _Panels(f, q[chunk])
        true, moment = panels.coefficients(found.shape[1]), panels.energy()
        computed = torch.cat([weighted_norms(true, 1.0),
                              weighted_norms(true - found[chunk], -1.0),
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


class BoundedSeries(Protocol):
    """What the bound reads of a series (:class:`widenet.activations._hermite.Series`): its
    variances, its :class:`Defects` (None where every variance converged) and the terms of
    its bound either way."""

    q: torch.Tensor
    defects: Defects | None

    def bound_terms(self) -> Defects: ...


def error_bound(first: BoundedSeries, second: BoundedSeries) -> torch.Tensor | None:
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


def warn_unresolved(first: BoundedSeries, second: BoundedSeries, name: str, largest: int) -> None:
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



_terms = Cache(TERMS, lambda terms: 1)  # a variance's Defects terms, by f, rule, q
