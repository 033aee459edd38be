"""Which client a failed authentication counts against, behind trusted proxies: the nearest
`X-Forwarded-For` entry that is not a trusted proxy, read as an address whatever form a proxy
writes it in, so that no client gets a fresh count by a port or made-up text."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from rwasync.platform.clients import ClientAddresses, hop_address

pytestmark = pytest.mark.unit


def client_of(forwarded: list[str], peer: str = "10.0.0.2", trusted: str = "10.0.0.0/8") -> str:
    headers = CIMultiDict(("X-Forwarded-For", value) for value in forwarded)
    request = make_mocked_request("GET", "/", headers=headers)
    request = request.clone(remote=peer)
    return ClientAddresses(trusted).client(request)


@pytest.mark.parametrize(
    ("hop", "address"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7:5678 ", "203.0.113.7"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("unknown", None),
        ("_hidden", None),
    ],
)
def test_an_entry_is_read_as_an_address(hop: str, address: str | None) -> None:
    found = hop_address(hop)
    assert (None if found is None else str(found)) == address


def test_the_nearest_untrusted_entry_is_the_client() -> None:
    assert client_of(["198.51.100.1, 203.0.113.7"]) == "203.0.113.7"
    assert client_of(["198.51.100.1", "203.0.113.7, 10.0.0.9"]) == "203.0.113.7"
    # A port per connection does not make a new client.
    assert client_of(["203.0.113.7:40001"]) == client_of(["203.0.113.7:40002"]) == "203.0.113.7"
    assert client_of(["[2001:db8::1]:443"]) == "2001:db8::1"


def test_an_entry_that_is_no_address_counts_as_the_proxy() -> None:
    # Made-up text must not be a bucket of its own: each new text would start a fresh count.
    assert client_of(["unknown"]) == "10.0.0.2"
    assert client_of(["203.0.113.7, nonsense-1"]) == "10.0.0.2"


def test_an_untrusted_peer_is_the_client_whatever_the_header_says() -> None:
    assert client_of(["203.0.113.7"], peer="192.0.2.5") == "192.0.2.5"
    assert client_of(["203.0.113.7"], trusted="") == "10.0.0.2"
    assert client_of([]) == "10.0.0.2"
    # Only trusted proxies in the header: the farthest one.
    assert client_of(["10.0.0.7, 10.0.0.8"]) == "10.0.0.7"
