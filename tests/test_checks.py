"""Checks: verdicts of a measurement with its standard error against an interval."""

from __future__ import annotations

import math

import pytest

from widenet.checks import (
    check_close,
    check_direction,
    check_interval,
    directional_verdict,
    interval_text,
    verdict_of,
)
from widenet.errors import WidenetError

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(("measured", "stderr", "verdict"), [
    (0.5, 0.0, "pass"), (0.0, 0.0, "pass"), (1.0, 0.0, "pass"),  # inside, ends included
    (1.3, 0.1, "fail"), (-0.3, 0.1, "fail"),  # outside by 3 standard errors
    (1.15, 0.1, "inconclusive"), (-0.15, 0.1, "inconclusive"),  # within 2 of the interval
    (1.2, 0.1, "inconclusive"),  # exactly 2 standard errors out: not beyond them
    (0.5, NAN, "inconclusive"), (7.0, NAN, "inconclusive"),  # unknown noise, inside or out
    (NAN, 0.1, "inconclusive"), (INF, 0.0, "inconclusive"), (0.5, INF, "inconclusive")])
def test_verdicts(measured: float, stderr: float, verdict: str) -> None:
    assert verdict_of(measured, 0.0, 1.0, stderr) == verdict


def test_check_interval_and_check_close() -> None:
    check = check_interval("c", "claim", measured=2.0, low=1.0, stderr=0.5)
    assert (check.predicted, check.verdict, check.high) == (1.0, "pass", INF)
    assert check_interval("c", "x", measured=0.0, low=-1.0, high=3.0).predicted == 1.0
    close = check_close("c", "x", predicted=-0.5, measured=-0.41, tolerance=0.1, stderr=0.01)
    assert (close.low, close.high, close.verdict) == (-0.6, -0.4, "pass")
    assert check_close("c", "x", predicted=0.0, measured=0.5, tolerance=0.1,
                       stderr=0.1).verdict == "fail"
    for bad in [{"low": 2.0, "high": 1.0}, {"low": NAN}, {"low": 0.0, "high": NAN}]:
        with pytest.raises(WidenetError, match="is empty"):
            check_interval("c", "x", measured=1.0, **bad)
    with pytest.raises(WidenetError, match="stderr must be >= 0"):
        check_interval("c", "x", measured=1.0, stderr=-1.0)
    with pytest.raises(WidenetError, match="tolerance must be >= 0"):
        check_close("c", "x", predicted=0.0, measured=0.0, tolerance=-1.0)
    assert check_interval("c", "x", measured=5.0).verdict == "pass"  # any value is allowed
    unknown = check_close("c", "x", predicted=0.0, measured=0.0, tolerance=NAN, stderr=0.1)
    assert (unknown.verdict, unknown.stderr) == ("inconclusive", 0.1)
    assert interval_text(unknown.low, unknown.high) == "unknown"


def test_interval_text() -> None:
    assert interval_text(-0.65, -0.35) == "[-0.65, -0.35]"
    assert interval_text(-INF, 0.0) == "<= 0"
    assert interval_text(1.0, INF) == ">= 1"
    assert interval_text(-INF, INF) == "any"


@pytest.mark.parametrize(("measured", "stderr", "direction", "verdict"), [
    (0.0030, 0.0028, "above", "inconclusive"),  # info-nuisance's +0.0030 ± 0.0028: was a pass
    (0.0030, 0.0010, "above", "pass"), (0.0020, 0.0010, "above", "pass"),  # >= 2 se above
    (-0.0030, 0.0010, "above", "fail"), (-0.0019, 0.0010, "above", "inconclusive"),
    (-0.0030, 0.0028, "below", "inconclusive"), (-0.0030, 0.0010, "below", "pass"),
    (0.0030, 0.0010, "below", "fail"),
    (0.5, 0.0, "above", "pass"), (0.0, 0.0, "above", "pass"), (-0.5, 0.0, "above", "fail"),
    (0.5, NAN, "above", "inconclusive"), (NAN, 0.1, "below", "inconclusive"),
    (INF, 0.0, "above", "inconclusive")])
def test_directional_verdicts(measured: float, stderr: float, direction: str,
                              verdict: str) -> None:
    assert directional_verdict(measured, 0.0, direction, stderr) == verdict  # type: ignore[arg-type]


def test_directional_verdict_against_a_threshold() -> None:
    # "ratio > 1": 1.15 ± 0.1 lies on the right side, but only 1.5 se from the threshold
    assert verdict_of(1.15, 1.0, INF, 0.1) == "pass"  # the interval rule would accept it
    assert directional_verdict(1.15, 1.0, "above", 0.1) == "inconclusive"
    assert directional_verdict(1.25, 1.0, "above", 0.1) == "pass"
    assert directional_verdict(0.75, 1.0, "above", 0.1) == "fail"
    with pytest.raises(WidenetError, match="direction must be"):
        directional_verdict(1.0, 0.0, "up", 0.1)  # type: ignore[arg-type]


def test_check_direction() -> None:
    check = check_direction("c", "x > 0", measured=0.0030, stderr=0.0028, direction="above")
    assert (check.verdict, check.low, check.high, check.predicted) == ("inconclusive", 0.0,
                                                                        INF, 0.0)
    assert "+1.07 se" in check.note
    below = check_direction("c", "x < 1", measured=0.5, stderr=0.1, direction="below",
                            threshold=1.0, predicted=0.0, note="n = 3")
    assert (below.verdict, below.low, below.high, below.predicted) == ("pass", -INF, 1.0, 0.0)
    assert below.note == "n = 3; +5.00 se on the claimed side"
    assert check_direction("c", "x", measured=2.0, direction="above").note == ""  # exact
    with pytest.raises(WidenetError, match="stderr must be >= 0"):
        check_direction("c", "x", measured=1.0, stderr=-1.0, direction="above")
    with pytest.raises(WidenetError, match="threshold is NaN"):
        check_direction("c", "x", measured=1.0, threshold=NAN, direction="above")


def test_a_strict_directional_claim_excludes_the_threshold():
    assert directional_verdict(0.0, 0.0, "above", 0.0) == "pass"  # ">= 0": a count, exact
    assert directional_verdict(0.0, 0.0, "above", 0.0, strict=True) == "fail"  # "> 0"
    assert directional_verdict(0.0, 0.0, "above", 0.1, strict=True) == "inconclusive"
    assert directional_verdict(0.5, 0.0, "above", 0.0, strict=True) == "pass"
    check = check_direction("c", "x > 0", measured=0.0, direction="above", strict=True)
    assert check.verdict == "fail"
