"""The activation names read without torch agree with what get_activation resolves."""

from __future__ import annotations

import pytest

import widenet.activations as A
from widenet.activation_names import NAMES, parse_activation
from widenet.errors import WidenetError

SPECS = [*NAMES, "leaky_relu", "leaky_relu:0.2", "leaky_relu:-1", "leaky_relu:3"]


def test_the_names_are_those_of_the_named_activations() -> None:
    """Every plain name is an activation of widenet.activations and every activation defined
    there is named, so a config's name check and get_activation accept the same names."""
    defined = {value.name for value in vars(A).values() if isinstance(value, A.Activation)}
    assert set(NAMES) == defined
    for name in NAMES:
        assert A.get_activation(name).name == name


@pytest.mark.parametrize("spec", SPECS)
def test_the_family_coefficients_are_those_of_the_resolved_activation(spec: str) -> None:
    """A name has (a, b) exactly when get_activation gives a member of a s + b|s| (positively
    homogeneous, what implicit-bias asks), and the same (a, b)."""
    activation = A.get_activation(spec)
    coefficients = parse_activation(spec).coefficients
    assert (coefficients is not None) == isinstance(activation, A.AbsLinear)
    if coefficients is not None:
        assert coefficients == (activation.a, activation.b)


def test_leaky_relu_has_its_slope_below_zero() -> None:
    parsed = parse_activation("leaky_relu:0.2")
    assert (parsed.name, parsed.slope) == ("leaky_relu", 0.2)
    assert parse_activation("leaky_relu").slope == 0.01
    assert [parse_activation(f"leaky_relu:{text}").slope for text in (".5", "-1e-3", "+2")] == [
        0.5, -0.001, 2.0]
    a, b = parsed.coefficients or (0.0, 0.0)
    assert (a * 2.0 + b * 2.0, a * -2.0 + b * 2.0) == pytest.approx((2.0, -0.4))


@pytest.mark.parametrize(("spec", "message"), [
    ("relux", "unknown activation 'relux' (did you mean 'relu'?); the names are abs, erf, gelu, "
              "identity, leaky_relu:SLOPE, relu, sin, softplus, tanh"),
    ("relu:2", "unknown activation 'relu:2'"),
    ("", "unknown activation ''"),
    ("leaky_relu:x", "bad leaky_relu slope in 'leaky_relu:x'"),
    ("leaky_relu:nan", "bad leaky_relu slope"),
    ("leaky_relu:-inf", "bad leaky_relu slope"),
    ("relu:", "only leaky_relu takes an argument after ':'"),
    ("RELU", "(did you mean 'relu'?)"),
    (" Tanh ", "(did you mean 'tanh'?)"),
    ("leaky_relu:", "or leave out the colon for the slope 0.01"),
    ("leaky_relu:1e400", "bad leaky_relu slope"),
    ("leaky_relu:1e300", "bad leaky_relu slope in 'leaky_relu:1e300'; write a finite decimal "
                         "number of size at most 1e+150"),  # its a^2 + b^2 overflows
    ("leaky_relu:-2e150", "bad leaky_relu slope"),
    ("leaky_relu:1_0", "bad leaky_relu slope"),
    ("leaky_relu: 0.1", "bad leaky_relu slope"),
    ("leaky_relu:\u0661", "bad leaky_relu slope"),  # an Arabic-Indic digit one
])
def test_bad_names_are_refused_in_one_line(spec: str, message: str) -> None:
    """The same message from the name check and from get_activation."""
    with pytest.raises(WidenetError) as raised:
        parse_activation(spec)
    assert message in str(raised.value)
    with pytest.raises(WidenetError) as resolved:
        A.get_activation(spec)
    assert str(resolved.value) == str(raised.value)
