"""The database: an async SQLAlchemy engine, transactions, and migrations at start-up.

SQLite (the default) runs in WAL mode with foreign keys on and a busy timeout, and every
transaction starts with BEGIN IMMEDIATE: the writer lock is taken up front, so two processes
(a bot and a worker, or a restarted bot) never fail a read-then-write with "database is locked".
Our transactions are short, so serialising writers costs nothing we can measure. PostgreSQL
(asyncpg) uses its own defaults; the claim there relies on FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATION_LOCK = 0x5DB07_0001  # PostgreSQL advisory lock key: one process migrates at a time
DEADLOCK_DETECTED = "40P01"  # PostgreSQL's SQLSTATE for the transaction it rolled back to break a deadlock

T = TypeVar("T")


class Database:
    def __init__(self, url: str):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            _ensure_sqlite_dir(url)
            self.engine: AsyncEngine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
            _configure_sqlite(self.engine)
        else:
            self.engine = create_async_engine(url, pool_pre_ping=True)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits on success, rolls back on any exception."""
        async with self._sessions() as session, session.begin():
            yield session

    async def retrying_deadlocks(self, work: Callable[[AsyncSession], Awaitable[T]], tries: int = 3) -> T:
        """`work` in a transaction of its own, run again when PostgreSQL rolled it back to break a
        deadlock (everything it wrote was undone, so running it again is safe). For work that locks
        rows it learns of only as it goes, and so cannot lock them in one fixed order."""
        for attempt in range(1, tries + 1):
            try:
                async with self.transaction() as session:
                    return await work(session)
            except DBAPIError as error:
                if attempt == tries or getattr(error.orig, "sqlstate", None) != DEADLOCK_DETECTED:
                    raise
        raise AssertionError("unreachable: the last try returns or raises")

    async def migrate(self) -> None:
        """Bring the schema to the newest alembic revision (idempotent). Processes starting together
        take turns: on SQLite the BEGIN IMMEDIATE does it; on PostgreSQL a transaction-level
        advisory lock (DDL there is transactional, so the second process then finds the schema at
        head and does nothing, instead of racing to create the same tables)."""
        async with self.engine.begin() as conn:
            if not self.is_sqlite:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            await conn.run_sync(_upgrade)

    async def close(self) -> None:
        await self.engine.dispose()


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split("///", 1)[-1].split("?", 1)[0]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite(engine: AsyncEngine) -> None:
    # The pattern from SQLAlchemy's SQLite docs ("Serializable isolation / Savepoints /
    # Transactional DDL"): turn off the driver's own BEGIN handling and emit ours.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
