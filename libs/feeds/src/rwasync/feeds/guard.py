"""Keeping a provider's feed URL from reaching inside the network (server-side request forgery).

Every address the client connects to is checked against the `AddressPolicy`: host names through a
resolver that drops refused addresses (so a DNS answer cannot smuggle in a private address, and
the address checked is the one connected to), IP literals before each request (aiohttp does not
consult the resolver for them), and each redirect hop anew (redirects are followed by `fetch`,
not by aiohttp).
"""

from __future__ import annotations

import ipaddress
import socket

import aiohttp
import structlog
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from rwasync.schema.addresses import AddressPolicy, AddressRefused

log = structlog.get_logger(__name__)


class GuardedResolver(AbstractResolver):
    """Resolves through another resolver and keeps only addresses the policy permits.

    aiohttp connects to exactly the addresses returned here, so a name cannot resolve to a
    public address when checked and a private one when connected (DNS rebinding).
    """

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner if inner is not None else aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        permitted: list[ResolveResult] = []
        refused: list[str] = []
        for result in results:
            address = ipaddress.ip_address(result["host"].split("%", 1)[0])
            if self._policy.permits(address):
                permitted.append(result)
            else:
                refused.append(result["host"])
        if refused:
            log.info("resolved addresses refused", host=host, refused=refused)
        if not permitted:
            raise AddressRefused(
                f"{host} resolves only to addresses that are not public and not allow-listed "
                f"({', '.join(sorted(set(refused)))})"
            )
        return permitted

    async def close(self) -> None:
        await self._inner.close()


def redact(url: URL) -> str:
    """The URL without credentials or query (which may carry tokens), for reasons and logs."""
    return str(url.with_user(None).with_query(None).with_fragment(None))


def same_origin(a: URL, b: URL) -> bool:
    """Credentials follow a redirect only to the origin they were given for."""
    return (a.scheme, a.host, a.explicit_port or a.port) == (
        b.scheme,
        b.host,
        b.explicit_port or b.port,
    )
