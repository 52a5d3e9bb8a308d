"""One leader among the processes on one database, for the work that must run once per cluster
(reaping expired leases: runtime/periodic.py). Every process competes; one wins and keeps the
lead for as long as it lives; the others try again every few seconds and one of them takes over
when the leader goes.

- PostgreSQL: a session-level `pg_try_advisory_lock` on a dedicated connection. The server drops
  the lock when that connection ends, so a leader that crashes, is killed or loses the network
  hands over without any clean-up of its own. The leader checks its connection at every retry
  (and hears at once when asyncpg sees it close); a lost connection ends its lead. The connection
  must reach PostgreSQL directly or through a session-pooling proxy: with transaction pooling
  (PgBouncer's default mode) session locks are meaningless.
- SQLite: an exclusive `flock` on `<database file>.leader.lock`. The kernel drops it when the
  process dies. The processes must share one machine (as they must for one SQLite file anyway).

Leadership is a lease on being useful, not a fence: a leader cut off from PostgreSQL may believe
it leads for up to one retry interval after the server let another take over. The work it guards
is transactional and idempotent (a reap of a lease that is already reaped finds nothing), so two
leaders for a moment cost nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

LEADER_LOCK = 0x5DB07_0002  # PostgreSQL advisory lock key (storage/db.py's MIGRATION_LOCK is ..._0001)
RETRY_SECONDS = 5.0


class _Lock(Protocol):
    def held(self) -> bool: ...  # cheap, no I/O: still ours as far as we know
    async def try_acquire(self) -> bool: ...
    async def check(self) -> bool: ...  # I/O: is what we hold still held
    async def release(self) -> None: ...


class Leadership:
    """`is_leader` says whether this process leads now. `start()` makes the first attempt at once
    (a lone process leads from its first moment), then keeps trying, or keeps checking, every
    `retry_seconds` until `close()`."""

    def __init__(self, url: str, *, retry_seconds: float = RETRY_SECONDS, key: int = LEADER_LOCK):
        self.retry_seconds = retry_seconds
        self._lock: _Lock = _lock_for(url, key, on_lost=self._wake)
        self._leading = False
        self._wake_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False  # log a failing database once per outage, not at every retry

    @property
    def is_leader(self) -> bool:
        return self._leading and self._lock.held()

    async def start(self) -> None:
        await self._step()
        self._task = asyncio.create_task(self._keep(), name="leadership")

    async def close(self) -> None:
        """Give the lead up (another process takes it at its next retry)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        was_leading = self._leading
        self._leading = False
        await self._lock.release()
        if was_leading:
            log.info("this process gave up the lead (stopping); another process, if any, takes over the periodic work")

    async def _keep(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_event.wait(), self.retry_seconds)
            self._wake_event.clear()
            await self._step()

    async def _step(self) -> None:
        try:
            if self._leading:
                if not self._lock.held() or not await self._lock.check():
                    self._lose("its lock's database connection was lost")
            elif await self._lock.try_acquire():
                self._leading = True
                log.info("this process is now the leader: it runs the periodic work (reaping expired leases)")
            self._failing = False
        except Exception as error:  # a database outage must not stop the retries
            if self._leading:
                self._lose(f"{type(error).__name__}: {error}")
            elif not self._failing:
                log.warning(
                    "cannot reach the database to elect a leader (%s: %s); retrying every %.0f s",
                    type(error).__name__,
                    error,
                    self.retry_seconds,
                )
            self._failing = True
            with contextlib.suppress(Exception):
                await self._lock.release()

    def _lose(self, why: str) -> None:
        self._leading = False
        log.warning("this process is no longer the leader (%s); another process takes over the periodic work", why)

    def _wake(self) -> None:
        self._wake_event.set()


def _lock_for(url: str, key: int, on_lost: Any) -> _Lock:
    parsed = make_url(url)
    if parsed.drivername.startswith("postgresql"):
        return _PostgresLock(parsed.set(drivername="postgresql").render_as_string(hide_password=False), key, on_lost)
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        return _FileLock(Path(f"{parsed.database}.leader.lock"))
    return _AlwaysLeader()  # an in-memory database lives in one process


class _PostgresLock:
    def __init__(self, dsn: str, key: int, on_lost: Any):
        self.dsn = dsn
        self.key = key
        self.on_lost = on_lost
        self.connection: Any = None  # asyncpg.Connection, imported only on PostgreSQL
        self.timeout = 10.0

    def held(self) -> bool:
        return self.connection is not None and not self.connection.is_closed()

    async def try_acquire(self) -> bool:
        if self.connection is None or self.connection.is_closed():
            import asyncpg

            self.connection = await asyncpg.connect(self.dsn, timeout=self.timeout)
            self.connection.add_termination_listener(lambda _connection: self.on_lost())
        return bool(await self.connection.fetchval("SELECT pg_try_advisory_lock($1)", self.key, timeout=self.timeout))

    async def check(self) -> bool:
        return await self.connection.fetchval("SELECT 1", timeout=self.timeout) == 1

    async def release(self) -> None:
        """Close the connection: the server drops the lock with the session. A connection that
        cannot be closed politely is terminated (its socket closed); the server then notices."""
        connection, self.connection = self.connection, None
        if connection is None or connection.is_closed():
            return
        try:
            await asyncio.wait_for(connection.close(), self.timeout)
        except Exception:  # a broken connection cannot close politely
            connection.terminate()


class _FileLock:
    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def held(self) -> bool:
        return self.fd is not None

    async def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for a person wondering who leads
        return True

    async def check(self) -> bool:
        return True  # the kernel holds it for as long as the file stays open

    async def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor drops the flock


class _AlwaysLeader:
    def held(self) -> bool:
        return True

    async def try_acquire(self) -> bool:
        return True

    async def check(self) -> bool:
        return True

    async def release(self) -> None:
        return None
