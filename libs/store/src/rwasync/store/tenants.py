"""Generated secrets and their digests. Secrets carry 256 bits of entropy and are shown once;
only SHA-256 digests are stored, compared in constant time (they are not human passwords, so a
slow password hash would only make authentication a way to burn CPU)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

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
