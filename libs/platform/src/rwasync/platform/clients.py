"""Which client a request came from, for the per-client limit on failed authentications.

Behind a reverse proxy (the compose gateway, a Kubernetes ingress) every request's peer is the
proxy, so counting by peer would make one client's failures lock out everyone. When the peer is
a trusted proxy (`RWASYNC_TRUSTED_PROXIES`), the client is the nearest address before it in
`X-Forwarded-For` that is not a trusted proxy: proxies append the address they received from,
so the entries a client wrote itself come first and are never taken while a proxy's follow.
"""

from __future__ import annotations

import ipaddress
from typing import Final

from aiohttp import web

from rwasync.schema.addresses import parse_networks

FORWARDED_FOR: Final = "X-Forwarded-For"


def hop_address(hop: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address of one `X-Forwarded-For` entry (some proxies add a port: `1.2.3.4:5678`,
    `[2001:db8::1]:443`), an IPv4-mapped IPv6 address as the IPv4 one; None when it is none
    (`unknown`, an obfuscated name)."""
    text = hop.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class ClientAddresses:
    def __init__(self, trusted_proxies: str = "") -> None:
        self._trusted = parse_networks(trusted_proxies)

    def _is_trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        return address is not None and any(address in network for network in self._trusted)

    def client(self, request: web.Request) -> str:
        """The client's address; behind a trusted proxy, from `X-Forwarded-For`. An entry that
        is no address counts as the proxy that wrote it (one bucket for all such clients), so
        neither a port per connection nor made-up text gives a client a fresh count."""
        peer = request.remote or "unknown"
        if not self._trusted or not self._is_trusted(hop_address(peer)):
            return peer
        hops = [
            hop_address(hop)
            for header in request.headers.getall(FORWARDED_FOR, [])
            for hop in header.split(",")
            if hop.strip()
        ]
        for address in reversed(hops):
            if not self._is_trusted(address):
                return peer if address is None else str(address)
        return str(hops[0]) if hops else peer
