"""RabbitMQ through aio-pika: a robust connection opened in the background, the topology declared
idempotently at every start, and publishing that returns only once the broker has confirmed.

The address setting may list several brokers, comma-separated (the nodes of one RabbitMQ
cluster): a process starts at a random one of them, moves to the next whenever a connect attempt
fails or an open connection is lost, and its robust channels declare and consume again on
whichever node it reaches. The work queues are quorum queues, so every node serves them.

Concurrent `publish` calls share one confirm channel, so their confirms are pipelined rather than
waited for one round trip at a time. When the broker blocks the connection (a memory or disk
alarm), publishing fails at once, in flight or not, instead of waiting out the confirm timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from asyncio import FIRST_COMPLETED
from collections.abc import Mapping, Sequence
from typing import Any, Final

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from aio_pika.exceptions import DeliveryError, PublishError
from aiormq.abc import FieldTable

from rwasync.platform import tracing
from rwasync.platform.failover import (
    CONNECT_TRANSPORT,
    FailoverConnection,
    broker_urls,
    with_heartbeat,
)
from rwasync.platform.metrics import MESSAGES_PUBLISHED
from rwasync.platform.retry import retrying
from rwasync.platform.tasks import cancel_and_wait
from rwasync.schema import topology
from rwasync.schema.events import EventMessage
from rwasync.schema.messages import encode_message

log = structlog.get_logger(__name__)


# --- topology, connect errors, blocked connections ------------------------------------------------


def field_table(arguments: Mapping[str, str | int]) -> FieldTable:
    """Queue arguments in the type aio-pika declares them with."""
    table: FieldTable = {key: value for key, value in arguments.items()}
    return table


# aiormq reports a broker that refuses to open the connection after login only as an unexpected
# frame, without the broker's reason: most often an unknown vhost or one the user may not use,
# but also a connection limit reached or a vhost that is down.
OPENING_REFUSED = (
    "the broker refused to open the connection: most likely the vhost in the URL does not exist, "
    "or the user may not use it (rabbitmqctl list_permissions -p VHOST); also a connection limit "
    "reached or a vhost that is down (the broker's log says which)"
)


def connect_error(exc: BaseException) -> BaseException:
    """`exc` as an operator should read it: a refused opening named as such."""
    if isinstance(exc, aiormq.exceptions.InvalidFrameError) and "Connection.Close" in str(exc):
        refused = BrokerUnavailable(OPENING_REFUSED)
        refused.__cause__ = exc
        return refused
    return exc


# Seconds a broker counts as not answering (`Broker.answering`, readiness) after a publish went
# unconfirmed within its timeout, unless one is confirmed sooner.
UNCONFIRMED_NOT_READY_SECONDS: Final = 10.0

LOGIN_REFUSED: Final = (
    "RabbitMQ refused the login: check the user, password and vhost in RWASYNC_AMQP_URL"
)


def _refused_login(exc: BaseException) -> bool:
    """Whether a connect attempt failed for its login (ACCESS_REFUSED: user, password, or a
    vhost the user may not use)."""
    found: BaseException | None = exc
    while found is not None:
        if isinstance(found, aiormq.exceptions.ProbableAuthenticationError):
            return True
        found = found.__cause__ or found.__context__
    return False


class BrokerUnavailable(Exception):
    """The broker did not confirm a publish (down, blocked, nacked or unroutable)."""


async def declare_topology(channel: AbstractChannel) -> dict[str, AbstractExchange]:
    """Declare every exchange and queue rwasync uses; safe to repeat (same arguments each time)."""
    exchanges: dict[str, AbstractExchange] = {}
    dead = await channel.declare_exchange(
        topology.DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
    )
    exchanges[topology.DEAD_LETTER_EXCHANGE] = dead
    exchanges[topology.CHANGES_EXCHANGE] = await channel.declare_exchange(
        topology.CHANGES_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
    )
    for exchange_name, queue_name, pattern in (
        (topology.ASSETS_EXCHANGE, topology.RECONCILER_QUEUE, topology.ASSET_ROUTING_PATTERN),
        (topology.PRICES_EXCHANGE, topology.PRICING_QUEUE, topology.PRICE_ROUTING_PATTERN),
    ):
        exchange = await channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        exchanges[exchange_name] = exchange
        queue = await channel.declare_queue(
            queue_name,
            durable=True,
            arguments=field_table(topology.work_queue_arguments(queue_name)),
        )
        await queue.bind(exchange, routing_key=pattern)
        dlq_name = topology.dead_letter_queue(queue_name)
        dlq = await channel.declare_queue(
            dlq_name, durable=True, arguments=field_table(topology.dead_letter_queue_arguments())
        )
        await dlq.bind(dead, routing_key=dlq_name)
    exchanges[topology.PRICE_CHANGES_EXCHANGE] = await channel.declare_exchange(
        topology.PRICE_CHANGES_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
    )
    return exchanges


class BlockedWatch:
    """Whether the broker has blocked this connection (`connection.blocked`, sent on a memory or
    disk alarm), and a future that resolves the moment it does.

    aiormq handles the blocked/unblocked frames (it advertises the capability) but offers no
    callback, so its two handlers are wrapped on each new underlying connection.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self._blocked: asyncio.Future[str] | None = None

    def blocked(self) -> asyncio.Future[str]:
        """Resolves with the reason when the connection gets blocked (done if it is)."""
        if self._blocked is None:
            self._blocked = asyncio.get_running_loop().create_future()
        return self._blocked

    def watch(self, connection: AbstractRobustConnection) -> None:
        transport = getattr(connection, "transport", None)
        amqp = getattr(transport, "connection", None)
        if amqp is None:
            return
        self._on_unblocked()  # a new connection starts unblocked
        on_blocked = getattr(amqp, "_Connection__handle_connection_blocked", None)
        on_unblocked = getattr(amqp, "_Connection__handle_connection_unblocked", None)
        if on_blocked is None or on_unblocked is None:
            log.error("cannot watch for blocked connections with this aiormq version")
            return

        async def blocked(frame: Any) -> None:
            self._on_blocked(str(getattr(frame, "reason", "") or "resource alarm"))
            await on_blocked(frame)

        async def unblocked(frame: Any) -> None:
            self._on_unblocked()
            await on_unblocked(frame)

        setattr(amqp, "_Connection__handle_connection_blocked", blocked)  # noqa: B010
        setattr(amqp, "_Connection__handle_connection_unblocked", unblocked)  # noqa: B010

    def _on_blocked(self, reason: str) -> None:
        log.warning("broker blocked the connection", reason=reason)
        self.reason = reason
        future = self.blocked()
        if not future.done():
            future.set_result(reason)

    def _on_unblocked(self) -> None:
        if self.reason is not None:
            log.info("broker unblocked the connection")
        self.reason = None
        if self._blocked is not None and self._blocked.done():
            self._blocked = None


# --- the broker: connection, readiness, confirmed publishes ---------------------------------------


class Broker:
    """One robust connection per process, connected in the background until it succeeds, failing
    over between the addresses `url` lists (comma-separated)."""

    def __init__(
        self,
        url: str,
        *,
        publish_timeout: float | None = 5.0,
        name: str = "rwasync",
        first: int | None = None,
    ) -> None:
        """`publish_timeout` bounds the wait for each confirm; None waits as long as the broker
        takes (a bulk publisher then watches for confirms that stop coming). `first` is the
        index of the address to try first; by default a random one."""
        self._urls = [with_heartbeat(u) for u in broker_urls(url)]
        # The address the next first-connect attempt starts from: a random one, so that the
        # processes of a deployment spread their connections over the cluster's nodes.
        self._next = random.randrange(len(self._urls)) if first is None else first % len(self._urls)
        self._publish_timeout = publish_timeout
        self._name = name
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        # Set once RabbitMQ refuses the login: no outage, a setting to fix. A service keeps
        # trying (the password may be put right on the broker's side); a CLI command gives up.
        self._login_refused = asyncio.Event()
        self.blocking = BlockedWatch()
        # When a publish last went unconfirmed within its timeout, with no confirm since.
        self._unconfirmed_at: float | None = None
        self._lost_logged = False  # since the connection was last restored

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect_forever(), name="broker-connect")

    async def wait_ready(
        self, timeout: float | None = None, *, give_up_on_refused_login: bool = False
    ) -> None:
        """Until connected (TimeoutError after `timeout`). `give_up_on_refused_login`: raise
        BrokerUnavailable as soon as RabbitMQ refuses the login, instead of waiting it out (a
        CLI command retried a wrong password for 30 s, then blamed the broker: operator trial)."""
        if not give_up_on_refused_login:
            await asyncio.wait_for(self._ready.wait(), timeout)
            return
        ready = asyncio.ensure_future(self._ready.wait())
        refused = asyncio.ensure_future(self._login_refused.wait())
        try:
            await asyncio.wait({ready, refused}, timeout=timeout, return_when=FIRST_COMPLETED)
        finally:
            ready.cancel()
            refused.cancel()
        if self._ready.is_set():
            return
        if self._login_refused.is_set():
            raise BrokerUnavailable(LOGIN_REFUSED)
        raise TimeoutError

    @property
    def connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise BrokerUnavailable("broker not connected yet")
        return self._connection

    async def _connect_forever(self) -> None:
        if CONNECT_TRANSPORT is None and len(self._urls) > 1:
            log.error("cannot fail over between brokers with this aio-pika version")
        async for attempt in retrying("broker connect"):
            with attempt:
                connection = await self._connect()
                try:
                    channel = await connection.channel(
                        publisher_confirms=True, on_return_raises=True
                    )
                    self._exchanges = await declare_topology(channel)
                except BaseException:
                    await connection.close()
                    raise
        self._connection, self._channel = connection, channel
        self.blocking.watch(connection)
        connection.reconnect_callbacks.add(lambda reconnected: self.blocking.watch(reconnected))
        # The connection's own story, once a drop (aio-pika's are library errors about closed
        # channels, or nothing): lost, then back.
        connection.close_callbacks.add(self._lost)
        connection.reconnect_callbacks.add(self._restored)
        self._ready.set()
        log.info("broker connected, topology declared")

    def _lost(self, _: object, exc: BaseException | None) -> None:
        """A robust connection's close callback: a drop it will recover from is logged, once
        until it is restored (each failed reconnect attempt closes again: a 10 s outage made a
        line a second, fault trial); a close this process asked for (shutting down: no error,
        or a cancellation) is not."""
        if exc is None or isinstance(exc, asyncio.CancelledError) or self._lost_logged:
            return
        self._lost_logged = True
        log.warning("broker connection lost; reconnecting", error=f"{type(exc).__name__}: {exc}")

    def _restored(self, _: object) -> None:
        self._unconfirmed_at = None  # a new connection: its confirms are yet to be seen
        self._lost_logged = False
        log.info("broker connection restored")

    async def _connect(self) -> AbstractRobustConnection:
        """The first connection, tried on the next address each attempt."""
        try:
            return await self._connect_next()
        except Exception as exc:
            if _refused_login(exc):
                if not self._login_refused.is_set():
                    log.error(LOGIN_REFUSED, error=str(exc))  # once: each retry warns
                self._login_refused.set()
            named = connect_error(exc)
            if named is exc:
                raise
            raise named from exc

    async def _connect_next(self) -> AbstractRobustConnection:
        start, self._next = self._next, (self._next + 1) % len(self._urls)
        if CONNECT_TRANSPORT is None:
            return await aio_pika.connect_robust(
                self._urls[start],
                reconnect_interval=1.0,
                timeout=10,
                client_properties={"connection_name": self._name},
            )
        connection = FailoverConnection(
            self._urls,
            start=start,
            reconnect_interval=1.0,
            client_properties={"connection_name": self._name},
        )
        try:
            await connection.connect(timeout=10)
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        return connection

    def is_ready(self) -> bool:
        return (
            self._connection is not None
            and self._channel is not None
            and self._connection.connected.is_set()
            and not self._channel.is_closed
        )

    def answering(self) -> bool:
        """Connected, and not just now failing to confirm: for readiness. A broker that stalls
        (no bytes, no reset) keeps its connection for about three heartbeats (~33 s), in which
        every publish went unconfirmed while `/readyz` said ready (fault trial). Publishes are
        still tried meanwhile (`is_ready` gates them): one confirmed makes it answer again, and
        so does the time passing, so that traffic comes back to try."""
        if not self.is_ready():
            return False
        return (
            self._unconfirmed_at is None
            or time.monotonic() - self._unconfirmed_at > UNCONFIRMED_NOT_READY_SECONDS
        )

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        message: EventMessage,
        *,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        """Publish persistently; return only after the broker's confirm, else BrokerUnavailable.
        The message carries its events' trace in its headers."""
        await self.publish_events(
            exchange,
            routing_key,
            encode_message(message),
            message_id=str(message.message_id),
            events=len(message.events),
            trace_id=message.events[0].trace_id,
            headers=headers,
        )

    async def publish_events(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        events: int,
        trace_id: str,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        """`publish` for a message already encoded (`encode_message`, `encode_wire_events`) of
        `events` events sharing the trace `trace_id`."""
        await self.publish_body(
            exchange,
            routing_key,
            body,
            message_id=message_id,
            headers={
                topology.HEADER_EVENT_COUNT: events,
                **tracing.message_headers(trace_id),
                **(headers or {}),
            },
        )

    async def publish_body(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: Mapping[str, Any] | None = None,
        mandatory: bool = True,
    ) -> None:
        """Publish a body as is; `mandatory=False` where no queue need be bound (the change
        announcements: a consumer binds its own queue). Without a trace in `headers`, the
        message carries the trace of the work in hand."""
        if not self.is_ready():
            MESSAGES_PUBLISHED.labels(exchange, "unavailable").inc()
            raise BrokerUnavailable("broker not connected")
        if self.blocking.reason is not None:
            MESSAGES_PUBLISHED.labels(exchange, "blocked").inc()
            raise BrokerUnavailable(f"broker blocked the connection: {self.blocking.reason}")
        target = self._exchanges[exchange]
        all_headers = dict(headers or {})
        if topology.HEADER_TRACE_ID not in all_headers:
            all_headers.update(tracing.message_headers(tracing.current_trace_id.get()))
        amqp_message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            headers=all_headers,
        )
        publishing = asyncio.ensure_future(
            target.publish(
                amqp_message, routing_key, mandatory=mandatory, timeout=self._publish_timeout
            )
        )
        blocked = self.blocking.blocked()
        try:
            await asyncio.wait((publishing, blocked), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            publishing.cancel()
            raise
        if not publishing.done():
            publishing.cancel()
            MESSAGES_PUBLISHED.labels(exchange, "blocked").inc()
            raise BrokerUnavailable(f"broker blocked the connection: {blocked.result()}")
        if publishing.cancelled():
            # aiormq cancels the confirms it still awaits when the connection closes (a stalled
            # broker's heartbeat runs out): `result()` would raise CancelledError, which slipped
            # past every `except Exception` above us, and a feed run whose every message was
            # lost so ended `ok` (fault trial).
            MESSAGES_PUBLISHED.labels(exchange, "unavailable").inc()
            raise BrokerUnavailable("publish not confirmed: the connection closed first")
        try:
            publishing.result()
        except Exception as exc:  # nack, return, timeout, closed channel: all mean "not confirmed"
            outcome = _unconfirmed(exc)
            if outcome == "timeout":
                self._unconfirmed_at = time.monotonic()
            MESSAGES_PUBLISHED.labels(exchange, outcome).inc()
            raise BrokerUnavailable(f"publish not confirmed: {type(exc).__name__}: {exc}") from exc
        self._unconfirmed_at = None
        MESSAGES_PUBLISHED.labels(exchange, "confirmed").inc()

    async def queue_depths(self, queues: Sequence[str]) -> dict[str, tuple[int, int]]:
        return await queue_depths(self.connection, queues)

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connection.close(), 5)


# --- publish outcomes and queue depths ------------------------------------------------------------


def _unconfirmed(exc: BaseException) -> str:
    """The publish outcome an unconfirmed publish counts as."""
    if isinstance(exc, PublishError):
        return "returned"
    if isinstance(exc, DeliveryError):
        return "nacked"
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    return "unavailable"


async def queue_depths(
    connection: aio_pika.abc.AbstractConnection, queues: Sequence[str]
) -> dict[str, tuple[int, int]]:
    """(messages ready, consumers) of each existing queue, by passive declare on a channel of its
    own (a missing queue closes the channel: it is left out and the channel reopened)."""
    found: dict[str, tuple[int, int]] = {}
    channel = await connection.channel()
    try:
        for name in queues:
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aio_pika.exceptions.ChannelClosed:
                channel = await connection.channel()
                continue
            result = queue.declaration_result
            found[name] = (int(result.message_count or 0), int(result.consumer_count or 0))
    finally:
        with contextlib.suppress(Exception):
            await channel.close()
    return found
