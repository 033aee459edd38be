"""The one authenticator of every HTTP service: header parsing, schemes, caching, refusals."""

from __future__ import annotations

import base64

import pytest

from rwasync.platform.auth import BEARER_ONLY, Authenticator
from rwasync.platform.http import Problem

pytestmark = pytest.mark.unit


class Store:
    """A credential check that knows one key and one token, and counts its look-ups."""

    def __init__(self) -> None:
        self.lookups = 0

    async def basic(self, key_id: str, secret: str) -> str | None:
        self.lookups += 1
        return "basic-user" if (key_id, secret) == ("key_1", "s3cret") else None

    async def bearer(self, token: str) -> str | None:
        self.lookups += 1
        return "bearer-user" if token == "tok" else None


def basic(pair: str) -> str:
    return "Basic " + base64.b64encode(pair.encode()).decode()


async def test_basic_and_bearer_resolve_to_their_identity() -> None:
    auth = Authenticator(Store(), cache_seconds=5)
    assert await auth.authenticate(basic("key_1:s3cret")) == "basic-user"
    assert await auth.authenticate("Bearer tok") == "bearer-user"
    assert await auth.authenticate("bearer   tok ") == "bearer-user"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Token tok",
        basic("key_1:wrong"),
        basic("key_1"),
        "Basic %%%",
        "Bearer x",
    ],
)
async def test_anything_else_is_a_401_with_a_challenge(header: str | None) -> None:
    auth = Authenticator(Store(), cache_seconds=5)
    with pytest.raises(Problem) as refused:
        await auth.authenticate(header)
    assert refused.value.status == 401
    assert refused.value.headers["WWW-Authenticate"] == 'Basic realm="rwasync", Bearer'


async def test_a_bearer_only_service_refuses_basic_without_a_look_up() -> None:
    store = Store()
    auth = Authenticator(store, cache_seconds=5, schemes=BEARER_ONLY)
    with pytest.raises(Problem) as refused:
        await auth.authenticate(basic("key_1:s3cret"))
    assert refused.value.headers["WWW-Authenticate"] == "Bearer"
    assert store.lookups == 0


async def test_verified_credentials_are_cached_and_refusals_are_not() -> None:
    store = Store()
    auth = Authenticator(store, cache_seconds=5)
    for _ in range(3):
        await auth.authenticate("Bearer tok")
        with pytest.raises(Problem):
            await auth.authenticate("Bearer nope")
    assert store.lookups == 1 + 3


async def test_an_absurd_key_id_is_refused_without_a_look_up() -> None:
    store = Store()
    auth = Authenticator(store, cache_seconds=5)
    for pair in ("k" * 200 + ":x", "key\x00:x"):
        with pytest.raises(Problem):
            await auth.authenticate(basic(pair))
    assert store.lookups == 0
