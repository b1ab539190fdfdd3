"""A cache of the most recently used values, bounded by a measure of their sizes."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable


class Cache:
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
