"""Which database errors the consumer waits out (outages) and which are poison (dead-lettered)."""

from __future__ import annotations

import asyncpg
import pytest

from rwasync.platform.db import DatabaseUnavailable, is_transient

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "exc",
    [
        DatabaseUnavailable("not yet"),
        ConnectionRefusedError(),
        TimeoutError(),
        asyncpg.exceptions.ConnectionDoesNotExistError("gone"),
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.exceptions.SerializationError("race"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock"),
        asyncpg.exceptions.AdminShutdownError("shutdown"),
        asyncpg.exceptions.LockNotAvailableError("canceling statement due to lock timeout"),
        asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.exceptions.CrashShutdownError("terminating connection: crash of another process"),
        asyncpg.exceptions._base.InternalClientError(
            "cannot switch to state 15; another operation (2) is in progress"
        ),
    ],
)
def test_outages_and_lost_races_are_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions._base.DataError("invalid input for query argument $1"),
        asyncpg.exceptions.StringDataRightTruncationError("value too long"),
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        ValueError("bad payload"),
    ],
)
def test_bad_data_is_not_transient(exc: BaseException) -> None:
    assert not is_transient(exc)
