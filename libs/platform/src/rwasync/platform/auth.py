"""Authentication for every HTTP service: credentials from the `Authorization` header (HTTP Basic
`key_id:secret` or `Bearer <token>`), verified by the service's own credential check, and
remembered for a few seconds so a request costs one hash and a dictionary look-up rather than a
database round trip (a revocation bites within that time).

The credentials themselves are never logged and never kept: the cache is keyed by their digest.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections.abc import Collection
from typing import Final, Generic, Literal, Protocol, TypeVar

from rwasync.platform.cache import TTLCache
from rwasync.platform.http import Problem, unauthorized

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
    ) -> None:
        self._check = check
        self._schemes = frozenset(schemes)
        self._verified: TTLCache[bytes, Identity] = TTLCache(cache_seconds)
        names = {"basic": 'Basic realm="rwasync"', "bearer": "Bearer"}
        self._challenge = ", ".join(names[s] for s in ("basic", "bearer") if s in self._schemes)
        self._hint = " or ".join(
            {"basic": "HTTP Basic key_id:secret", "bearer": "a Bearer token"}[s]
            for s in ("basic", "bearer")
            if s in self._schemes
        )

    def refused(self, detail: str) -> Problem:
        return unauthorized(detail, scheme=self._challenge)

    async def authenticate(self, authorization: str | None) -> Identity:
        if not authorization:
            raise self.refused(f"credentials are required: {self._hint}")
        scheme, _, presented = authorization.strip().partition(" ")
        scheme, presented = scheme.lower(), presented.strip()
        if scheme not in self._schemes or not presented:
            raise self.refused(f"use {self._hint}")
        cache_key = hashlib.sha256(f"{scheme} {presented}".encode()).digest()
        identity = self._verified.get(cache_key)
        if identity is None:
            async with asyncio.timeout(LOOKUP_TIMEOUT):
                if scheme == "basic":
                    identity = await self._verify_basic(presented)
                else:
                    identity = await self._check.bearer(presented)
            if identity is None:
                raise self.refused("invalid credentials")
            self._verified.put(cache_key, identity)
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
