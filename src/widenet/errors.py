"""The error type of widenet: raised for user mistakes, with a message that says how to fix them."""

from __future__ import annotations

from collections.abc import Mapping

ARGUMENT = "{argument}"
"""Where a message names the argument it is about (see :class:`WidenetError`)."""


class WidenetError(ValueError):
    """A problem with what the user passed in (a bad shape, name, size or value).

    The message names the offending argument and says what would be accepted instead.
    Subclasses ``ValueError`` so that generic callers can still catch it.

    ``argument``, when given, is the Python name of the argument the message is about, and the
    message writes :data:`ARGUMENT` wherever it names it: ``WidenetError("leave {argument}
    unset", argument="dim")`` reads "leave dim unset". A caller whose users know the argument
    by another name (the CLI's ``--dim``) says it in its own words with :meth:`naming`.
    """

    def __init__(self, message: str, *, argument: str | None = None) -> None:
        self.template = message
        self.argument = argument
        super().__init__(message if argument is None else message.replace(ARGUMENT, argument))

    def naming(self, names: Mapping[str, str]) -> WidenetError:
        """This error with its argument called ``names[argument]`` (``--dim`` for ``dim``);
        the error itself when its argument is not in ``names``."""
        if self.argument is None or self.argument not in names:
            return self
        return WidenetError(self.template, argument=names[self.argument])

    def __reduce__(self) -> tuple[object, ...]:
        """Pickle the template and the argument (sweep workers send errors between processes)."""
        return _rebuild, (type(self), self.template, self.argument)


def _rebuild(kind: type[WidenetError], template: str, argument: str | None) -> WidenetError:
    return kind(template, argument=argument)
