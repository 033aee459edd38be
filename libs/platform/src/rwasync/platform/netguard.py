"""Which addresses a feed URL may reach: public unicast only, unless the operator's allow-list
(CIDR ranges) names the address. Used by the CLI at `feed add` for IP literals in any form, and by
the poller for every address it actually connects to."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
# inet_aton's legacy forms: decimal, octal, hex and short dotted ("127.1", "0x7f.1", "2130706433").
_LEGACY_IPV4 = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}\.?$", re.IGNORECASE)


class AddressRefused(Exception):
    """The address is loopback, private, link-local, multicast, reserved or unspecified."""


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a host name denotes if it is an IP literal in any form a resolver accepts."""
    host = host.strip().strip("[]")
    if "%" in host:  # zone index on a link-local IPv6 literal
        host = host.split("%", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _LEGACY_IPV4.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
        except OSError:
            return None
    return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64 or address in _NAT64_LOCAL:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return None


def _is_public(address: IPAddress) -> bool:
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return _is_public(embedded)
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
    )


def parse_networks(text: str | Iterable[str]) -> tuple[IPNetwork, ...]:
    items = text.split(",") if isinstance(text, str) else list(text)
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip())


@dataclass(frozen=True)
class AddressPolicy:
    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_setting(cls, text: str) -> AddressPolicy:
        return cls(parse_networks(text))

    def permits(self, address: IPAddress) -> bool:
        if address.is_unspecified:
            return False
        candidates = [address]
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            candidates.append(embedded)
        for candidate in candidates:
            if any(candidate.version == net.version and candidate in net for net in self.allowed):
                return True
        return _is_public(address)

    def check(self, address: IPAddress) -> None:
        if not self.permits(address):
            raise AddressRefused(f"address {address} is not a public address and not allow-listed")

    def check_host_literal(self, host: str) -> None:
        """Refuse a host that is an IP literal of a refused address; names are checked at fetch."""
        address = parse_ip_literal(host)
        if address is not None:
            self.check(address)
