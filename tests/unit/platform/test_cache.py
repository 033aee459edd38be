"""The authentication cache: entries expire, memory stays bounded, TTL 0 disables it."""

from __future__ import annotations

import time

import pytest

from rwasync.platform.cache import TTLCache

pytestmark = pytest.mark.unit


def test_entries_expire() -> None:
    cache: TTLCache[str, int] = TTLCache(0.05)
    cache.put("a", 1)
    assert cache.get("a") == 1
    time.sleep(0.06)
    assert cache.get("a") is None


def test_oldest_written_go_first_when_full() -> None:
    cache: TTLCache[int, int] = TTLCache(60, max_entries=3)
    for key in range(5):
        cache.put(key, key)
    assert [cache.get(k) for k in range(5)] == [None, None, 2, 3, 4]


def test_zero_ttl_disables() -> None:
    cache: TTLCache[str, int] = TTLCache(0)
    cache.put("a", 1)
    assert cache.get("a") is None
