"""Tenants and their credentials: generated secrets, their digests, and the look-ups the HTTP
services authenticate with.

Secrets carry 256 bits of entropy and are shown once; only SHA-256 digests are stored, compared in
constant time (they are not human passwords, so a slow password hash would only make
authentication a way to burn CPU).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final

from rwasync.platform.db import Database

PROVIDER_TOKEN_PREFIX = "rwp_"
READER_TOKEN_PREFIX = "rwr_"


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def matches(secret: str, stored_digest: bytes) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class IssuedCredential:
    key_id: str
    secret: str
    token: str

    @property
    def secret_digest(self) -> bytes:
        return digest(self.secret)

    @property
    def token_digest(self) -> bytes:
        return digest(self.token)


def issue_provider_credential() -> IssuedCredential:
    return IssuedCredential(
        key_id=new_id("key"),
        secret=new_secret(),
        token=PROVIDER_TOKEN_PREFIX + new_secret(),
    )


def issue_reader_token() -> str:
    return READER_TOKEN_PREFIX + new_secret()


# A provider credential by its key id (HTTP Basic), usable only while neither it is revoked nor
# its provider disabled. The secret's digest is compared in Python, in constant time.
CREDENTIAL_BY_KEY_ID: Final = """
SELECT c.provider_id, c.key_id, c.secret_digest
FROM provider_credentials c
JOIN providers p ON p.provider_id = c.provider_id
WHERE c.key_id = $1
  AND (c.revoked_at IS NULL OR c.revoked_at > now())
  AND NOT p.disabled
"""

# A provider credential by the SHA-256 digest of its bearer token (the look-up is the comparison:
# an index probe on a digest leaks nothing about the token). Reader tokens live in `readers` and
# so never match here.
CREDENTIAL_BY_TOKEN_DIGEST: Final = """
SELECT c.provider_id, c.key_id
FROM provider_credentials c
JOIN providers p ON p.provider_id = c.provider_id
WHERE c.token_digest = $1
  AND (c.revoked_at IS NULL OR c.revoked_at > now())
  AND NOT p.disabled
"""

# A reader (investor read access) by the digest of its token.
READER_BY_TOKEN_DIGEST: Final = """
SELECT reader_id FROM readers WHERE token_digest = $1 AND revoked_at IS NULL
"""


# Compared against when a key id is unknown, so that an unknown key costs the same as a bad secret.
_NO_DIGEST: Final = bytes(32)


@dataclass(frozen=True, slots=True)
class ProviderIdentity:
    """Who is calling: the provider every write and read of this request is scoped to."""

    provider_id: str
    key_id: str


class ProviderCredentials:
    """The credential check of the provider API: Basic `key_id:secret` or a provider token."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def basic(self, key_id: str, secret: str) -> ProviderIdentity | None:
        row = await self._db.fetchrow(CREDENTIAL_BY_KEY_ID, key_id)
        stored = row["secret_digest"] if row is not None else _NO_DIGEST
        if not matches(secret, stored) or row is None:
            return None
        return ProviderIdentity(provider_id=row["provider_id"], key_id=row["key_id"])

    async def bearer(self, token: str) -> ProviderIdentity | None:
        row = await self._db.fetchrow(CREDENTIAL_BY_TOKEN_DIGEST, digest(token))
        if row is None:
            return None
        return ProviderIdentity(provider_id=row["provider_id"], key_id=row["key_id"])


class ReaderTokens:
    """The credential check of investor reads: reader tokens only (Bearer)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def basic(self, key_id: str, secret: str) -> str | None:
        return None

    async def bearer(self, token: str) -> str | None:
        reader_id = await self._db.fetchval(READER_BY_TOKEN_DIGEST, digest(token))
        return str(reader_id) if reader_id is not None else None
