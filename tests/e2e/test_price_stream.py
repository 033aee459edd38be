"""The price stream in a real pricing process: a subscriber hanging up while the stream waits for
room to write to it is a subscriber gone, not an outage. (Only a real process shows it: aiohttp's
test server cancels the handler when its connection is lost, the services' runner does not.)"""

from __future__ import annotations

import asyncio
import json
import socket
import struct

import aiohttp
import pytest

from tests.e2e.test_flows import bearer, now
from tests.support.system import System
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


async def stream_answers(http: aiohttp.ClientSession, pricing: str) -> dict[str, float]:
    async with http.get(f"{pricing}/metrics") as answer:
        text = await answer.text()
    return {
        line.split('status="')[1].split('"')[0]: float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("rwasync_http_requests_total{") and 'route="/v1/prices/stream"' in line
    }


async def test_a_subscriber_hanging_up_mid_write_is_no_database_outage(
    system: System, provider: dict[str, str], reader: dict[str, str], http: aiohttp.ClientSession
) -> None:
    """aiohttp ends a write waiting for room with a plain `ConnectionError` when the client
    goes: it was taken for the database going away, logged as `database unavailable` and counted
    as a 503 of the stream (portal trial), which alerts would read as an outage."""
    pricing, ingest = system.url("pricing"), system.url("ingest-api")
    before = await stream_answers(http, pricing)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(
        sock, ("127.0.0.1", int(pricing.rsplit(":", 1)[1]))
    )
    reader_, writer = await asyncio.open_connection(sock=sock, limit=4096)
    writer.write(
        f"GET /v1/prices/stream?provider_id={provider['provider_id']} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {reader['token']}\r\n\r\n".encode()
    )
    assert (await reader_.readline()).startswith(b"HTTP/1.1 200")
    stamp = now().isoformat()
    for round_ in range(2):  # 10,000 changes: far more than the two windows hold
        ticks = [
            {"asset_id": f"hang-{round_}-{i}", "amount": "1.5", "currency": "USD", "as_of": stamp}
            for i in range(5000)
        ]
        async with http.post(
            f"{ingest}/v1/prices",
            data=json.dumps({"prices": ticks}),
            headers={**bearer(provider), "Content-Type": "application/json"},
        ) as answer:
            assert answer.status == 202, await answer.text()
    await asyncio.sleep(3)  # applied and fanned out: the stream waits for room to write
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()  # a reset, with the stream's bytes unread
    answers = await eventually(
        lambda: stream_answers(http, pricing),
        lambda found: sum(found.values()) > sum(before.values()),
        timeout=60,
        what="the stream's request answered",
    )
    assert answers.get("503", 0) == before.get("503", 0), answers
    log = system.services["pricing"].log_path.read_text()
    assert "database unavailable" not in log, system.services["pricing"].log_tail()
