"""Width patterns."""

import pytest

from widenet import WidenetError, widths


def test_constant_and_polynomial() -> None:
    assert widths.constant(64, 3) == [64, 64, 64]
    assert widths.polynomial(8, 4) == [8, 32, 72, 128]
    assert widths.polynomial(8, 3, power=1) == [8, 16, 24]
    assert widths.constant(5, 0) == []


@pytest.mark.parametrize("call", [lambda: widths.constant(0, 2), lambda: widths.constant(-3, 2),
                                  lambda: widths.polynomial(4, -1), lambda: widths.constant(2.5, 2),
                                  lambda: widths.polynomial(4, 2, power=-1)])
def test_bad_sizes(call) -> None:
    with pytest.raises(WidenetError, match="must be a"):
        call()


@pytest.mark.parametrize("call", [lambda: widths.polynomial(1, 3, power=10**7),
                                  lambda: widths.polynomial(2**62, 2, power=1),
                                  lambda: widths.polynomial(2**40, 2**12),
                                  lambda: widths.constant(2**63, 1)])
def test_widths_beyond_any_tensor_dimension_are_refused_at_once(call) -> None:
    """A width above 2^63 - 1 is no tensor dimension. polynomial(1, 3, power=10**7) computed
    3^(10^7) (4 s; power=10**9 did not finish) before any MLP could refuse it."""
    with pytest.raises(WidenetError, match="2\\^63 - 1"):
        call()


def test_the_largest_widths_are_accepted() -> None:
    assert widths.constant(2**63 - 1, 2) == [2**63 - 1] * 2
    assert widths.polynomial(2**62, 1, power=10**9) == [2**62]
    assert widths.polynomial(2**61, 2, power=1) == [2**61, 2**62]


def test_a_depth_whose_list_does_not_fit_is_refused_before_allocating() -> None:
    """A list of 10^14 widths (800 TB) raised MemoryError from inside the list (and
    polynomial's, built one width at a time, filled the memory first)."""
    for call in (lambda: widths.constant(1, 10**14), lambda: widths.polynomial(1, 10**14, 0)):
        with pytest.raises(WidenetError, match="a list of 100,000,000,000,000 widths needs"):
            call()
