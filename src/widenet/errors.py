"""The error type of widenet: raised for user mistakes, with a message that says how to fix them."""

from __future__ import annotations


class WidenetError(ValueError):
    """A problem with what the user passed in (a bad shape, name, size or value).

    The message names the offending argument and says what would be accepted instead.
    Subclasses ``ValueError`` so that generic callers can still catch it.
    """
