"""WidenetError: a one-line message, and the argument it is about in the caller's words."""

from __future__ import annotations

import pickle

from widenet.errors import ARGUMENT, WidenetError


def test_a_message_names_its_argument_in_python_or_in_the_callers_words() -> None:
    error = WidenetError(f"leave out {ARGUMENT}, got {ARGUMENT}=3", argument="dim")
    assert isinstance(error, ValueError)
    assert str(error) == "leave out dim, got dim=3"
    assert error.argument == "dim"
    renamed = error.naming({"dim": "--dim", "n": "--points"})
    assert str(renamed) == "leave out --dim, got --dim=3"
    assert renamed.argument == "--dim"
    assert error.naming({"n": "--points"}) is error


def test_a_plain_message_is_kept_as_it_is() -> None:
    error = WidenetError("a {brace} stays")
    assert str(error) == "a {brace} stays"
    assert error.argument is None
    assert error.naming({"dim": "--dim"}) is error


def test_the_argument_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(WidenetError(f"bad {ARGUMENT}", argument="dim")))
    assert type(error) is WidenetError
    assert str(error) == "bad dim"
    assert str(error.naming({"dim": "--dim"})) == "bad --dim"
