"""A small in-process TTL cache, so that authenticating a request costs microseconds rather than
a database round trip (revocations take effect within the TTL)."""

from __future__ import annotations

import time
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires < time.monotonic():
            del self._entries[key]
            return None
        return value

    def put(self, key: K, value: V) -> None:
        if len(self._entries) >= self._max:
            # Drop the oldest insertions (dicts keep insertion order): bounded memory under
            # a flood of distinct credentials.
            for stale in list(self._entries)[: self._max // 10 or 1]:
                del self._entries[stale]
        self._entries[key] = (time.monotonic() + self._ttl, value)
