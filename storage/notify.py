"""Waking workers across processes: on PostgreSQL, a job queued (or queued again) sends
`NOTIFY sdbot_jobs` in its transaction, delivered when it commits, and every worker LISTENs, so
a worker on another machine starts a job at once instead of at its next poll. Polling stays as
the fallback (a lost connection, a notification missed while reconnecting). On SQLite both are
no-ops: the processes there share a file and poll it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger(__name__)

JOBS_CHANNEL = "sdbot_jobs"
RECONNECT_SECONDS = 2.0


async def jobs_queued(session: AsyncSession) -> None:
    """Say, when this transaction commits, that there are jobs to claim."""
    if session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": JOBS_CHANNEL})


async def listen(url: str, on_notify: Callable[[], None], stop: asyncio.Event, channel: str = JOBS_CHANNEL) -> None:
    """Call `on_notify` for every notification on `channel` until `stop` is set, reconnecting
    after a lost connection. Returns at once for a database that is not PostgreSQL."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql"):
        return
    import asyncpg

    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    while not stop.is_set():
        connection = None
        try:
            connection = await asyncpg.connect(dsn)
            await connection.add_listener(channel, lambda *_: on_notify())
            while not stop.is_set() and not connection.is_closed():
                try:
                    await asyncio.wait_for(stop.wait(), RECONNECT_SECONDS)
                except TimeoutError:
                    pass
        except (OSError, asyncpg.PostgresError) as error:
            log.warning("listening for new jobs failed (%s); polling until it reconnects", error)
            try:
                await asyncio.wait_for(stop.wait(), RECONNECT_SECONDS)
            except TimeoutError:
                pass
        finally:
            if connection is not None and not connection.is_closed():
                await connection.close()
