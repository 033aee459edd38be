"""Which network addresses a provider's feed URL may reach: public unicast only, unless the
operator's allow-list (CIDR ranges) names the address (pure; no resolver, no socket).

`feed add`, `PUT /v1/feeds` and the poller all apply this one policy: to IP literals in any form
a resolver accepts when a URL is registered, and to every resolved address at fetch time. A host
is first mapped as the HTTP client maps it before connecting (`connect_host`), so a literal
written in full-width or circled digits (`１２７.０.０.１`) is judged as the address it reaches.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
# inet_aton's legacy forms: decimal, octal, hex and short dotted ("127.1", "0x7f.1", "2130706433").
_LEGACY_IPV4 = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}\.?$", re.IGNORECASE)
# How many bits each part of a 1- to 4-part legacy address fills (the last part takes the rest).
_PART_BITS = {1: (32,), 2: (8, 24), 3: (8, 8, 16), 4: (8, 8, 8, 8)}


class AddressRefused(Exception):
    """The address is loopback, private, link-local, multicast, reserved or unspecified."""


def _legacy_part(text: str) -> int | None:
    lowered = text.lower()
    if lowered.startswith("0x"):
        return int(lowered[2:], 16)
    if len(text) > 1 and text.startswith("0"):
        return int(text, 8) if all(c in "01234567" for c in text) else None
    return int(text)


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """What the C library's `inet_aton` makes of `host`, or None where it refuses it."""
    parts = host.rstrip(".").split(".")
    values = [_legacy_part(part) for part in parts]
    if any(v is None for v in values):
        return None
    address = 0
    for value, bits in zip(values, _PART_BITS[len(parts)], strict=True):
        assert value is not None
        if value >= 1 << bits:
            return None
        address = (address << bits) | value
    return ipaddress.IPv4Address(address)


def connect_host(host: str) -> str:
    """`host` as the fetch's HTTP client (aiohttp, through yarl) maps it before connecting, as a
    browser does: ASCII lower-cased, anything else IDNA-mapped (UTS 46, then IDNA 2003 where that
    refuses), so full-width, circled or mathematical digits become ASCII digits and `。` a dot.
    Raises UnicodeError for a host neither IDNA accepts (the client refuses the URL too)."""
    if host.isascii():
        return host.lower()
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except UnicodeError:  # idna.IDNAError included
        return host.encode("idna").decode("ascii")


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a host denotes if it is an IP literal in any form a resolver accepts, once
    mapped as the HTTP client maps it (`connect_host`); None for a host name (names are checked
    per resolved address when fetching)."""
    host = host.strip().strip("[]")
    if "%" in host:  # zone index on a link-local IPv6 literal
        host = host.split("%", 1)[0]
    try:
        host = connect_host(host)
    except UnicodeError:
        return None  # no IDNA form: no literal, and a name no fetch can look up
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _LEGACY_IPV4.match(host):
        return _legacy_ipv4(host)
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
    # Site-local IPv6 (fec0::/10, deprecated by RFC 3879) is routed only inside a site, yet
    # `ipaddress` counts it global: it is no public unicast address.
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return False
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
    )


def parse_networks(text: str | Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDR ranges (or single addresses) from a comma-separated setting, or a list; raises
    ValueError naming a bad one."""
    networks = []
    for item in text.split(",") if isinstance(text, str) else text:
        part = item.strip()
        if not part:
            continue
        try:
            network = ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise ValueError(f"{part!r} is not a CIDR range or an IP address") from None
        if network.prefixlen == 0:
            # Every address: allowed feed targets would include the cloud metadata address and
            # every private network, trusted proxies any client forging X-Forwarded-For.
            raise ValueError(
                f"{part!r} covers every address: list the private or loopback ranges you mean"
            )
        networks.append(network)
    return tuple(networks)


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

    def check_host_literal(self, host: str) -> IPAddress | None:
        """Refuse a host that is an IP literal of a refused address. Returns the literal's
        address, or None for a host name, which can only be judged once it is resolved."""
        address = parse_ip_literal(host)
        if address is not None:
            self.check(address)
        return address
