"""Feed credentials: how the poller authenticates to a provider's feed (none, HTTP Basic, a
Bearer token or a custom header), and how their secrets are kept.

The secret (password, token or header value) is sealed with Fernet under a key from the settings
(`RWASYNC_FEED_SECRETS_KEY`, comma-separated keys: the first seals, all open, so keys can be
rotated), so a database dump does not reveal it. Without a key, a feed that carries credentials
cannot be registered (a clear error, never plaintext). The secret never appears in a log line, a
repr or any read of the feed: only `public()` is ever shown.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from rwasync.schema.feeds import FeedSettingInvalid, SettingErrors

MAX_SECRET_CHARS: Final = 4096
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
# Headers the poller sets itself, or that would change how the request travels.
_RESERVED_HEADERS: Final = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "accept-encoding", "te",
     "upgrade", "if-none-match", "if-modified-since", "user-agent", "cookie", "proxy-authorization"}
)  # fmt: skip


class AuthType(StrEnum):
    NONE = "none"
    BASIC = "basic"
    BEARER = "bearer"
    HEADER = "header"


class SecretsUnavailable(Exception):
    """A feed's sealed secret cannot be opened: no key is set, or none of the keys fits."""


@dataclass(frozen=True)
class FeedAuth:
    type: AuthType = AuthType.NONE
    username: str | None = None
    header: str | None = None
    secret: str | None = field(default=None, repr=False)

    def public(self) -> dict[str, str]:
        """What reads show: the kind, the user name or header name, never the secret."""
        shown = {"type": str(self.type)}
        if self.username is not None:
            shown["username"] = self.username
        if self.header is not None:
            shown["header"] = self.header
        return shown

    def request_headers(self) -> dict[str, str]:
        match self.type:
            case AuthType.BASIC:
                pair = f"{self.username}:{self.secret}".encode()
                return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
            case AuthType.BEARER:
                return {"Authorization": f"Bearer {self.secret}"}
            case AuthType.HEADER:
                assert self.header is not None and self.secret is not None
                return {self.header: self.secret}
            case _:
                return {}

    @classmethod
    def from_public(cls, public: dict[str, Any] | None, secret: str | None) -> FeedAuth:
        if not public:
            return cls()
        return cls(
            type=AuthType(public["type"]),
            username=public.get("username"),
            header=public.get("header"),
            secret=secret,
        )


def _text(value: Any, pointer: str, *, header_value: bool = False) -> str:
    if not isinstance(value, str) or not value:
        raise FeedSettingInvalid(pointer, "must be a non-empty string")
    if len(value) > MAX_SECRET_CHARS:
        raise FeedSettingInvalid(pointer, f"must be at most {MAX_SECRET_CHARS} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value) or (
        header_value and not value.isascii()
    ):
        raise FeedSettingInvalid(pointer, "must contain only printable ASCII characters")
    return value


def _username(value: Any) -> str:
    username = _text(value, "/auth/username", header_value=True)
    if ":" in username:
        raise FeedSettingInvalid("/auth/username", "must not contain ':'")
    return username


def _header_name(name: Any) -> str:
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise FeedSettingInvalid("/auth/name", "must be an HTTP header name")
    if name.lower() in _RESERVED_HEADERS:
        raise FeedSettingInvalid("/auth/name", f"{name} is set by the poller itself")
    return name


def parse_auth(document: Any) -> FeedAuth:
    """The `auth` object of a feed registration; errors name the field (`/auth/...`), every one
    found (without a known `type`, nothing else can be checked)."""
    if document is None:
        return FeedAuth()
    if not isinstance(document, dict):
        raise FeedSettingInvalid("/auth", 'must be an object such as {"type": "none"}')
    kinds = ", ".join(t.value for t in AuthType)
    try:
        kind = AuthType(str(document.get("type")))
    except ValueError:
        raise FeedSettingInvalid("/auth/type", f"must be one of {kinds}") from None
    allowed = {
        AuthType.NONE: {"type"},
        AuthType.BASIC: {"type", "username", "password"},
        AuthType.BEARER: {"type", "token"},
        AuthType.HEADER: {"type", "name", "value"},
    }[kind]
    found = SettingErrors()
    for key in sorted(set(document) - allowed):
        found.add(f"/auth/{key}", f"unknown field for auth type {kind.value}")
    auth = FeedAuth()
    match kind:
        case AuthType.BASIC:
            username = found.check(lambda: _username(document.get("username")))
            secret = found.check(
                lambda: _text(document.get("password"), "/auth/password", header_value=True)
            )
            auth = FeedAuth(AuthType.BASIC, username=username, secret=secret)
        case AuthType.BEARER:
            token = found.check(
                lambda: _text(document.get("token"), "/auth/token", header_value=True)
            )
            auth = FeedAuth(AuthType.BEARER, secret=token)
        case AuthType.HEADER:
            name = found.check(lambda: _header_name(document.get("name")))
            value = found.check(
                lambda: _text(document.get("value"), "/auth/value", header_value=True)
            )
            auth = FeedAuth(AuthType.HEADER, header=name, secret=value)
    found.raise_any()
    return auth


class FeedSecrets:
    """Seals and opens feed secrets with the keys of `RWASYNC_FEED_SECRETS_KEY`."""

    def __init__(self, keys: str) -> None:
        found = [key.strip() for key in keys.split(",") if key.strip()]
        try:
            self._fernet = MultiFernet([Fernet(key) for key in found]) if found else None
        except ValueError:
            raise ValueError(
                "RWASYNC_FEED_SECRETS_KEY must hold Fernet keys (32 url-safe base64 bytes each, "
                "comma-separated); make one with `rwasync feed secrets-key`"
            ) from None

    @staticmethod
    def new_key() -> str:
        return Fernet.generate_key().decode("ascii")

    def check_sealable(self, auth: FeedAuth) -> FeedAuth:
        """`auth`, if its secret (when it has one) can be sealed: a 422 on `/auth` otherwise."""
        if auth.secret is not None and self._fernet is None:
            raise FeedSettingInvalid(
                "/auth",
                "feed credentials cannot be stored: RWASYNC_FEED_SECRETS_KEY is not set",
            )
        return auth

    def seal(self, auth: FeedAuth) -> bytes | None:
        """The sealed secret to store (None for a feed without credentials)."""
        self.check_sealable(auth)
        if auth.secret is None:
            return None
        assert self._fernet is not None  # (check_sealable refused a secret without a key)
        return self._fernet.encrypt(auth.secret.encode("utf-8"))

    def open(self, sealed: bytes | None) -> str | None:
        if sealed is None:
            return None
        if self._fernet is None:
            raise SecretsUnavailable(
                "the feed's credentials cannot be opened: RWASYNC_FEED_SECRETS_KEY is not set"
            )
        try:
            return self._fernet.decrypt(bytes(sealed)).decode("utf-8")
        except InvalidToken:
            raise SecretsUnavailable(
                "the feed's credentials cannot be opened with the keys in RWASYNC_FEED_SECRETS_KEY"
            ) from None
