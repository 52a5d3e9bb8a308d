"""The cluster's periodic work, on APScheduler 3, run by one process only: every process
schedules it, and each run does its work only while this process leads (storage/leader.py), so
with many processes on one database each job runs once per interval, not once per process, and
when the leader dies another process takes over within a few seconds.

Today's one job reaps leases: a job whose worker stopped heartbeating goes back to the queue (or
fails after its last attempt).

APScheduler's shutdown cancels running coroutine jobs without awaiting them; a job cancelled
inside a database transaction and left pending hangs the event loop's shutdown. So each run is a
task of ours, shielded from that cancel and awaited in `stop()`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from storage import queue
from storage.db import Database
from storage.leader import Leadership

log = logging.getLogger("sdbot")


class PeriodicWork:
    def __init__(self, db: Database, leadership: Leadership, *, lease_seconds: float, on_requeued: Callable[[], None]):
        self.db = db
        self.leadership = leadership
        self.reap_interval = max(1.0, lease_seconds / 2)
        self.on_requeued = on_requeued  # wake the adapters: a failed job has a message to deliver
        self.scheduler = AsyncIOScheduler()
        self._running: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self.scheduler.add_job(self._run_if_leader, "interval", seconds=self.reap_interval, args=[self.reap_expired_leases], id="reap")
        self.scheduler.start()

    async def stop(self) -> None:
        self.scheduler.shutdown(wait=False)
        await asyncio.gather(*self._running, return_exceptions=True)

    async def _run_if_leader(self, job: Callable[[], Awaitable[None]]) -> None:
        if not self.leadership.is_leader:
            return
        task = asyncio.create_task(job())
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        await asyncio.shield(task)

    async def reap_expired_leases(self) -> None:
        async with self.db.transaction() as session:
            jobs = await queue.reap_expired(session)
        if jobs:
            log.warning("re-queued or failed %d job(s) whose worker stopped: %s", len(jobs), [j.id for j in jobs])
            self.on_requeued()
