"""The poller's resolver checks every address a host name resolves to, so a name cannot smuggle a
private address past the policy (and the address checked is the one connected to)."""

from __future__ import annotations

import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from rwasync.feeds.guard import GuardedResolver
from rwasync.schema.addresses import AddressPolicy, AddressRefused

pytestmark = pytest.mark.unit


class FixedAnswers(AbstractResolver):
    def __init__(self, *addresses: str) -> None:
        self._addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self._addresses
        ]

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.0.0.7", "169.254.169.254", "::1", "fe80::1", "fec0::1"]
)
async def test_a_name_resolving_only_to_a_refused_address_is_refused(address: str) -> None:
    resolver = GuardedResolver(AddressPolicy(), FixedAnswers(address))
    with pytest.raises(AddressRefused, match="not public"):
        await resolver.resolve("feeds.example.com", 443)


async def test_refused_answers_are_dropped_and_public_ones_kept() -> None:
    resolver = GuardedResolver(AddressPolicy(), FixedAnswers("10.0.0.7", "93.184.216.34"))
    answers = await resolver.resolve("feeds.example.com", 443)
    assert [a["host"] for a in answers] == ["93.184.216.34"]


async def test_the_allow_list_admits_what_it_names() -> None:
    policy = AddressPolicy.from_setting("127.0.0.0/8")
    answers = await GuardedResolver(policy, FixedAnswers("127.0.0.1")).resolve("localhost", 80)
    assert [a["host"] for a in answers] == ["127.0.0.1"]
