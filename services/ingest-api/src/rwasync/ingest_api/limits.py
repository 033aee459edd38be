"""Per-provider request rates: a token bucket per provider in each process, sized by the
provider's own setting (`rwasync provider rate`) or the service default; over it, 429 with the
seconds until a request would be admitted in `Retry-After`."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from rwasync.ingest_api import queries
from rwasync.platform.cache import TTLCache
from rwasync.platform.db import Database
from rwasync.platform.http import too_many_requests

# A rate set by the operator reaches a running service within this many seconds.
RATE_CACHE_SECONDS: Final = 30.0
LOOKUP_TIMEOUT: Final = 5.0
# The longest Retry-After a 429 for a provider's rate says (the CLI's least rate gives 1,000 s).
MAX_RETRY_AFTER: Final = 3600.0


@dataclass(frozen=True, slots=True)
class Rate:
    per_second: float
    burst: int


class TokenBucket:
    """`burst` tokens at most, refilled at `per_second`; a request takes one."""

    def __init__(self, rate: Rate, now: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._now = now
        self._tokens = float(rate.burst)
        self._updated = now()

    def take(self) -> float:
        """0 when a token was taken, else the seconds until one will be there."""
        now = self._now()
        self._tokens = min(
            self.rate.burst, self._tokens + (now - self._updated) * self.rate.per_second
        )
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate.per_second


class ProviderRates:
    """Admits or refuses each provider's requests by its bucket."""

    def __init__(self, db: Database, default: Rate) -> None:
        self._db = db
        self._default = default
        self._rates: TTLCache[str, Rate] = TTLCache(RATE_CACHE_SECONDS)
        self._buckets: dict[str, TokenBucket] = {}

    async def admit(self, provider_id: str) -> None:
        """Return if the provider is within its rate; raise a 429 Problem otherwise."""
        rate = self._rates.get(provider_id)
        if rate is None:
            rate = await self._configured(provider_id)
            self._rates.put(provider_id, rate)
        bucket = self._buckets.get(provider_id)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[provider_id] = TokenBucket(rate)
        wait = bucket.take()
        if wait > 0:
            raise too_many_requests(
                f"over this provider's rate of {rate.per_second:g} requests per second",
                # a rate stored before the CLI bounded it may be tiny: the wait, infinite
                retry_after=max(1, math.ceil(min(wait, MAX_RETRY_AFTER))),
            )

    async def _configured(self, provider_id: str) -> Rate:
        async with asyncio.timeout(LOOKUP_TIMEOUT):
            row = await self._db.fetchrow(queries.PROVIDER_RATE, provider_id)
        if row is None:
            return self._default
        return Rate(
            per_second=row["rate_per_second"] or self._default.per_second,
            burst=row["rate_burst"] or self._default.burst,
        )
