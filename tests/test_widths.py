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
