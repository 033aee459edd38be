"""Which feed hosts the poller may reach: IP literals in every form a resolver accepts."""

from __future__ import annotations

import pytest

from rwasync.platform.netguard import AddressPolicy, AddressRefused

pytestmark = pytest.mark.unit

LOOPBACK_FORMS = [
    "127.0.0.1",
    "2130706433",  # decimal
    "0177.0.0.1",  # octal
    "0x7f000001",  # hex
    "0x7f.0.0.1",
    "127.1",  # short
    "::1",
    "[::1]",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "64:ff9b::7f00:1",  # NAT64
]
NEVER_ALLOWED_BY_LOOPBACK = [
    "169.254.169.254",  # link-local (cloud metadata)
    "10.0.0.1",
    "192.168.1.1",
    "172.16.0.1",
    "0.0.0.0",
    "0",
    "::",
    "fe80::1",
    "fc00::1",
    "224.0.0.1",
    "240.0.0.1",
    "::ffff:10.0.0.1",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
]
PUBLIC = ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "feeds.example.com"]

NO_ALLOW_LIST = AddressPolicy.from_setting("")
LOOPBACK_ALLOWED = AddressPolicy.from_setting("127.0.0.0/8,::1")


@pytest.mark.parametrize("host", LOOPBACK_FORMS + NEVER_ALLOWED_BY_LOOPBACK)
def test_non_public_literals_are_refused_without_an_allow_list(host: str) -> None:
    with pytest.raises(AddressRefused):
        NO_ALLOW_LIST.check_host_literal(host)


@pytest.mark.parametrize("host", LOOPBACK_FORMS)
def test_loopback_in_any_form_is_allowed_by_the_loopback_allow_list(host: str) -> None:
    LOOPBACK_ALLOWED.check_host_literal(host)


@pytest.mark.parametrize("host", NEVER_ALLOWED_BY_LOOPBACK)
def test_the_loopback_allow_list_allows_nothing_else(host: str) -> None:
    with pytest.raises(AddressRefused):
        LOOPBACK_ALLOWED.check_host_literal(host)


def test_the_unspecified_address_is_refused_even_when_listed() -> None:
    with pytest.raises(AddressRefused):
        AddressPolicy.from_setting("0.0.0.0/0").check_host_literal("0.0.0.0")


@pytest.mark.parametrize("host", PUBLIC)
def test_public_addresses_and_names_pass_the_literal_check(host: str) -> None:
    # Names are checked per resolved address at fetch time (integration tests).
    NO_ALLOW_LIST.check_host_literal(host)
