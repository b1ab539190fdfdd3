"""Checks: a theoretical prediction set beside a measurement, with a tolerance and a verdict.

A check accepts the measured value when it lies in the interval ``[low, high]`` that the theory
allows. Measurements carry a standard error (seeds, fits); the verdict is

- ``inconclusive`` when the measurement or its standard error is not a finite number (NaN
  stderr: the noise is unknown, e.g. one replicate, or a fit bounded by the edge of a grid),
  whatever the interval says, or when no interval could be set (``low`` and ``high`` NaN);
- ``pass`` when ``low <= measured <= high``;
- ``fail`` when the measurement is outside the interval by more than ``2 * stderr``, that is
  when even the noise of the measurement cannot bring it back in;
- ``inconclusive`` otherwise (outside, but within two standard errors of the interval).

A **directional** check (:func:`check_direction`) claims a sign: the effect lies above (or
below) a threshold, often 0. Lying on the right side is not enough when the side could be
noise, so with the signed distance ``d = measured - threshold`` (``threshold - measured`` for
``below``) the verdict is

- ``inconclusive`` when the measurement or its standard error is not a finite number;
- ``pass`` when ``d >= 2 * stderr``: the effect is significant, at least two standard errors on
  the claimed side;
- ``fail`` when ``d < -2 * stderr``: significantly on the other side;
- ``inconclusive`` otherwise (within two standard errors of the threshold, either side).

With an exact measurement (``stderr = 0``) this is ``pass`` on the claimed side or at the
threshold, ``fail`` beyond it; a ``strict`` claim (``measured > threshold``) fails at the
threshold itself, and never passes at ``d = 0``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

from widenet.errors import WidenetError

Verdict = Literal["pass", "fail", "inconclusive"]
VERDICTS: tuple[Verdict, ...] = ("pass", "fail", "inconclusive")
Direction = Literal["above", "below"]

SIGNIFICANCE = 2.0
"""Standard errors a measurement must lie beyond a threshold to decide a directional check,
and beyond an interval to fail an interval check."""


@dataclass(frozen=True)
class Check:
    """One prediction of the theory against one measurement.

    ``claim`` is the prediction in words (``"error ~ m^-1/2: fitted slope = -0.5"``);
    ``predicted`` the theory's value, ``[low, high]`` the accepted interval around it,
    ``measured`` and ``stderr`` the measurement and its standard error (0 when exact).
    """

    name: str
    claim: str
    predicted: float
    measured: float
    stderr: float
    low: float
    high: float
    verdict: Verdict
    note: str = ""

    def as_row(self) -> dict[str, object]:
        """The check as a flat record (for tables and the run store)."""
        return asdict(self)

    @property
    def tolerance(self) -> str:
        """The accepted interval written for people: ``"[-0.65, -0.35]"`` or ``"<= 0"``."""
        return interval_text(self.low, self.high)


def interval_text(low: float, high: float) -> str:
    """The interval ``[low, high]`` written for people: ``"[-0.65, -0.35]"``, ``"<= 0"``,
    ``">= 1"`` or ``"any"`` (an infinite end is left out), numbers to 4 significant digits."""
    if math.isnan(low) and math.isnan(high):
        return "unknown"
    if math.isinf(low) and math.isinf(high):
        return "any"
    if math.isinf(low):
        return f"<= {high:.4g}"
    if math.isinf(high):
        return f">= {low:.4g}"
    return f"[{low:.4g}, {high:.4g}]"


def verdict_of(measured: float, low: float, high: float, stderr: float = 0.0) -> Verdict:
    """The verdict of ``measured ± stderr`` against the interval ``[low, high]`` (module doc)."""
    if not (math.isfinite(measured) and math.isfinite(stderr)) or math.isnan(low):
        return "inconclusive"
    if low <= measured <= high:
        return "pass"
    distance = low - measured if measured < low else measured - high
    return "fail" if distance > SIGNIFICANCE * stderr else "inconclusive"


def directional_verdict(measured: float, threshold: float, direction: Direction,
                        stderr: float = 0.0, strict: bool = False) -> Verdict:
    """The verdict of the claim ``measured > threshold`` (``direction="above"``) or
    ``measured < threshold`` (``"below"``) for ``measured ± stderr``: pass when the signed
    distance ``d`` to the threshold is ``>= 2 * stderr``, fail when ``d < -2 * stderr``,
    inconclusive otherwise or when a number is not finite (module doc). ``strict``: the claim
    excludes the threshold, so ``d = 0`` never passes (and fails when exact)."""
    if direction not in ("above", "below"):
        raise WidenetError(f"direction must be 'above' or 'below', got {direction!r}")
    if not (math.isfinite(measured) and math.isfinite(stderr) and math.isfinite(threshold)):
        return "inconclusive"
    distance = measured - threshold if direction == "above" else threshold - measured
    if distance >= SIGNIFICANCE * stderr and not (strict and distance == 0):
        return "pass"
    if distance < -SIGNIFICANCE * stderr or (strict and distance == 0 and stderr == 0):
        return "fail"
    return "inconclusive"


def check_interval(name: str, claim: str, *, measured: float, low: float = -math.inf,
                   high: float = math.inf, predicted: float | None = None,
                   stderr: float = 0.0, note: str = "") -> Check:
    """A check that ``measured`` lies in ``[low, high]``.

    ``predicted`` defaults to the midpoint of a finite interval, else to its finite end. Both
    ends NaN means no interval could be set: the check is inconclusive.
    """
    low, high, stderr = float(low), float(high), float(stderr)
    unknown = math.isnan(low) and math.isnan(high)
    if not unknown and (math.isnan(low) or math.isnan(high) or low > high):
        raise WidenetError(f"check {name!r}: the interval [{low}, {high}] is empty")
    if stderr < 0:  # nan is allowed: an unknown error makes the check inconclusive
        raise WidenetError(f"check {name!r}: stderr must be >= 0, got {stderr}")
    if predicted is None:
        finite = [bound for bound in (low, high) if math.isfinite(bound)]
        predicted = sum(finite) / len(finite) if finite else 0.0
    measured = float(measured)
    return Check(name=name, claim=claim, predicted=float(predicted), measured=measured,
                 stderr=stderr, low=low, high=high,
                 verdict=verdict_of(measured, low, high, stderr), note=note)


def check_direction(name: str, claim: str, *, measured: float, direction: Direction,
                    threshold: float = 0.0, stderr: float = 0.0, strict: bool = False,
                    predicted: float | None = None, note: str = "") -> Check:
    """A directional check: ``measured`` lies above (``direction="above"``) or below
    (``"below"``) ``threshold``, decided by :func:`directional_verdict` (two standard errors
    needed either way; ``strict`` when the claim excludes the threshold). The interval
    recorded is ``[threshold, inf)`` or ``(-inf, threshold]``; ``predicted`` defaults to the
    threshold; the note gains the distance in standard errors."""
    threshold, stderr, measured = float(threshold), float(stderr), float(measured)
    if math.isnan(threshold):
        raise WidenetError(f"check {name!r}: the threshold is NaN; give a number")
    if stderr < 0:  # nan is allowed: an unknown error makes the check inconclusive
        raise WidenetError(f"check {name!r}: stderr must be >= 0, got {stderr}")
    verdict = directional_verdict(measured, threshold, direction, stderr, strict)
    low, high = (threshold, math.inf) if direction == "above" else (-math.inf, threshold)
    if stderr > 0 and math.isfinite(measured) and math.isfinite(stderr):
        sign = 1.0 if direction == "above" else -1.0
        margin = f"{sign * (measured - threshold) / stderr:+.2f} se on the claimed side"
        note = f"{note}; {margin}" if note else margin
    return Check(name=name, claim=claim,
                 predicted=threshold if predicted is None else float(predicted),
                 measured=measured, stderr=stderr, low=low, high=high, verdict=verdict,
                 note=note)


def check_close(name: str, claim: str, *, predicted: float, measured: float, tolerance: float,
                stderr: float = 0.0, note: str = "") -> Check:
    """A check that ``|measured - predicted| <= tolerance``; a NaN tolerance (none could be
    set) makes it inconclusive."""
    if not (tolerance >= 0 or math.isnan(tolerance)):
        raise WidenetError(f"check {name!r}: tolerance must be >= 0, got {tolerance}")
    return check_interval(name, claim, measured=measured, low=predicted - tolerance,
                          high=predicted + tolerance, predicted=predicted, stderr=stderr,
                          note=note)
