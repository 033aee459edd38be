"""Libraries' log records (asyncpg's, say, with a traceback) come out in the service's format: in
JSON, each one JSON document on one line."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator

import pytest
import structlog

from rwasync.platform.logging import (
    closed_channel_noise,
    configure_logging,
    pool_floor_without_traceback,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def test_a_library_warning_with_a_traceback_is_one_json_line(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("ingest-api", "INFO", "json")
    try:
        raise ConnectionRefusedError("connect call failed")
    except ConnectionRefusedError:
        logging.getLogger("asyncpg.pool").warning("Pool connection lost", exc_info=True)
    logging.getLogger("asyncpg.pool").info("below the level: not written")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["event"] == "Pool connection lost"
    assert record["logger"] == "asyncpg.pool"
    assert record["level"] == "warning"
    assert record["service"] == "ingest-api"
    assert "ConnectionRefusedError: connect call failed" in record["exception"]
    assert "timestamp" in record


class _Writes:
    """A stream that keeps each write call apart."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_each_line_is_one_write(restored_logging: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two writes a line (the line, then its newline) let the lines of processes sharing one
    pipe run together: 11 % of ingest-api's JSON lines broke with PROCESSES=2 (hostile trial)."""
    stream = _Writes()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("ingest-api", "INFO", "json")
    structlog.get_logger("t").info("one", n=1)
    logging.getLogger("asyncpg.pool").warning("two")
    assert len(stream.writes) == 2, stream.writes
    assert all(w.endswith("\n") and w.count("\n") == 1 for w in stream.writes)


def test_aio_pikas_closed_channel_errors_are_left_out_of_the_log() -> None:
    """Every broker drop came with three `[error]` lines about channels already closed; other
    callback errors still pass."""

    def record(*args: object) -> logging.LogRecord:
        return logging.LogRecord(
            "aio_pika.tools", logging.ERROR, "tools.py", 1, "Callback %r error: %s: %s", args, None
        )

    assert not closed_channel_noise(record("cb", "ChannelInvalidStateError", "closed"))
    assert closed_channel_noise(record("cb", "KeyError", "x"))


def test_asyncpgs_pool_floor_warning_is_one_line() -> None:
    try:
        raise ConnectionRefusedError(111, "Connect call failed")
    except ConnectionRefusedError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "asyncpg.pool", logging.WARNING, "pool.py", 1,
        "Failed to restore the pool connection floor; retrying", None, exc_info,
    )  # fmt: skip
    assert pool_floor_without_traceback(record) and record.exc_info is None
    assert record.getMessage() == (
        "Failed to restore the pool connection floor; retrying "
        "(ConnectionRefusedError: [Errno 111] Connect call failed)"
    )


async def test_a_refused_broker_connect_attempt_logs_no_error_of_aiormqs(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """aiormq logged every failed attempt at `level: error` before raising it to the caller,
    which retries and warns: an outage the service rode out paged on errors (operator trial)."""
    import aiormq

    configure_logging("reconciler", "INFO", "json")
    with pytest.raises(aiormq.exceptions.AMQPConnectionError):
        await aiormq.connect("amqp://guest:guest@127.0.0.1:1/")
    assert capsys.readouterr().err == ""
