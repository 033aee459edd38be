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

from asyncpg import Record

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


# What a usable credential may act for: its provider's own id (unless the provider is disabled),
# or for a partner's credential, the live providers the partner was granted. A revoked
# credential (revoked_at reached), a disabled provider or a disabled partner match nothing.
_CREDENTIAL = """
SELECT c.key_id, c.secret_digest, c.provider_id, c.partner_id,
       CASE WHEN c.partner_id IS NOT NULL THEN ARRAY(
           SELECT g.provider_id FROM partner_providers g
           JOIN providers gp ON gp.provider_id = g.provider_id
           WHERE g.partner_id = c.partner_id AND NOT gp.disabled
       ) END AS acts_for
FROM provider_credentials c
LEFT JOIN providers p ON p.provider_id = c.provider_id
LEFT JOIN partners r ON r.partner_id = c.partner_id
WHERE {match}
  AND (c.revoked_at IS NULL OR c.revoked_at > now())
  AND (NOT p.disabled OR NOT r.disabled)
"""
# A credential by its key id (HTTP Basic); the secret's digest is compared in Python, in constant
# time.
CREDENTIAL_BY_KEY_ID: Final = _CREDENTIAL.format(match="c.key_id = $1")
# A credential by the SHA-256 digest of its bearer token (the look-up is the comparison: an index
# probe on a digest leaks nothing about the token). Reader tokens live in `readers` and so never
# match here.
CREDENTIAL_BY_TOKEN_DIGEST: Final = _CREDENTIAL.format(match="c.token_digest = $1")

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


class TenantRefused(Exception):
    """The credential cannot act for the provider the request names (or names none)."""


@dataclass(frozen=True, slots=True)
class ProviderCredential:
    """A verified credential: a provider's own, or a partner's acting for several providers."""

    key_id: str
    provider_id: str | None
    partner_id: str | None = None
    acts_for: frozenset[str] = frozenset()

    def acting_for(self, tenant: str | None) -> ProviderIdentity:
        """The provider of a request naming `tenant` (`X-Tenant-Id`): a partner must name one it
        was granted; a provider's own credential may name only itself."""
        if self.provider_id is not None:
            if tenant is not None and tenant != self.provider_id:
                raise TenantRefused("this credential cannot act for that provider")
            return ProviderIdentity(provider_id=self.provider_id, key_id=self.key_id)
        if tenant is None:
            raise TenantRefused("a partner credential must name the provider in X-Tenant-Id")
        if tenant not in self.acts_for:
            raise TenantRefused("this credential cannot act for that provider")
        return ProviderIdentity(provider_id=tenant, key_id=self.key_id)


def _credential(row: Record) -> ProviderCredential:
    return ProviderCredential(
        key_id=row["key_id"],
        provider_id=row["provider_id"],
        partner_id=row["partner_id"],
        acts_for=frozenset(row["acts_for"] or ()),
    )


class ProviderCredentials:
    """The credential check of the provider API: Basic `key_id:secret` or a provider token."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def basic(self, key_id: str, secret: str) -> ProviderCredential | None:
        row = await self._db.fetchrow(CREDENTIAL_BY_KEY_ID, key_id)
        stored = row["secret_digest"] if row is not None else _NO_DIGEST
        if not matches(secret, stored) or row is None:
            return None
        return _credential(row)

    async def bearer(self, token: str) -> ProviderCredential | None:
        row = await self._db.fetchrow(CREDENTIAL_BY_TOKEN_DIGEST, digest(token))
        return _credential(row) if row is not None else None


def provider_token_hint(token: str) -> str | None:
    """What to say of a token the provider API did not recognise, when it is a reader's."""
    if token.startswith(READER_TOKEN_PREFIX):
        return (
            "a reader token (rwr_…) cannot call the provider API: use a provider credential "
            "(a rwp_… token or key_id:secret)"
        )
    return None


def reader_token_hint(token: str) -> str | None:
    """What to say of a token investor reads did not recognise, when it is a provider's."""
    if token.startswith(PROVIDER_TOKEN_PREFIX):
        return (
            "a provider token (rwp_…) cannot read the catalogue or prices: use a reader token "
            "(rwr_…, from `rwasync reader create`)"
        )
    return None


class ReaderTokens:
    """The credential check of investor reads: reader tokens only (Bearer)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def basic(self, key_id: str, secret: str) -> str | None:
        return None

    async def bearer(self, token: str) -> str | None:
        reader_id = await self._db.fetchval(READER_BY_TOKEN_DIGEST, digest(token))
        return str(reader_id) if reader_id is not None else None
