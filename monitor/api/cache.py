"""A bounded, thread-safe cache of values made from an immutable key, least recently used first out.

The API keeps two: decoded raw chunks (monitor/api/stores/sqlite_tiers.py) and the written
JSON of rows that cannot change (monitor/api/views.py). Both are keyed by the stored bytes the
value is made from, so an entry is never stale and needs no invalidation.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class BoundedCache(Generic[V]):
    """Values by key, up to LIMIT in all as SIZE measures each value; safe across threads
    (a value is made outside the lock: two threads may make the same one, one is kept)."""

    def __init__(self, limit: int, size: Callable[[V], int]) -> None:
        self.limit = limit
        self._size = size
        self._entries: OrderedDict[Hashable, V] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], V]) -> V:
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return hit
        value = make()
        with self._lock:
            if key not in self._entries:
                self._entries[key] = value
                self._total += self._size(value)
            while self._total > self.limit and self._entries:
                _, old = self._entries.popitem(last=False)
                self._total -= self._size(old)
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._total = 0
