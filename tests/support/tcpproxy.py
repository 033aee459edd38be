"""A small TCP proxy for fault tests: put it between a service and Postgres or RabbitMQ, then
cut it (existing connections reset, new ones refused) and restore it, reset its connections
while it keeps listening, hold every byte, or add latency to every chunk, without touching the
shared servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

from yarl import URL

# The port a service URL without one means (yarl knows only the web schemes').
DEFAULT_PORTS: Final = {"postgresql": 5432, "postgres": 5432, "amqp": 5672, "amqps": 5671}


class TcpProxy:
    @classmethod
    async def in_front_of(cls, url: str) -> TcpProxy:
        """A started proxy to the server of a Postgres or RabbitMQ `url`; a service under test is
        given `proxy.through(url)` instead."""
        target = URL(url)
        proxy = cls(target.host or "127.0.0.1", target.port or DEFAULT_PORTS[target.scheme])
        await proxy.start()
        return proxy

    def through(self, url: str) -> str:
        """`url` with this proxy's address (it listens on 127.0.0.1) instead of its server's."""
        return str(URL(url).with_host("127.0.0.1").with_port(self.port))

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._stalled: set[asyncio.Task[None]] = set()
        self.port = 0
        self.latency = 0.0  # seconds added before each chunk is passed on, both directions

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port or self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Stop listening and reset every open connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        self._writers.clear()

    async def restore(self) -> None:
        await self.start(self.port)

    def reset(self) -> int:
        """Reset every open connection (a peer's RST), still accepting new ones; returns how
        many connections were open."""
        writers = list(self._writers)
        for writer in writers:
            writer.transport.abort()
        return len(writers) // 2

    def pause(self) -> None:
        """Hold every byte in both directions (a peer that stops answering, connections open)."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def stall_open_connections(self) -> None:
        """Hold every byte of the connections open now, for good, while new ones flow: what a
        client sees of a server whose network vanished (half-open connections, no reset)."""
        self._stalled.update(self._pipes)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update({writer, upstream_writer})
        for src, dst in ((reader, upstream_writer), (upstream_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                await self._flowing.wait()
                if asyncio.current_task() in self._stalled:
                    await asyncio.Event().wait()  # until the proxy is cut or its loop ends
                if self.latency:
                    await asyncio.sleep(self.latency)
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(dst)
            with contextlib.suppress(Exception):
                dst.transport.abort()


@contextlib.asynccontextmanager
async def proxied(url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    """`TcpProxy.in_front_of(url)` and the URL through it; the proxy is cut on the way out."""
    proxy = await TcpProxy.in_front_of(url)
    try:
        yield proxy, proxy.through(url)
    finally:
        await proxy.cut()
