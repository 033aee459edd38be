"""Dead letters an operator can act on, against real Postgres and RabbitMQ: the consumer's own and
the broker's (the quorum queue's delivery limit), kept as rows, then listed, shown, replayed under
the version guard and purged through the real `rwasync dlq` commands."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest

from rwasync.platform.broker import Broker
from rwasync.platform.consumer import EventConsumer
from rwasync.platform.db import Database
from rwasync.reconciler.apply import AssetApplier
from rwasync.reconciler.dead_letters import DeadLetterKeeper
from rwasync.schema import topology
from rwasync.schema.events import AssetUpserted
from rwasync.schema.messages import (
    MODEL_DECODER,
    MessageDecoder,
    decode_message,
    encode_message,
    message_for,
)
from rwasync.schema.raw_events import ASSET_QUEUE_DECODER
from rwasync.store import dead_letters
from tests.support.events import at, upserted
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

LETTER_KEYS = {
    "message_id",
    "queue",
    "event_ids",
    "provider_id",
    "reason",
    "deliveries",
    "dead_lettered_at",
}


def _dlq_command(database_url: str, amqp_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RWASYNC_")}
    env |= {"RWASYNC_DATABASE_URL": database_url, "RWASYNC_AMQP_URL": amqp_url}
    env["RWASYNC_ENV_FILE"] = os.devnull  # never the developer's .env (make run's)
    return subprocess.run(
        [sys.executable, "-m", "rwasync.cli", "dlq", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def dlq(database_url: str, amqp_url: str, *args: str) -> tuple[int, Any]:
    result = _dlq_command(database_url, amqp_url, *args, "--json")
    return result.returncode, json.loads(result.stdout) if result.stdout.strip() else None


def dlq_table(database_url: str, amqp_url: str) -> str:
    """`rwasync dlq list` as a person reads it (no --json), in a pipe."""
    result = _dlq_command(database_url, amqp_url, "list")
    assert result.returncode == 0, result.stderr
    return result.stdout


async def _receipt(db: Database, event: AssetUpserted) -> tuple[str, str | None] | None:
    row = await db.fetchrow(
        "SELECT status, reason FROM event_receipts WHERE event_id = $1", event.event_id
    )
    return (row["status"], row["reason"]) if row is not None else None


async def _letters(db: Database) -> int:
    return int(await db.fetchval("SELECT count(*) FROM dead_letters"))


@pytest.fixture
async def keeper(db: Database, broker: Broker) -> AsyncIterator[DeadLetterKeeper]:
    keeping = DeadLetterKeeper(db, broker)
    keeping.start()
    yield keeping
    await keeping.stop()


def _reconciling(db: Database, broker: Broker, **options: Any) -> EventConsumer[Any]:
    """A consumer of the asset queue wired as the reconciler's (raw documents)."""
    return EventConsumer(
        broker,
        topology.RECONCILER_QUEUE,
        AssetApplier(db),
        decoder=options.pop("decoder", ASSET_QUEUE_DECODER),
        **options,
    )


@pytest.fixture
async def consumer(db: Database, broker: Broker) -> AsyncIterator[EventConsumer[Any]]:
    consuming = _reconciling(db, broker, prefetch=8)
    consuming.start()
    yield consuming
    await consuming.stop()


def _poison(provider_id: str, asset_id: str) -> AssetUpserted:
    """An event the reconciler can never apply: its document names another asset."""
    good = upserted(provider_id, "other", at(1))
    return good.model_copy(update={"asset_id": asset_id})


async def test_a_poison_event_is_kept_listed_shown_and_purged(
    db: Database,
    database_url: str,
    vhost_amqp_url: str,
    broker: Broker,
    provider_id: str,
    keeper: DeadLetterKeeper,
    consumer: EventConsumer[Any],
) -> None:
    good = [upserted(provider_id, f"a{i}", at(i)) for i in range(4)]
    poison = _poison(provider_id, "bad")
    await broker.publish(
        topology.ASSETS_EXCHANGE, topology.ASSET_BATCH_KEY, message_for([*good, poison])
    )
    await eventually(lambda: _letters(db), lambda n: n == 1, what="dead letter kept")
    for event in good:
        assert await _receipt(db, event) == ("applied", None)
    status, reason = await _receipt(db, poison) or ("", "")
    assert status == "accepted" and reason and "document id differs" in reason

    code, listed = await asyncio.to_thread(dlq, database_url, vhost_amqp_url, "list")
    assert code == 0
    (letter,) = listed["items"]
    assert set(letter) == LETTER_KEYS
    assert letter["queue"] == topology.RECONCILER_QUEUE
    assert letter["event_ids"] == [str(poison.event_id)]
    assert letter["provider_id"] == provider_id
    assert letter["deliveries"] == 1
    assert "document id differs" in letter["reason"]

    code, shown = await asyncio.to_thread(
        dlq, database_url, vhost_amqp_url, "show", letter["message_id"]
    )
    assert code == 0 and shown["body"]["events"][0]["event_id"] == str(poison.event_id)

    code, purged = await asyncio.to_thread(
        dlq, database_url, vhost_amqp_url, "purge", letter["message_id"]
    )
    assert (code, purged) == (0, {"purged": 1})
    assert await _letters(db) == 0
    status, reason = await _receipt(db, poison) or ("", "")
    assert status == "rejected" and reason and "purged" in reason
    code, _ = await asyncio.to_thread(dlq, database_url, vhost_amqp_url, "show", "nope")
    assert code == 1


class CrashingConsumer:
    """A consumer process that crashes (its connection dies, nothing acked) on every delivery of
    one asset's events, and applies everything else with the real applier, one at a time."""

    def __init__(self, url: str, applier: AssetApplier, crash_on: str) -> None:
        self._url = url
        self._applier = applier
        self._crash_on = crash_on
        self.crashes = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            connection = await aio_pika.connect(self._url)
            try:
                channel = await connection.channel()
                await channel.set_qos(prefetch_count=1)
                queue = await channel.get_queue(topology.RECONCILER_QUEUE)
                async with queue.iterator() as messages:
                    async for message in messages:
                        events = decode_message(message.body).events
                        if any(e.asset_id == self._crash_on for e in events):
                            self.crashes += 1
                            break
                        await self._applier.apply(events)
                        await message.ack()
            finally:
                await connection.close()  # the crash: the broker gets the message back

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await self._task


async def test_a_message_that_crashes_its_consumer_every_time_is_dead_lettered_by_the_broker(
    db: Database,
    database_url: str,
    vhost_amqp_url: str,
    broker: Broker,
    provider_id: str,
    keeper: DeadLetterKeeper,
) -> None:
    before = [upserted(provider_id, f"b{i}", at(i)) for i in range(3)]
    crasher = upserted(provider_id, "crasher", at(5))
    after = [upserted(provider_id, f"c{i}", at(i)) for i in range(3)]
    for event in [*before, crasher, *after]:
        await broker.publish(topology.ASSETS_EXCHANGE, "asset.upserted", message_for([event]))
    crashing = CrashingConsumer(vhost_amqp_url, AssetApplier(db), "crasher")
    crashing.start()
    try:
        await eventually(lambda: _letters(db), lambda n: n == 1, timeout=60, what="dead letter")
        for event in [*before, *after]:  # the others flow
            await eventually(lambda e=event: _receipt(db, e), lambda r: r == ("applied", None))
    finally:
        await crashing.stop()
    assert crashing.crashes == topology.DELIVERY_LIMIT + 1

    code, listed = await asyncio.to_thread(dlq, database_url, vhost_amqp_url, "list")
    (letter,) = listed["items"]
    assert letter["event_ids"] == [str(crasher.event_id)]
    assert letter["deliveries"] == topology.DELIVERY_LIMIT + 1
    assert "dead-lettered by the broker (delivery_limit)" in letter["reason"]
    status, reason = await _receipt(db, crasher) or ("", "")
    assert status == "accepted" and reason == letter["reason"]

    # Replayed to a consumer that works, the event is applied under the guard.
    consuming = _reconciling(db, broker)
    consuming.start()
    try:
        code, replayed = await asyncio.to_thread(
            dlq, database_url, vhost_amqp_url, "replay", "--all"
        )
        assert (code, replayed) == (0, {"replayed": 1})
        assert await _letters(db) == 0
        await eventually(lambda: _receipt(db, crasher), lambda r: r == ("applied", None))
    finally:
        await consuming.stop()


async def test_a_replay_of_an_old_event_is_stale_not_a_regression(
    db: Database,
    database_url: str,
    vhost_amqp_url: str,
    broker: Broker,
    provider_id: str,
    keeper: DeadLetterKeeper,
    consumer: EventConsumer[Any],
) -> None:
    old = upserted(provider_id, "a1", at(1), description="old")
    # Dead-lettered as the consumer would, while a newer version got applied meanwhile.
    await broker.publish(
        topology.DEAD_LETTER_EXCHANGE,
        topology.dead_letter_queue(topology.RECONCILER_QUEUE),
        message_for([old]),
        headers={topology.HEADER_REASON: "database was away", topology.HEADER_DELIVERIES: 3},
    )
    newer = upserted(provider_id, "a1", at(2), description="new")
    await AssetApplier(db).apply([newer])
    await eventually(lambda: _letters(db), lambda n: n == 1, what="dead letter kept")
    code, replayed = await asyncio.to_thread(
        dlq, database_url, vhost_amqp_url, "replay", str(old.event_id)
    )
    assert (code, replayed) == (0, {"replayed": 1})
    status = await eventually(
        lambda: _receipt(db, old), lambda r: r is not None and r[0] != "accepted"
    )
    assert status is not None and status[0] == "stale_ignored"
    document = await db.fetchval("SELECT document FROM assets WHERE asset_id = 'a1'")
    assert document["description"] == "new"
    code, _ = await asyncio.to_thread(dlq, database_url, vhost_amqp_url, "replay")
    assert code == 2  # neither an id nor --all: a usage error


async def test_a_replayed_message_dead_lettered_again_before_the_replay_commits_is_kept(
    db: Database, provider_id: str
) -> None:
    """The replay removes its rows in the transaction that publishes them. A reconciler that
    dead-letters the replayed message again before that commit (its consumer is faster than the
    CLI's commit) waits for it and keeps the letter: before, the CLI deleted the row after the
    publish and so dropped the new letter — lost (seen under load in the README's replay test)."""
    poison = _poison(provider_id, "a1")
    letter = dead_letters.dead_letter_from(
        str(poison.event_id),
        message_for([poison]).model_dump_json().encode(),
        {topology.HEADER_REASON: "document id differs"},
        dlq=topology.dead_letter_queue(topology.RECONCILER_QUEUE),
    )
    async with db.pool.acquire() as conn:
        await dead_letters.keep(conn, letter)
    async with db.pool.acquire() as replaying, db.pool.acquire() as reconciler:
        async with replaying.transaction():
            (taken,) = await dead_letters.take_for_replay(replaying, [letter.message_id, "nope"])
            assert taken["message_id"] == letter.message_id
            # ... published, confirmed; the reconciler dead-letters it again meanwhile:
            again = asyncio.create_task(dead_letters.keep(reconciler, letter))
            await asyncio.sleep(0.5)
            assert not again.done()  # waiting for the replay's transaction
        assert await asyncio.wait_for(again, 10) == letter.message_id
    assert await _letters(db) == 1

    # A publish that fails rolls the removal back: the letter stays.
    with pytest.raises(RuntimeError):
        async with db.pool.acquire() as conn, conn.transaction():
            assert len(await dead_letters.take_for_replay(conn, [letter.message_id])) == 1
            raise RuntimeError("publish not confirmed")
    assert await _letters(db) == 1


async def _reasons(db: Database) -> list[str]:
    return [r["reason"] for r in await db.fetch("SELECT reason FROM dead_letters ORDER BY reason")]


DECODERS = pytest.mark.parametrize(
    "decoder", [MODEL_DECODER, ASSET_QUEUE_DECODER], ids=["models", "raw"]
)


@DECODERS
async def test_a_document_postgres_refuses_is_dead_lettered_alone_whichever_the_decoder(
    db: Database,
    broker: Broker,
    provider_id: str,
    keeper: DeadLetterKeeper,
    decoder: MessageDecoder[Any],
) -> None:
    """A NUL (`\\u0000`) in a document: both decoders accept it (so do the models); Postgres'
    jsonb refuses it, so the batch splits and that one event is dead-lettered with the reason,
    the others applied. The raw path hands Postgres the published text, the models' path the
    text orjson writes again: the same escape, the same end."""
    good = [upserted(provider_id, f"n{i}", at(i)) for i in range(3)]
    template = upserted(provider_id, "nul", at(1))
    document = {**template.payload.document, "description": "a \x00 inside"}
    nul = template.model_copy(
        update={"payload": template.payload.model_copy(update={"document": document})}
    )
    consuming = _reconciling(db, broker, decoder=decoder)
    consuming.start()
    try:
        await broker.publish(
            topology.ASSETS_EXCHANGE, topology.ASSET_BATCH_KEY, message_for([*good, nul])
        )
        await eventually(lambda: _letters(db), lambda n: n == 1, what="dead letter kept")
    finally:
        await consuming.stop()
    for event in good:
        assert await _receipt(db, event) == ("applied", None)
    status, reason = await _receipt(db, nul) or ("", "")
    assert status == "accepted"
    assert reason == (
        "UntranslatableCharacterError: unsupported Unicode escape sequence\n"
        "DETAIL:  \\u0000 cannot be converted to text."
    )
    assert await _reasons(db) == [reason]
    assert await db.fetchval("SELECT count(*) FROM assets WHERE asset_id = 'nul'") == 0


@DECODERS
async def test_a_lone_surrogate_makes_the_message_malformed_whichever_the_decoder(
    db: Database,
    broker: Broker,
    provider_id: str,
    keeper: DeadLetterKeeper,
    decoder: MessageDecoder[Any],
) -> None:
    """Postgres would refuse a lone surrogate too, but the models refuse it first: the message is
    dead-lettered whole, as malformed, with pydantic's error, on the raw path as well."""
    events = [upserted(provider_id, f"s{i}", at(i)) for i in range(2)]
    body = encode_message(message_for(events)).replace(b'"status":', b'"x":"\\ud800","status":', 1)
    consuming = _reconciling(db, broker, decoder=decoder)
    consuming.start()
    try:
        await broker.publish_body(
            topology.ASSETS_EXCHANGE, topology.ASSET_BATCH_KEY, body, message_id="surrogate"
        )
        await eventually(lambda: _letters(db), lambda n: n == 1, what="dead letter kept")
    finally:
        await consuming.stop()
    (reason,) = await _reasons(db)
    # jiter's words for a lone surrogate, at the whole message's pointer, and nothing more
    assert reason.startswith(
        "malformed message: 1 validation error for EventMessage: "
        "/: Invalid JSON: unexpected end of hex escape at line 1 column "
    )
    assert "errors.pydantic.dev" not in reason and "input_value" not in reason
    for event in events:
        assert await _receipt(db, event) is None


async def test_a_malformed_message_is_listed_with_a_concise_reason_and_one_delivery(
    db: Database,
    database_url: str,
    vhost_amqp_url: str,
    broker: Broker,
    keeper: DeadLetterKeeper,
    consumer: EventConsumer[Any],
) -> None:
    """`rwasync dlq list` and `show` give a malformed message's delivery count (it was
    dead-lettered on its first delivery) and a reason naming each problem by its pointer, without
    pydantic's documentation links or the input it quotes."""
    body = b'{"message_id": "not-a-uuid", "events": [{"type": "asset.sold"}]}'
    await broker.publish_body(
        topology.ASSETS_EXCHANGE, topology.ASSET_BATCH_KEY, body, message_id="malformed-1"
    )
    await eventually(lambda: _letters(db), lambda n: n == 1, what="dead letter kept")

    code, listed = await asyncio.to_thread(dlq, database_url, vhost_amqp_url, "list")
    assert code == 0
    (letter,) = listed["items"]
    assert letter["deliveries"] == 1
    assert letter["event_ids"] == [] and letter["provider_id"] is None
    reason = letter["reason"]
    assert reason.startswith("malformed message: 2 validation errors for EventMessage: ")
    assert "/message_id: " in reason and "/events/0" in reason
    assert "errors.pydantic.dev" not in reason and "For further information" not in reason
    assert "input_value" not in reason and "\n" not in reason

    code, shown = await asyncio.to_thread(dlq, database_url, vhost_amqp_url, "show", "malformed-1")
    assert code == 0
    assert shown["deliveries"] == 1 and shown["reason"] == reason
    assert shown["headers"][topology.HEADER_DELIVERIES] == 1

    # The table, in a pipe (80 columns): a UUID message id and the queue, counts and reason
    # whole (six columns beside a 36-character id left them `rwa…`, `re…`).
    uuid_id = "0192f6c1-7c4e-7d5a-9f0e-3c1a2b4d5e6f"
    await broker.publish_body(
        topology.ASSETS_EXCHANGE, topology.ASSET_BATCH_KEY, body, message_id=uuid_id
    )
    await eventually(lambda: _letters(db), lambda n: n == 2, what="second dead letter kept")
    table = await asyncio.to_thread(dlq_table, database_url, vhost_amqp_url)
    assert all(len(line) <= 80 for line in table.splitlines()), table
    words = table.split()
    for word in (uuid_id, "malformed-1", topology.RECONCILER_QUEUE, "events=0", "deliveries=1"):
        assert word in words, (word, table)
    assert f"{uuid_id}: malformed message: 2 validation errors" in " ".join(words), table


def test_a_dead_letter_nothing_counted_was_delivered_once() -> None:
    """A malformed message dead-lettered by a consumer older than its deliveries header carries
    no count at all: it was dead-lettered on a delivery, so one, never None."""
    letter = dead_letters.dead_letter_from(
        "old-1",
        b"not json",
        {topology.HEADER_REASON: "malformed message: …", topology.HEADER_ORIGIN_QUEUE: "q"},
        dlq="q.dlq",
    )
    assert letter.deliveries == 1
