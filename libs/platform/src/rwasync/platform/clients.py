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

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

FORWARDED_FOR: Final = "X-Forwarded-For"


def parse_networks(setting: str) -> tuple[IpNetwork, ...]:
    """Comma-separated CIDR ranges (or single addresses); raises ValueError naming a bad one."""
    networks = []
    for part in setting.split(","):
        text = part.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not a CIDR range or an IP address") from None
    return tuple(networks)


class ClientAddresses:
    def __init__(self, trusted_proxies: str = "") -> None:
        self._trusted = parse_networks(trusted_proxies)

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self._trusted)

    def client(self, request: web.Request) -> str:
        peer = request.remote or "unknown"
        if not self._trusted or not self._is_trusted(peer):
            return peer
        hops = [
            hop.strip()
            for header in request.headers.getall(FORWARDED_FOR, [])
            for hop in header.split(",")
            if hop.strip()
        ]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops else peer
