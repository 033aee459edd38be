"""Security review: site-local IPv6 (fec0::/10, deprecated by RFC 3879, routed only inside a
site and never public unicast) passed the feed address policy as a public address, both as a URL's
IP literal and as what a feed host name resolves to."""

from __future__ import annotations

import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from rwasync.feeds.guard import GuardedResolver
from rwasync.schema.addresses import AddressPolicy, AddressRefused

pytestmark = pytest.mark.unit


def test_site_local_ipv6_is_not_public() -> None:
    policy = AddressPolicy()
    for literal in ("fec0::1", "feff::1", "[fec0::1]"):
        with pytest.raises(AddressRefused):
            policy.check_host_literal(literal)


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


async def test_a_name_resolving_to_site_local_ipv6_is_refused() -> None:
    resolver = GuardedResolver(AddressPolicy(), FixedAnswers("fec0::1"))
    with pytest.raises(AddressRefused):
        await resolver.resolve("feeds.example.com", 443)
