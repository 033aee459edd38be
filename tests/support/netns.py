"""A host that can vanish: a network namespace joined to this one by a veth pair, for fault tests
of what a server does when a client's host disappears without closing its connections (power
loss, a partition). Traffic stays between the two ends of the pair; the shared servers are never
touched. Needs root (`ip netns`), as every machine of this project has.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@dataclass(frozen=True)
class VanishingHost:
    namespace: str
    inside: str  # the veth end in the namespace
    host_address: str  # this namespace's end: where the host inside reaches servers
    address: str  # the host's own address, as servers see it
    network: str

    def command(self, *args: str) -> list[str]:
        """`args` run inside the host."""
        return ["ip", "netns", "exec", self.namespace, *args]

    def vanish(self) -> None:
        """Take the host's link down: from now on nothing it sent or was sent arrives, and
        nobody is told (no reset, no close)."""
        _ip("netns", "exec", self.namespace, "ip", "link", "set", self.inside, "down")


@contextlib.contextmanager
def vanishing_host() -> Iterator[VanishingHost]:
    tag = os.urandom(3).hex()
    octet = int(tag[:2], 16) % 250 + 1
    host = VanishingHost(
        namespace=f"rwvanish-{tag}",
        inside=f"rwvn{tag}",
        host_address=f"10.213.{octet}.1",
        address=f"10.213.{octet}.2",
        network=f"10.213.{octet}.0/30",
    )
    outside = f"rwvh{tag}"
    _ip("netns", "add", host.namespace)
    try:
        _ip("link", "add", outside, "type", "veth", "peer", "name", host.inside)
        _ip("link", "set", host.inside, "netns", host.namespace)
        _ip("addr", "add", f"{host.host_address}/30", "dev", outside)
        _ip("link", "set", outside, "up")
        inside = ["netns", "exec", host.namespace, "ip"]
        _ip(*inside, "addr", "add", f"{host.address}/30", "dev", host.inside)
        _ip(*inside, "link", "set", host.inside, "up")
        _ip(*inside, "link", "set", "lo", "up")
        yield host
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", outside)  # deletes both ends
        _ip("netns", "del", host.namespace)
