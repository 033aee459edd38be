"""Failing over between the nodes of a RabbitMQ cluster: the address setting may list several
brokers, comma-separated; `FailoverConnection` is aio-pika's robust connection that moves to the
next address whenever a connect attempt fails or an open connection is lost. `Broker`
(rwasync.platform.broker) opens its connection through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Final

import aio_pika
import structlog
from yarl import URL

log = structlog.get_logger(__name__)


def broker_urls(setting: str) -> list[str]:
    """The broker addresses of an `RWASYNC_AMQP_URL`-style setting: one URL or several,
    comma-separated (surrounding blanks and empty entries ignored)."""
    urls = [part.strip() for part in setting.split(",") if part.strip()]
    if not urls:
        raise ValueError("no broker address given")
    return urls


# The AMQP heartbeat the services ask for, unless an address sets its own (`?heartbeat=N`). A
# broker host that vanishes (power loss, a partition: no reset, no close) is noticed only by
# silence: aiormq gives a connection up after three heartbeat periods (33 s here, 183 s with its
# default of 60), and then the robust connection moves to the next address; RabbitMQ drops a
# vanished client after about two periods and requeues the messages it had not acknowledged.
HEARTBEAT_SECONDS: Final = 10


def with_heartbeat(url: str) -> str:
    """`url` asking for `HEARTBEAT_SECONDS`, unless it names a heartbeat itself."""
    parsed = URL(url)
    if "heartbeat" in parsed.query:
        return url
    return str(parsed.update_query(heartbeat=HEARTBEAT_SECONDS))


def redacted(url: str | URL) -> str:
    """A broker address fit for a log line (no password)."""
    parsed = URL(url)
    return str(parsed.with_password("***") if parsed.password else parsed)


# The robust connection's own connect step (name-mangled in aio-pika 9 and 10): every attempt,
# the first and each reconnect, goes through it.
CONNECT_TRANSPORT = getattr(aio_pika.RobustConnection, "_RobustConnection__connect_transport", None)


class FailoverConnection(aio_pika.RobustConnection):
    """A robust connection over several broker addresses: a failed connect attempt or a lost
    connection moves it to the next address, so its reconnect loop walks the list round-robin.

    Channels, exchanges, queues and consumers are restored by the robust connection on whichever
    node answers; with quorum queues every node of the cluster serves the same queues.
    """

    def __init__(self, urls: Sequence[str], *, start: int = 0, **kwargs: Any) -> None:
        if not urls:
            raise ValueError("no broker address given")
        self._urls = [URL(url) for url in urls]
        self._current = start % len(self._urls)
        super().__init__(self._urls[self._current], **kwargs)

    def rotate(self) -> None:
        """Aim the next connect attempt at the next address (no-op with one address)."""
        if len(self._urls) < 2:
            return
        self._current = (self._current + 1) % len(self._urls)
        self.url = self._urls[self._current]
        log.info("broker failover: next address", url=redacted(self.url))

    async def _RobustConnection__connect_transport(self) -> None:
        assert CONNECT_TRANSPORT is not None
        try:
            await CONNECT_TRANSPORT(self)
        except Exception:
            self.rotate()
            raise

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        if not self._close_called and not self.is_closed:
            self.rotate()  # before the reconnect loop wakes up: reconnect elsewhere at once
        await super()._on_connection_close(closing)
