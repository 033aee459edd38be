"""Stream subscribers in a process of their own (so that parsing their events does not compete
with the pusher's event loop): each reads every price event of the provider and records
now − as_of, the push → SSE latency (the pusher stamps as_of when it pushes)."""

from __future__ import annotations

import asyncio
import time
from array import array
from datetime import datetime
from multiprocessing.connection import Connection

import aiohttp
import orjson


async def _subscribe(
    http: aiohttp.ClientSession, url: str, ready: asyncio.Event, stop_at: list[float]
) -> array[float]:
    latencies: array[float] = array("d")
    async with http.get(url) as response:
        if response.status != 200:
            raise RuntimeError(f"stream answered {response.status}")
        ready.set()
        while not stop_at or time.time() < stop_at[0]:
            try:
                line = await asyncio.wait_for(response.content.readline(), 1.0)
            except TimeoutError:
                continue
            if line.startswith(b"data: "):
                as_of = orjson.loads(line[6:])["as_of"]
                sent = datetime.fromisoformat(as_of.replace("Z", "+00:00")).timestamp()
                latencies.append(time.time() - sent)
    return latencies


async def _run(url: str, count: int, channel: Connection) -> None:
    timeout = aiohttp.ClientTimeout(total=None)
    connector = aiohttp.TCPConnector(limit=count + 1)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        readies = [asyncio.Event() for _ in range(count)]
        stop_at: list[float] = []
        tasks = [asyncio.create_task(_subscribe(http, url, r, stop_at)) for r in readies]
        await asyncio.gather(*(r.wait() for r in readies))
        channel.send("ready")
        stop = await asyncio.to_thread(channel.recv)  # the wall-clock time to stop at
        stop_at.append(float(stop))
        results = await asyncio.gather(*tasks)
    merged = sorted(value for result in results for value in result)
    channel.send(merged)


def run_subscribers(url: str, count: int, channel: Connection) -> None:
    asyncio.run(_run(url, count, channel))
