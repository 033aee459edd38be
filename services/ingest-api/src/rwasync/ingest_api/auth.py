"""Provider authentication: HTTP Basic `key_id:secret` or `Bearer <token>`, checked against the
SHA-256 digests in `provider_credentials` and remembered for a few seconds, so that a request
costs one hash and a dictionary look-up rather than a database round trip.

The credentials themselves are never logged, never kept: the cache is keyed by their digest.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Final

import structlog
from asyncpg import Record

from rwasync.ingest_api import queries
from rwasync.platform import credentials
from rwasync.platform.cache import TTLCache
from rwasync.platform.db import Database
from rwasync.platform.http import unauthorized

log = structlog.get_logger(__name__)

# A credential look-up that takes longer than this answers 503 rather than holding the caller.
LOOKUP_TIMEOUT: Final = 5.0

# Key ids are `key_` + 16 hex digits; anything much longer is not worth a look-up.
MAX_KEY_ID_LENGTH: Final = 128

# Compared against when a key id is unknown, so that an unknown key costs the same as a bad secret.
_NO_DIGEST: Final = bytes(32)


@dataclass(frozen=True, slots=True)
class ProviderIdentity:
    """Who is calling: the provider every write and read of this request is scoped to."""

    provider_id: str
    key_id: str


class ProviderAuthenticator:
    """Turns an `Authorization` header into a ProviderIdentity, or raises a 401/503 Problem."""

    def __init__(self, db: Database, *, cache_seconds: float) -> None:
        self._db = db
        self._verified: TTLCache[bytes, ProviderIdentity] = TTLCache(cache_seconds)

    async def authenticate(self, authorization: str | None) -> ProviderIdentity:
        if not authorization:
            raise unauthorized(
                "credentials are required: HTTP Basic key_id:secret or a Bearer token"
            )
        scheme, _, presented = authorization.strip().partition(" ")
        scheme, presented = scheme.lower(), presented.strip()
        if scheme not in ("basic", "bearer") or not presented:
            raise unauthorized("use HTTP Basic key_id:secret or a Bearer token")
        cache_key = hashlib.sha256(f"{scheme} {presented}".encode()).digest()
        identity = self._verified.get(cache_key)
        if identity is None:
            if scheme == "basic":
                identity = await self._verify_basic(presented)
            else:
                identity = await self._verify_bearer(presented)
            self._verified.put(cache_key, identity)
        return identity

    async def _verify_basic(self, presented: str) -> ProviderIdentity:
        try:
            decoded = base64.b64decode(presented, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise unauthorized("malformed Basic credentials") from None
        key_id, colon, secret = decoded.partition(":")
        if not colon or not key_id or not secret:
            raise unauthorized("Basic credentials must be key_id:secret")
        if len(key_id) > MAX_KEY_ID_LENGTH or not key_id.isprintable():
            # Not a key id rwasync issues (and text Postgres would refuse, e.g. with NUL).
            raise unauthorized("invalid credentials")
        row = await self._lookup(queries.CREDENTIAL_BY_KEY_ID, key_id)
        stored = row["secret_digest"] if row is not None else _NO_DIGEST
        if not credentials.matches(secret, stored) or row is None:
            raise unauthorized("invalid credentials")
        return ProviderIdentity(provider_id=row["provider_id"], key_id=row["key_id"])

    async def _verify_bearer(self, token: str) -> ProviderIdentity:
        row = await self._lookup(queries.CREDENTIAL_BY_TOKEN_DIGEST, credentials.digest(token))
        if row is None:
            raise unauthorized("invalid credentials")
        return ProviderIdentity(provider_id=row["provider_id"], key_id=row["key_id"])

    async def _lookup(self, query: str, argument: str | bytes) -> Record | None:
        # A database that is away or slow is a 503 (the platform middleware maps it).
        async with asyncio.timeout(LOOKUP_TIMEOUT):
            row: Record | None = await self._db.fetchrow(query, argument)
        return row
