"""Which database errors the consumer waits out (outages) and which are poison (dead-lettered);
how a broker connect error reads."""

from __future__ import annotations

import aiormq
import asyncpg
import pytest

from rwasync.platform.broker import BrokerUnavailable, connect_error
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
        # A database there but not fit to work for a while (a push trial dead-lettered accepted
        # pushes on the first two): `ALTER DATABASE … ALLOW_CONNECTIONS false` (55000); a primary
        # demoted to a standby, or `default_transaction_read_only` (25006); a password being
        # rotated (28P01); a database not created yet (3D000); a full disk (53100); an I/O error.
        asyncpg.exceptions.ObjectNotInPrerequisiteStateError(
            'database "rwasync" is not currently accepting connections'
        ),
        asyncpg.exceptions.ReadOnlySQLTransactionError(
            "cannot execute INSERT in a read-only transaction"
        ),
        asyncpg.exceptions.InvalidPasswordError('password authentication failed for user "x"'),
        asyncpg.exceptions.InvalidCatalogNameError('database "rwasync" does not exist'),
        asyncpg.exceptions.DiskFullError("could not extend file"),
        asyncpg.exceptions.PostgresIOError("could not read block"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
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
        asyncpg.exceptions.CheckViolationError("violates check constraint"),
        asyncpg.exceptions.UndefinedColumnError("column does not exist"),
        asyncpg.exceptions.InvalidTextRepresentationError("invalid input syntax for type uuid"),
        ValueError("bad payload"),
    ],
)
def test_bad_data_is_not_transient(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_a_refused_opening_is_named_for_an_operator() -> None:
    """aiormq reports a broker refusing to open a connection (an unknown vhost) only as an
    unexpected frame; the services' connect loop and `rwasync status` say what to check."""
    raw = aiormq.exceptions.InvalidFrameError(
        "Expected one of ['Connection.OpenOk'], got <Connection.Close object at 0x7f>"
    )
    named = connect_error(raw)
    assert isinstance(named, BrokerUnavailable) and named.__cause__ is raw
    assert "vhost in the URL does not exist" in str(named)
    other = ConnectionRefusedError()
    assert connect_error(other) is other
