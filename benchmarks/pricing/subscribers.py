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

AS_OF = b'"as_of":"'


async def _subscribe(
    http: aiohttp.ClientSession, url: str, ready: asyncio.Event, stop_at: list[float]
) -> array[float]:
    """Reads the stream in chunks and takes each event's as_of by position (cheaper than
    parsing every line and document: the subscribers must not be the bottleneck)."""
    latencies: array[float] = array("d")
    pending = b""
    async with http.get(url) as response:
        if response.status != 200:
            raise RuntimeError(f"stream answered {response.status}")
        ready.set()
        while not stop_at or time.time() < stop_at[0]:
            try:
                chunk = await asyncio.wait_for(response.content.readany(), 1.0)
            except TimeoutError:
                continue
            if not chunk:
                break
            now = time.time()
            pending += chunk
            start = pending.find(AS_OF)
            while start != -1:
                end = pending.find(b'"', start + len(AS_OF))
                if end == -1:
                    break
                text = pending[start + len(AS_OF) : end].decode()
                latencies.append(now - datetime.fromisoformat(text).timestamp())
                pending = pending[end:]
                start = pending.find(AS_OF)
            if start == -1:
                pending = pending[-len(AS_OF) :]
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
