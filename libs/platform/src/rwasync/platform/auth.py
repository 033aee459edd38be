"""Authentication for every HTTP service: credentials from the `Authorization` header (HTTP Basic
`key_id:secret` or `Bearer <token>`), verified by the service's own credential check, and
remembered for a few seconds so a request costs one hash and a dictionary look-up rather than a
database round trip (a revocation bites within that time).

The credentials themselves are never logged and never kept: the cache is keyed by their digest.
A client (by address) that fails authentication too often within a minute is refused with 429
before its credentials are even looked at, so guessing cannot be turned into a flood of look-ups —
except for credentials this process verified within the last KNOWN_GOOD_SECONDS: a good caller
behind the same address as a guesser (one NAT, one proxy) keeps working, and a guesser cannot
present such a credential without knowing it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import math
import time
from collections.abc import Callable, Collection
from typing import Final, Generic, Literal, Protocol, TypeVar

from aiohttp import hdrs, web
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from rwasync.platform.cache import TTLCache
from rwasync.platform.clients import ClientAddresses
from rwasync.platform.http import Problem, too_many_requests, unauthorized

Scheme = Literal["basic", "bearer"]
BASIC_OR_BEARER: Final[frozenset[Scheme]] = frozenset({"basic", "bearer"})
BEARER_ONLY: Final[frozenset[Scheme]] = frozenset({"bearer"})
Identity = TypeVar("Identity")
Identity_co = TypeVar("Identity_co", covariant=True)

# A credential look-up that takes longer than this answers 503 (via the problem middleware's
# mapping of timeouts) rather than holding the caller.
LOOKUP_TIMEOUT: Final = 5.0
# Longer than any key id rwasync issues: not worth a look-up.
MAX_KEY_ID_LENGTH: Final = 128
# Failed authentications a client may make within a minute before it is refused with 429.
DEFAULT_FAILURES_PER_MINUTE: Final = 20
# How long a verified credential still passes an address over its failure limit (it is looked
# up again as usual, so a revocation bites as before).
KNOWN_GOOD_SECONDS: Final = 900.0


def single_header(request: web.Request, name: str) -> str | None:
    """The request's one `name` header, or None; two are a 400: which one counts would depend
    on who reads it (a proxy, this service), as with two Content-Lengths."""
    presented = request.headers.getall(name, [])
    if len(presented) > 1:
        raise Problem(
            400,
            "Bad Request",
            f"the request carries more than one {name} header",
            kind="malformed-request",
        )
    return presented[0] if presented else None


def authorization_header(request: web.Request) -> str | None:
    """The request's one `Authorization` header, or None (two are a 400)."""
    return single_header(request, hdrs.AUTHORIZATION)


class FailedAuthentications:
    """Counts each client's failed authentications in a moving one-minute window (in this
    process) and refuses a client over the limit with 429 and `Retry-After`."""

    def __init__(
        self, per_minute: int = DEFAULT_FAILURES_PER_MINUTE, clients: ClientAddresses | None = None
    ) -> None:
        self._limit = RateLimitItemPerMinute(per_minute)
        self._window = MovingWindowRateLimiter(MemoryStorage())
        self._clients = clients or ClientAddresses()

    def client(self, request: web.Request) -> str:
        """Whom a request's failures count against (`ClientAddresses`)."""
        return self._clients.client(request)

    def check(self, client: str) -> None:
        if self._window.test(self._limit, client):
            return
        reset_at = self._window.get_window_stats(self._limit, client).reset_time
        retry_after = max(1, math.ceil(reset_at - time.time()))
        raise too_many_requests(
            "too many failed authentications from this client; wait before trying again",
            retry_after=retry_after,
        )

    def record(self, client: str) -> None:
        self._window.hit(self._limit, client)


def _digest(authorization: str | None) -> bytes:
    """The key credentials are remembered by (never the credentials themselves)."""
    scheme, _, presented = (authorization or "").strip().partition(" ")
    # A header's bytes that are not UTF-8 arrive as surrogate escapes: hashed as they came.
    text = f"{scheme.lower()} {presented.strip()}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


class CredentialCheck(Protocol[Identity_co]):
    """Verifies presented credentials against the store; None when they do not match."""

    async def basic(self, key_id: str, secret: str) -> Identity_co | None: ...

    async def bearer(self, token: str) -> Identity_co | None: ...


class Authenticator(Generic[Identity]):
    """Turns an `Authorization` header into an identity, or raises a 401 Problem."""

    def __init__(
        self,
        check: CredentialCheck[Identity],
        *,
        cache_seconds: float,
        schemes: Collection[Scheme] = BASIC_OR_BEARER,
        failures: FailedAuthentications | None = None,
        misdirected: Callable[[str], str | None] | None = None,
    ) -> None:
        self._check = check
        # Why a Bearer token that matched nothing may be the wrong kind for this service (a
        # provider's token sent to an investor read), said instead of "invalid credentials".
        self._misdirected = misdirected or (lambda token: None)
        self._failures = failures or FailedAuthentications()
        self._schemes = frozenset(schemes)
        self._verified: TTLCache[bytes, Identity] = TTLCache(cache_seconds)
        self._known_good: TTLCache[bytes, bool] = TTLCache(KNOWN_GOOD_SECONDS)
        names = {"basic": 'Basic realm="rwasync"', "bearer": "Bearer"}
        self._challenge = ", ".join(names[s] for s in ("basic", "bearer") if s in self._schemes)
        self._hint = " or ".join(
            {"basic": "HTTP Basic key_id:secret", "bearer": "a Bearer token"}[s]
            for s in ("basic", "bearer")
            if s in self._schemes
        )

    def refused(self, detail: str) -> Problem:
        return unauthorized(detail, scheme=self._challenge)

    async def authenticate_request(
        self, request: web.Request, authorization: str | None = None
    ) -> Identity:
        """The identity of a request's credentials (its `Authorization` header, unless the
        caller found them elsewhere, e.g. a stream's `?access_token=`); 429 for a client over
        its failure limit."""
        client = self._failures.client(request)
        if authorization is None:
            authorization = authorization_header(request)
        if not self._known_good.get(_digest(authorization)):
            self._failures.check(client)
        try:
            return await self.authenticate(authorization)
        except Problem as refused:
            if refused.status == 401:
                self._failures.record(client)
            raise

    async def authenticate(self, authorization: str | None) -> Identity:
        """The identity of an `Authorization` header (no per-client limit: see
        `authenticate_request`)."""
        if not authorization:
            raise self.refused(f"credentials are required: {self._hint}")
        scheme, _, presented = authorization.strip().partition(" ")
        scheme, presented = scheme.lower(), presented.strip()
        if scheme not in self._schemes or not presented:
            raise self.refused(f"use {self._hint}")
        if not presented.isascii():  # every credential rwasync issues, and Basic's base64, is ASCII
            raise self.refused("invalid credentials")
        cache_key = _digest(authorization)
        identity = self._verified.get(cache_key)
        if identity is None:
            async with asyncio.timeout(LOOKUP_TIMEOUT):
                if scheme == "basic":
                    identity = await self._verify_basic(presented)
                else:
                    identity = await self._check.bearer(presented)
            if identity is None:
                # Revoked: it no longer passes an address over its limit either.
                self._known_good.discard(cache_key)
                hint = self._misdirected(presented) if scheme == "bearer" else None
                raise self.refused(hint or "invalid credentials")
            self._verified.put(cache_key, identity)
            self._known_good.put(cache_key, True)
        return identity

    async def _verify_basic(self, presented: str) -> Identity | None:
        try:
            decoded = base64.b64decode(presented, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise self.refused("malformed Basic credentials") from None
        key_id, colon, secret = decoded.partition(":")
        if not colon or not key_id or not secret:
            raise self.refused("Basic credentials must be key_id:secret")
        if len(key_id) > MAX_KEY_ID_LENGTH or not key_id.isprintable():
            # Not a key id rwasync issues (and text Postgres would refuse, e.g. with NUL).
            return None
        return await self._check.basic(key_id, secret)
