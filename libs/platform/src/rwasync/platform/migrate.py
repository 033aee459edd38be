"""Apply the ordered SQL migrations; creates the database first when it is missing.

Concurrent runs are safe: they serialise on a Postgres advisory lock, and each file is applied in
its own transaction together with its row in `schema_migrations`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import asyncpg
import structlog
from yarl import URL

from rwasync.platform.retry import retrying

log = structlog.get_logger(__name__)

# An arbitrary constant: the advisory lock every `rwasync migrate` takes.
_MIGRATION_LOCK = 0x72776173796E63


@dataclass(frozen=True)
class Migration:
    version: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations() -> list[Migration]:
    folder = resources.files("rwasync.platform.migrations")
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [Migration(f.name.removesuffix(".sql"), f.read_text()) for f in files]


async def ensure_database(dsn: str) -> None:
    """Create the database named in `dsn` if it does not exist (racing creators are fine)."""
    url = URL(dsn)
    name = url.path.lstrip("/")
    if not name:
        return
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return
    admin = await asyncpg.connect(str(url.with_path("/postgres")), timeout=10)
    quoted = name.replace('"', '""')
    try:
        # Concurrent CREATE DATABASE calls contend for template1: wait and try again.
        async for attempt in retrying(
            "create database",
            retry_on=lambda exc: isinstance(exc, asyncpg.ObjectInUseError),
            initial=0.1,
            cap=1.0,
            attempts=20,
        ):
            with attempt:
                try:
                    await admin.execute(f'CREATE DATABASE "{quoted}"')
                    log.info("database created", database=name)
                except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                    pass  # another migrate created it first
    finally:
        await admin.close()


async def migrate(dsn: str) -> list[str]:
    """Apply pending migrations; returns the versions applied by this call."""
    await ensure_database(dsn)
    conn = await asyncpg.connect(dsn, timeout=10)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        for migration in migrations():
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    log.warning("applied migration differs from file", version=migration.version)
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                    migration.version,
                    migration.checksum,
                )
            applied.append(migration.version)
            log.info("migration applied", version=migration.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        await conn.close()
    return applied
