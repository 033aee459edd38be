"""A small Server-Sent Events reader for tests: events (id, event, data) and comments, as they
arrive on an aiohttp response."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson


@dataclass
class SseEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return orjson.loads(self.data)


class SseReader:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, timeout: float = 20.0) -> SseEvent:
        """The next event (or a block of comments only, as event `comment`)."""
        event = SseEvent()
        data: list[str] = []
        seen = False
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("the stream ended")
                line = raw.decode().rstrip("\r\n")
                if line == "":
                    if not seen:
                        continue
                    event.data = "\n".join(data)
                    if not data and event.comments and event.event == "message":
                        event.event = "comment"
                    return event
                seen = True
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "":
                    event.comments.append(value)
                elif name == "event":
                    event.event = value
                elif name == "data":
                    data.append(value)
                elif name == "id":
                    event.id = value

    async def prices(self, count: int, timeout: float = 30.0) -> list[SseEvent]:
        """The next `count` price events, skipping keep-alives."""
        found: list[SseEvent] = []
        async with asyncio.timeout(timeout):
            while len(found) < count:
                event = await self.next(timeout)
                if event.event != "comment":
                    found.append(event)
        return found
