"""Consuming event messages: apply, then ack; retry transient failures in place; split a batch
that cannot be applied until each poison event is dead-lettered alone with its reason.

Small messages that wait for a free apply are applied together (group commit): behind a backlog
of single-event messages, one transaction then carries many, instead of each paying the database's
round trips alone. A message whose events cannot be applied fails only itself: its group is
applied again message by message.

A message is acked only after its events were committed (or dead-lettered with a confirm), so a
crash anywhere leads to redelivery, which the appliers' version guards make harmless.

A replica consumes only while its database answers: it starts consuming once the database is
connected, and when applies have failed for want of it for `hand_back_after` seconds, it stops
taking messages, hands the ones it holds back to the queue (for a replica that can apply them)
and consumes again once the database answers. An apply still running after `hand_back_after`
seconds on a database that no longer answers a ping (a partition: nothing fails, nothing comes
back) is cancelled and counts as such a failure since it began (`_watched`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from typing import Final, Generic, Protocol, TypeVar, cast

import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from rwasync.platform import tracing
from rwasync.platform.broker import Broker, field_table
from rwasync.platform.db import DatabaseUnavailable, is_transient
from rwasync.platform.grouping import GroupCommit
from rwasync.platform.metrics import (
    APPLY_SECONDS,
    EVENT_LAG,
    EVENTS_DEAD_LETTERED,
    MESSAGE_EVENTS,
    TRANSIENT_RETRIES,
    observe_each,
    sample_queue_depths,
)
from rwasync.platform.metrics import MESSAGES_CONSUMED as MESSAGES
from rwasync.platform.retry import retrying
from rwasync.platform.tasks import cancel_and_wait
from rwasync.schema import topology
from rwasync.schema.events import EventLike, MalformedMessage
from rwasync.schema.messages import MODEL_DECODER, MessageDecoder, message_for

log = structlog.get_logger(__name__)


E = TypeVar("E", bound="EventLike")
E_contra = TypeVar("E_contra", bound="EventLike", contravariant=True)


class Store(Protocol):
    """What a consumer asks of the database its applier writes to (`Database`)."""

    async def wait_connected(self, timeout: float | None = None) -> None: ...

    async def ping(self, timeout: float = 2.0) -> bool: ...


class Applier(Protocol[E_contra]):
    async def apply(self, events: Sequence[E_contra]) -> None:
        """Apply the events in one transaction, recording their receipts; raise on failure."""

    async def note_dead_lettered(self, events: Sequence[E_contra], reason: str) -> None:
        """Record on the events' receipts why they were dead-lettered (best effort)."""


# At most this many events in one grouped apply unless the service sets its own
# (APPLY_GROUP_EVENTS); a message this large or larger is applied alone.
GROUP_EVENTS: Final = 250
# An apply of fewer events than this first waits up to `linger` for more messages to join it.
LINGER_FILL: Final = 250
# Seconds between samples of the queue's depth and consumers (gauges; shared concurrency).
QUEUE_SAMPLE_SECONDS: Final = 2.0
# Seconds applies may fail for want of the database before the replica hands its messages back
# (the service's HAND_BACK_AFTER), and between checks of the database while it waits.
HAND_BACK_AFTER: Final = 15.0
STORE_CHECK_SECONDS: Final = 1.0


class EventConsumer(Generic[E]):
    def __init__(
        self,
        broker: Broker,
        queue: str,
        applier: Applier[E],
        *,
        prefetch: int = 32,
        decoder: MessageDecoder[E] | None = None,
        concurrency: int = 10,
        linger: float = 0.0,
        group_events: int = GROUP_EVENTS,
        concurrency_shared: bool = False,
        store: Store | None = None,
        hand_back_after: float = HAND_BACK_AFTER,
    ) -> None:
        """`decoder`: how messages become the applier's events (by default, the models).
        `concurrency`: applies under way at once (the service's APPLIES_AT_ONCE); messages
        that arrive while all are busy wait and are applied together, up to `group_events`
        events (the service's APPLY_GROUP_EVENTS). `linger`: seconds an apply of fewer than
        LINGER_FILL events (or of fewer than `group_events`, if smaller) first waits for more
        (`GroupCommit`).

        `concurrency_shared`: `concurrency` is for all the queue's consumers together, each
        taking an equal part of it (at least one), as the queue's consumer count is sampled
        (every QUEUE_SAMPLE_SECONDS). For an applier whose transactions serialise on the same
        locks whichever replica runs them: applies beyond what the database runs at once only
        wait for those locks holding the groups they took, while the messages arriving meanwhile
        wait for the next ones, so every group gets smaller and each event costs more.

        `store`: the applier's database. Given, the consumer starts consuming once it is
        connected, and steps back while it is away: applies failing for want of it for
        `hand_back_after` seconds hand their messages back to the queue, and the consumer takes
        no more until `store.ping()` answers. Without it, a transient failure is retried in
        place for as long as it lasts."""
        self._broker = broker
        self._queue_name = queue
        self._applier = applier
        self._prefetch = prefetch
        self._concurrency = concurrency
        self._concurrency_shared = concurrency_shared
        self._group = GroupCommit(
            self._apply_together,
            max_items=group_events,
            max_concurrent=concurrency,
            alone_after=lambda exc: not is_transient(exc),
            linger=linger,
            fill=min(LINGER_FILL, group_events),
            # Holding its whole prefetch, the consumer gets no more messages until it acks.
            fill_submissions=prefetch,
        )
        # Without a decoder of its own, the applier takes the models (`Applier[Event]`).
        self._decoder = decoder or cast(MessageDecoder[E], MODEL_DECODER)
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._sampling: asyncio.Task[None] | None = None
        self._store = store
        self._hand_back_after = hand_back_after
        self._failing_since: float | None = None  # first transient failure since a success
        self._stepped_back: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._start(), name=f"consume-{self._queue_name}")

    @property
    def applies_at_once(self) -> int:
        """Applies this consumer runs at once now (its part of a shared `concurrency`)."""
        return self._group.max_concurrent

    def is_consuming(self) -> bool:
        return self._consumer_tag is not None and self._broker.is_ready()

    async def _start(self) -> None:
        await self._broker.wait_ready()
        if self._store is not None:
            # Messages taken now would only wait here while other replicas could apply them.
            await self._store.wait_connected()
        channel = await self._broker.connection.channel()
        await channel.set_qos(prefetch_count=self._prefetch)
        queue = await channel.declare_queue(
            self._queue_name,
            durable=True,
            arguments=field_table(topology.work_queue_arguments(self._queue_name)),
        )
        self._channel, self._queue = channel, queue
        if self._concurrency_shared:  # the consumers already there, and this one
            self._share_concurrency(int(queue.declaration_result.consumer_count or 0) + 1)
        self._consumer_tag = await queue.consume(self._on_message)
        log.info(
            "consuming",
            queue=self._queue_name,
            prefetch=self._prefetch,
            applies_at_once=self.applies_at_once,
        )
        self._sampling = asyncio.create_task(
            sample_queue_depths(
                self._broker.queue_depths,
                [self._queue_name, topology.dead_letter_queue(self._queue_name)],
                every=QUEUE_SAMPLE_SECONDS,
                on_sample=self._on_queue_sample if self._concurrency_shared else None,
            ),
            name=f"queue-depth-{self._queue_name}",
        )

    def _on_queue_sample(self, sample: dict[str, tuple[int, int]]) -> None:
        if self._queue_name in sample:
            self._share_concurrency(sample[self._queue_name][1])

    def _share_concurrency(self, consumers: int) -> None:
        """This consumer's part of the applies at once that the queue's consumers share."""
        share = max(1, self._concurrency // max(1, consumers))
        if share != self.applies_at_once:
            self._group.max_concurrent = share
            log.info(
                "applies at once shared", queue=self._queue_name, consumers=consumers, share=share
            )

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        # Each message is handled in a task of its own, so this binding is the message's alone.
        tracing.bind(tracing.message_trace_id(message.headers))
        structlog.contextvars.bind_contextvars(message_id=message.message_id)
        try:
            await self._handle(message)
        except Exception as exc:
            # Neither applied nor dead-lettered (the broker refused the dead letter, say): give
            # the message back after a pause; the broker's delivery limit bounds the loop.
            log.error("message not handled, requeueing", error=str(exc))
            MESSAGES.labels(self._queue_name, "nacked").inc()
            await asyncio.sleep(1)
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        queue = self._queue_name
        try:
            events = list(self._decoder.decode(message.body))
        except MalformedMessage as exc:
            await self._dead_letter_raw(message, f"malformed message: {exc}"[:2000])
            await self._ack(message)
            MESSAGES.labels(queue, "malformed").inc()
            return
        if not tracing.current_trace_id.get() and events[0].trace_id:
            tracing.bind(events[0].trace_id)  # from a publisher that sent no trace header
        MESSAGE_EVENTS.labels(queue).observe(len(events))
        with APPLY_SECONDS.labels(queue).time():
            try:
                await self._apply_splitting(events, _deliveries(message))
            except _Stopping:
                # Left unacked: the broker redelivers it to another consumer or after restart.
                MESSAGES.labels(queue, "requeued").inc()
                return
            except _HandingBack:
                await message.nack(requeue=True)
                MESSAGES.labels(queue, "requeued").inc()
                return
        await self._ack(message)
        MESSAGES.labels(queue, "acked").inc()
        now = datetime.now(UTC)
        observe_each(
            EVENT_LAG.labels(queue),
            [max(0.0, (now - event.accepted_at).total_seconds()) for event in events],
        )
        log.info("message handled", events=len(events), **_message_fields(events))
        if len(events) > 1 and log.bind().is_enabled_for(logging.DEBUG):
            # A batch's line cannot name every asset; at DEBUG each event gets its own (checked
            # once: a batch of thousands would otherwise build thousands of unused lines).
            for event in events:
                log.debug("event handled", **_event_fields(event))

    async def _apply_splitting(self, events: list[E], deliveries: int) -> None:
        try:
            await self._apply_retrying(events)
        except (_Stopping, _HandingBack):
            raise
        except Exception as exc:
            if len(events) > 1:
                middle = len(events) // 2
                await self._apply_splitting(events[:middle], deliveries)
                await self._apply_splitting(events[middle:], deliveries)
                return
            reason = f"{type(exc).__name__}: {exc}"[:2000]
            log.error(
                "event cannot be applied, dead-lettering", **_event_fields(events[0]), reason=reason
            )
            await self._dead_letter(events, reason, deliveries)

    async def _apply_retrying(self, events: list[E]) -> None:
        """Apply; retry transient database errors in place (the message stays unacked) until
        the replica steps back (`_retry_in_place`)."""
        try:
            async for attempt in retrying(
                "apply",
                retry_on=self._retry_in_place,
                initial=0.1,
                on_retry=lambda _: TRANSIENT_RETRIES.labels(self._queue_name).inc(),
            ):
                with attempt:
                    await self._group.submit(events)
        except Exception as exc:
            if is_transient(exc) and self._stopping:
                raise _Stopping from exc
            if is_transient(exc) and self._stepped_back is not None:
                raise _HandingBack from exc
            raise
        self._failing_since = None

    def _retry_in_place(self, exc: BaseException) -> bool:
        """Whether to retry an apply that failed with `exc` where it is: a transient failure,
        unless the service is stopping or the database has been away for `hand_back_after`
        seconds (the replica then steps back)."""
        if not is_transient(exc) or self._stopping:
            return False
        if self._store is None:
            return True
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if self._stepped_back is None and now - self._failing_since >= self._hand_back_after:
            self._stepped_back = asyncio.create_task(
                self._consume_once_the_store_answers(), name=f"step-back-{self._queue_name}"
            )
        return self._stepped_back is None

    async def _consume_once_the_store_answers(self) -> None:
        """Take no more messages (the ones held are handed back as their applies fail) until
        the database answers, then consume again."""
        assert self._store is not None and self._queue is not None
        log.warning(
            "database away: handing messages back to the queue until it answers",
            queue=self._queue_name,
            failing_for=round(time.monotonic() - (self._failing_since or time.monotonic()), 1),
            held=len(self._in_flight),
        )
        tag, self._consumer_tag = self._consumer_tag, None
        if tag is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._queue.cancel(tag), 2)
        async for attempt in retrying(
            "database check before consuming again",
            initial=STORE_CHECK_SECONDS,
            cap=STORE_CHECK_SECONDS * 5,
        ):
            with attempt:
                if not await self._store.ping():
                    raise DatabaseUnavailable("the database does not answer")
        self._failing_since = None
        async for attempt in retrying("consume again", cap=STORE_CHECK_SECONDS * 5):
            with attempt:  # the broker may be away too; its connection recovers by itself
                self._consumer_tag = await self._queue.consume(self._on_message)
        self._stepped_back = None
        log.info("database answers again: consuming", queue=self._queue_name)

    async def _apply_together(self, events: list[E]) -> None:
        """One apply of the events of the messages grouped; an event that two messages carry
        (a publisher's retry) once."""
        unique = {e.event_id: e for e in events}
        apply = self._applier.apply(events if len(unique) == len(events) else list(unique.values()))
        if self._store is None:
            await apply
        else:
            await self._watched(apply, self._store)

    async def _watched(self, apply: Awaitable[None], store: Store) -> None:
        """`apply`, unless the database stops answering while it runs (a partition, its host
        gone: connections stay open and nothing comes back). An apply still running after
        `hand_back_after` seconds is checked on with `store.ping()` (a connection of its own);
        if the database does not answer, the apply is cancelled (its connections are closed and
        the server rolls back) and fails as an outage that began when the apply did, so the
        replica hands its messages back now rather than when the statement's 60 s timeout
        ends it. A slow apply on a database that answers (waiting for locks) goes on."""
        started = time.monotonic()
        task = asyncio.ensure_future(apply)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self._hand_back_after)
                if done:
                    return task.result()
                if not await store.ping():
                    break
        except asyncio.CancelledError:
            await cancel_and_wait(task)
            raise
        await cancel_and_wait(task)
        if task.done() and not task.cancelled():
            return task.result()  # it ended meanwhile (committed, or failed on its own): as is
        if self._failing_since is None or self._failing_since > started:
            self._failing_since = started
        raise DatabaseUnavailable("the database stopped answering during an apply")

    async def _dead_letter(self, events: Sequence[E], reason: str, deliveries: int) -> None:
        headers = self._dead_letter_headers(reason, provider_id=events[0].provider_id)
        headers[topology.HEADER_DELIVERIES] = deliveries
        await self._broker.publish(
            topology.DEAD_LETTER_EXCHANGE,
            topology.dead_letter_queue(self._queue_name),
            message_for([self._decoder.model(e) for e in events]),
            headers=headers,
        )
        EVENTS_DEAD_LETTERED.labels(self._queue_name).inc(len(events))
        try:
            await self._applier.note_dead_lettered(events, reason)
        except Exception as exc:  # the dead letter itself is safe; the receipt note is a courtesy
            log.warning("could not note dead letter on receipts", error=str(exc))

    async def _dead_letter_raw(self, message: AbstractIncomingMessage, reason: str) -> None:
        log.error("malformed message, dead-lettering", message_id=message.message_id, reason=reason)
        await self._broker.publish_body(
            topology.DEAD_LETTER_EXCHANGE,
            topology.dead_letter_queue(self._queue_name),
            message.body,
            message_id=message.message_id or "",
            headers={
                **self._dead_letter_headers(reason, provider_id=None),
                # Dead-lettered on this delivery, as an event that cannot be applied is.
                topology.HEADER_DELIVERIES: _deliveries(message),
            },
        )
        EVENTS_DEAD_LETTERED.labels(self._queue_name).inc()

    def _dead_letter_headers(self, reason: str, *, provider_id: str | None) -> dict[str, object]:
        headers: dict[str, object] = {
            topology.HEADER_REASON: reason,
            topology.HEADER_ORIGIN_QUEUE: self._queue_name,
            topology.HEADER_DEAD_LETTERED_AT: datetime.now(UTC).isoformat(),
        }
        if provider_id is not None:
            headers[topology.HEADER_PROVIDER_ID] = provider_id
        return headers

    async def _ack(self, message: AbstractIncomingMessage) -> None:
        try:
            await message.ack()
        except Exception as exc:  # the channel died: the message comes back, harmlessly
            log.warning("ack failed; message will be redelivered", error=str(exc))

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop taking messages, let in-flight ones finish for up to `timeout` seconds, then close
        the channel: a message still unfinished then goes back to the queue for another replica
        (it was not acked, and its apply is idempotent). Safe to call twice."""
        if self._stopping:
            return
        self._stopping = True
        await cancel_and_wait(self._sampling)
        await cancel_and_wait(self._task)
        await cancel_and_wait(self._stepped_back)
        if self._queue is not None and self._consumer_tag is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._queue.cancel(self._consumer_tag), 2)
        self._consumer_tag = None
        in_flight = list(self._in_flight)
        log.info("consumer stopping", queue=self._queue_name, in_flight=len(in_flight))
        finished, unfinished = (
            await asyncio.wait(in_flight, timeout=timeout) if in_flight else (set(), set())
        )
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._channel.close(), 2)
        log.info(
            "consumer stopped",
            queue=self._queue_name,
            finished=len(finished),
            returned_to_queue=len(unfinished),
        )


def _deliveries(message: AbstractIncomingMessage) -> int:
    """How many times this message has been delivered, this time included (quorum queues count
    the earlier ones in `x-delivery-count`)."""
    earlier = (message.headers or {}).get("x-delivery-count")
    return (earlier if isinstance(earlier, int) else 0) + 1


def _event_fields(event: EventLike) -> dict[str, str]:
    """What a log line about one event names: whose, which asset, which event, which trace."""
    return {
        "provider_id": event.provider_id,
        "asset_id": event.asset_id,
        "event_id": str(event.event_id),
    }


def _message_fields(events: Sequence[EventLike]) -> dict[str, str]:
    """One event's fields; of a batch, those all its events share."""
    if len(events) == 1:
        return _event_fields(events[0])
    providers = {e.provider_id for e in events}
    return {"provider_id": providers.pop()} if len(providers) == 1 else {}


class _Stopping(Exception):
    """Shutting down while a transient failure persists: leave the message unacked."""


class _HandingBack(Exception):
    """The replica has stepped back while the database is away: give the message back."""
