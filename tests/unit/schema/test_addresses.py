"""Which feed hosts the poller may reach: IP literals in every form a resolver accepts, parsed
without a resolver (the policy is pure)."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from rwasync.schema.addresses import AddressPolicy, AddressRefused, parse_ip_literal
from rwasync.schema.feeds import FeedSettingInvalid, check_feed_url

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
    "fec0::1",  # site-local (RFC 3879), which `ipaddress` counts as global
    "feff::1",
    "[fec0::1]",
]

NO_ALLOW_LIST = AddressPolicy.from_setting("")
LOOPBACK_ALLOWED = AddressPolicy.from_setting("127.0.0.0/8,::1")


@pytest.mark.parametrize("host", LOOPBACK_FORMS + NEVER_ALLOWED_BY_LOOPBACK)
def test_non_public_literals_are_refused_without_an_allow_list(host: str) -> None:
    with pytest.raises(AddressRefused):
        NO_ALLOW_LIST.check_host_literal(host)


@pytest.mark.parametrize("host", LOOPBACK_FORMS)
def test_loopback_in_any_form_is_allowed_by_the_loopback_allow_list(host: str) -> None:
    address = LOOPBACK_ALLOWED.check_host_literal(host)
    assert address is not None
    # The literal denotes loopback itself, or embeds 127.0.0.1 (IPv4-mapped, NAT64).
    embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    assert address.is_loopback or embedded == ipaddress.IPv4Address("127.0.0.1")


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",
        "0177.0.0.1",
        "0x7f000001",
        "0x7f.0.0.1",
        "127.1",
        "127.0.1",
        "0x7F.1",
        "017700000001",
        "10.1",
        "192.168.257",
        "1.2.3.4.",
        "0",
        "255.255.255.255",
    ],
)
def test_legacy_ipv4_forms_parse_as_the_c_library_does(host: str) -> None:
    expected = ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
    assert parse_ip_literal(host) == expected


@pytest.mark.parametrize("host", ["08.0.0.1", "0x", "256.256.256.256", "1.2.3.4.5", "1.0x1000000"])
def test_forms_the_c_library_refuses_are_names_not_addresses(host: str) -> None:
    with pytest.raises(OSError):
        socket.inet_aton(host.rstrip("."))
    assert parse_ip_literal(host) is None


@pytest.mark.parametrize("host", NEVER_ALLOWED_BY_LOOPBACK)
def test_the_loopback_allow_list_allows_nothing_else(host: str) -> None:
    with pytest.raises(AddressRefused):
        LOOPBACK_ALLOWED.check_host_literal(host)


def test_the_unspecified_address_is_refused_even_when_listed() -> None:
    with pytest.raises(AddressRefused):
        AddressPolicy.from_setting("0.0.0.0/1").check_host_literal("0.0.0.0")
    with pytest.raises(ValueError, match="covers every address"):  # a setting refuses it
        AddressPolicy.from_setting("0.0.0.0/0")


@pytest.mark.parametrize("host", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_literals_pass_and_are_returned_as_addresses(host: str) -> None:
    assert NO_ALLOW_LIST.check_host_literal(host) == ipaddress.ip_address(host)


@pytest.mark.parametrize("host", ["feeds.example.com", "localhost", "internal", "127.0.0.1.nip.io"])
def test_host_names_are_left_to_the_resolved_address_check(host: str) -> None:
    # A name is not judged by its spelling (`localhost` may be refused only once resolved): the
    # literal check passes it on as a name, and the poller's resolver checks what it resolves to.
    assert parse_ip_literal(host) is None
    assert NO_ALLOW_LIST.check_host_literal(host) is None


@pytest.mark.parametrize(
    ("host", "hint"),
    [
        ("2130706433", ": write it 127.0.0.1"),
        ("127.1", ": write it 127.0.0.1"),
        ("0177.0.0.1", ": write it 127.0.0.1"),
        ("127.0.0.1.", ": write it 127.0.0.1"),
        # hex, which the resolver would take: still one way to write an address, the dotted quad
        ("0x7f.0.0.1", ": write it 127.0.0.1"),
        ("0x7F000001", ": write it 127.0.0.1"),
        ("0x7f.1", ": write it 127.0.0.1"),
        ("127.0.0.0x1", ": write it 127.0.0.1"),
        ("08.0.0.1", ""),  # not even the C library's: a name no resolver knows
    ],
)
def test_a_permitted_address_in_a_form_no_fetch_can_use_is_refused_when_registered(
    host: str, hint: str
) -> None:
    # The allow-list permits it, but the fetch's HTTP client takes a host of digits and dots
    # only as a dotted quad: registered, every run of the feed failed with `fetch_error`.
    with pytest.raises(FeedSettingInvalid) as refused:
        check_feed_url(f"http://{host}:8098/feed.json", LOOPBACK_ALLOWED)
    assert refused.value.message == (
        f"has a numeric host that is not a dotted-quad IPv4 address{hint}"
    )
    assert check_feed_url("http://127.0.0.1:8098/feed.json", LOOPBACK_ALLOWED)


# A host the HTTP client maps to an IP literal before connecting (yarl's IDNA/UTS 46 mapping, as
# a browser's): full-width, circled and mathematical digits and the ideographic full stop.
UNICODE_LOOPBACK_FORMS = [
    "１２７.０.０.１",
    "①②⑦.⓪.⓪.①",
    "𝟏𝟐𝟕.𝟎.𝟎.𝟏",
    "127。0。0。1",
    "１２７.１",
    "０ｘ７ｆ.１",
]


@pytest.mark.parametrize("host", UNICODE_LOOPBACK_FORMS)
def test_a_literal_in_unicode_digits_is_judged_as_the_address_the_client_reaches(
    host: str,
) -> None:
    from yarl import URL

    # The fetch's own client maps the host to loopback: the policy judges that address.
    assert parse_ip_literal(URL(f"http://{host}/").host or "") == ipaddress.ip_address("127.0.0.1")
    assert parse_ip_literal(host) == ipaddress.ip_address("127.0.0.1")
    with pytest.raises(AddressRefused):
        NO_ALLOW_LIST.check_host_literal(host)


@pytest.mark.parametrize(
    ("host", "address"),
    [
        *((host, "127.0.0.1") for host in UNICODE_LOOPBACK_FORMS),
        ("１０.０.０.１", "10.0.0.1"),
        ("⑯⑨.②⑤④.①⑥⑨.②⑤④", "169.254.169.254"),  # circled numbers past 9 (cloud metadata)
    ],
)
def test_a_feed_url_with_a_unicode_digit_literal_is_refused_when_registered(
    host: str, address: str
) -> None:
    with pytest.raises(FeedSettingInvalid) as refused:
        check_feed_url(f"http://{host}:8098/feed.json", NO_ALLOW_LIST)
    assert (refused.value.pointer, refused.value.message) == (
        "/url",
        f"address {address} is not a public address and not allow-listed",
    )


def test_an_allowed_unicode_digit_literal_in_a_form_no_fetch_uses_is_refused() -> None:
    # Full-width 127.1 is 127.1 to the client: a short form, refused with the dotted quad to use.
    with pytest.raises(FeedSettingInvalid) as refused:
        check_feed_url("http://１２７.１:8098/feed.json", LOOPBACK_ALLOWED)
    assert refused.value.message.endswith(": write it 127.0.0.1")
    assert check_feed_url("http://１２７.０.０.１:8098/feed.json", LOOPBACK_ALLOWED)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8098/feed.json ",
        " http://127.0.0.1:8098/feed.json",
        "\thttp://127.0.0.1:8098/feed.json",
        "http://127.0.0.1:8098/feed.json\n",
        "http://127.0.0.1:8098/fe\ted.json",
        "http://127.0.0.1:8098/my feed.json",
        "http://127.0.0.1:8098/feed.json\u00a0",
        "http://127.0.0.1:8098/feed.json\x7f",
        "http://127.0.0.\u200b1:8098/feed.json",  # IDNA drops it; every fetch failed on it
        "http://feeds.example\u200d.com/feed.json",
    ],
)
def test_a_url_with_spaces_or_control_characters_is_refused(url: str) -> None:
    """urlsplit drops them at either end, and tabs and line breaks anywhere: such a URL was
    stored as sent, and one with a trailing space failed every run with a 404 for `%20`
    (hybrid trial)."""
    with pytest.raises(FeedSettingInvalid) as refused:
        check_feed_url(url, LOOPBACK_ALLOWED)
    assert refused.value.pointer == "/url"
    assert "spaces, control characters or invisible ones" in refused.value.message
    assert check_feed_url("http://127.0.0.1:8098/my%20feed.json", LOOPBACK_ALLOWED)
