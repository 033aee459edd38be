"""Publishing a run's events with backpressure: at most `window` messages await their confirm at
once, and the next waits for a slot, so the run goes at the broker's own pace however large the
feed. There is no fixed timeout per confirm (a big run's last confirm may rightly take longer
than any such limit); the broker counts as unavailable when no confirm at all has come for
`stall_seconds` while messages wait, or when it nacks or drops the connection.

Counts follow confirms: whatever the run reports as created, updated or deleted was confirmed by
the broker, also when the run fails half-way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType

import structlog
from prometheus_client import Counter

from rwasync.platform.broker import Broker, BrokerUnavailable
from rwasync.schema import topology
from rwasync.schema.messages import WireEvent, encode_wire_events

log = structlog.get_logger(__name__)

EVENTS_PUBLISHED = Counter(
    "rwasync_feed_events_published_total", "Events published by feed runs", ["type"]
)


class ConfirmedPublisher:
    """Use as `async with`: leaving it waits for every confirm (or raises BrokerUnavailable)."""

    def __init__(self, broker: Broker, *, window: int, stall_seconds: float) -> None:
        self._broker = broker
        self._slots = asyncio.Semaphore(window)
        self._stall = stall_seconds
        self._tasks: set[asyncio.Task[None]] = set()
        # What stopped a send: the broker, or an error of our own (which must fail the run as
        # surely: a run whose message was never sent must not end `ok`).
        self._failure: Exception | None = None
        self._progress = time.monotonic()

    async def __aenter__(self) -> ConfirmedPublisher:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if error is None:
            await self.drain()
        elif isinstance(error, Exception) and not isinstance(error, BrokerUnavailable):
            # The pass failed on its own: the messages already sent get their confirms first,
            # so that the run's counts say what the broker took.
            try:
                await self.drain()
            except BrokerUnavailable:
                await self._abandon()
        else:  # the broker failed, or the run is being stopped
            await self._abandon()

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        events: list[WireEvent],
        on_confirm: Callable[[list[WireEvent]], None],
    ) -> None:
        """Send one message of `events` once a slot is free; `on_confirm` runs on its confirm."""
        while True:
            self._check()
            try:
                async with asyncio.timeout(1.0):
                    await self._slots.acquire()
                break
            except TimeoutError:
                continue
        if not self._tasks:
            self._progress = time.monotonic()
        message_id, body = encode_wire_events(events)
        task = asyncio.create_task(
            self._send(exchange, routing_key, events, message_id, body, on_confirm)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(
        self,
        exchange: str,
        routing_key: str,
        events: list[WireEvent],
        message_id: str,
        body: bytes,
        on_confirm: Callable[[list[WireEvent]], None],
    ) -> None:
        try:
            await self._broker.publish_body(
                exchange,
                routing_key,
                body,
                message_id=message_id,
                headers={topology.HEADER_EVENT_COUNT: len(events)},
            )
        except Exception as exc:
            self._fail(exc)
            return
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # `_abandon`, or the run being stopped
            # A cancellation from below (the broker client's, of a confirm it gave up on) is an
            # unconfirmed message: it must fail the run, never leave it to end `ok`.
            self._fail(BrokerUnavailable("publish not confirmed: cancelled by the broker client"))
            return
        finally:
            self._slots.release()
        self._progress = time.monotonic()
        try:
            EVENTS_PUBLISHED.labels(str(events[0]["type"])).inc(len(events))
            on_confirm(events)
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        if self._failure is None:
            self._failure = exc

    def _check(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._tasks and time.monotonic() - self._progress > self._stall:
            raise BrokerUnavailable(f"no publisher confirm for {self._stall:g} s")

    async def drain(self) -> None:
        while self._tasks:
            self._check()
            await asyncio.wait(set(self._tasks), timeout=1.0)
        self._check()

    async def _abandon(self) -> None:
        """Stop waiting: unconfirmed messages may or may not arrive (repeats are harmless)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
