"""A real worker process with a null engine, for the chaos test (tests/test_chaos.py): the real
`generation.worker.Worker` (claim, lease, heartbeat, cancel, complete with the compare-and-set on
the attempt, the outbox row), whose job "draws" by sleeping `CHAOS_JOB_SECONDS` in steps. It also
reaps expired leases, as every process's periodic work does.

    python tests/support/null_worker.py DATABASE_URL EVENTS_FILE

Each claim and each completion is appended to EVENTS_FILE as `claimed|completed JOB ATTEMPT OWNER`,
and once the worker has connected to the database and is about to claim, `ready 0 0 OWNER` (one
short line per write, so lines from several processes never interleave). It starts in about a
second: `generation.worker` loads no torch, and this engine needs none."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from generation.errors import JobCancelled  # noqa: E402
from generation.worker import Worker, WorkerLimits  # noqa: E402
from storage import queue  # noqa: E402
from storage.blobs import LocalBlobStore  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.results import JobResult  # noqa: E402
from storage.tables import Job  # noqa: E402

JOB_SECONDS = float(os.environ.get("CHAOS_JOB_SECONDS", "0.05"))
# A job on its second or later attempt draws this long (default: as long as a first): the chaos
# test makes it longer, so a worker woken from a SIGSTOP finds its job still being drawn by the
# worker that took it over, which is when only the compare-and-set stops the stale attempt.
RETRY_SECONDS = float(os.environ.get("CHAOS_RETRY_SECONDS", str(JOB_SECONDS)))
STEPS = 20

if os.environ.get("CHAOS_NO_CAS"):  # the check of the check: the queue without its compare-and-set on the attempt
    from sqlalchemy import and_

    from storage.tables import JobStatus

    queue._ours = lambda job_id, attempt, owner: and_(Job.id == job_id, Job.status == JobStatus.RUNNING)  # type: ignore[assignment]


class NullEngine:
    loaded_model = None

    def preload(self, model: str) -> None:
        pass


class NullTask:
    def __init__(self, worker: NullWorker, job: Job):
        self.worker, self.job = worker, job

    def describe(self) -> str:
        return "null job"

    async def prepare(self) -> None:
        self.worker.event("claimed", self.job)

    def work(self, progress: Any, stopping: Any, should_yield: Any) -> None:
        seconds = JOB_SECONDS if self.job.attempt == 1 else RETRY_SECONDS
        for step in range(STEPS):
            time.sleep(seconds / STEPS)
            progress(step + 1, STEPS)
            if stopping():
                raise JobCancelled()

    async def finish(self, produced: None, run_seconds: float) -> None:
        async with self.worker.db.transaction() as session:
            await queue.complete(
                session,
                self.job,
                self.job.attempt,
                owner=self.worker.owner,
                outputs=[],
                run_seconds=run_seconds,
                result=JobResult.from_json({"by": self.worker.owner, "attempt": self.job.attempt}),  # keys of its own: kept as given
            )
        self.worker.event("completed", self.job)


class NullWorker(Worker):
    def __init__(self, db: Database, events: Path, limits: WorkerLimits):
        super().__init__(db, NullEngine(), LocalBlobStore(events.parent / "blobs"), limits)  # type: ignore[arg-type]
        self.events = events

    def _task(self, job: Job) -> NullTask:  # type: ignore[override]
        return NullTask(self, job)

    async def recover_dead_local_jobs(self) -> None:  # the first thing `run` does, on the database
        await super().recover_dead_local_jobs()
        self.event("ready")

    def event(self, what: str, job: Job | None = None) -> None:
        job_id, attempt = (job.id, job.attempt) if job is not None else (0, 0)
        line = f"{what} {job_id} {attempt} {self.owner}\n".encode()
        fd = os.open(self.events, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


async def reap(db: Database, every: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            async with db.transaction() as session:
                await queue.reap_expired(session)
        except Exception:  # noqa: BLE001 - a locked database: next time
            pass
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            pass


async def main(url: str, events: Path) -> None:
    db = Database(url)
    lease = float(os.environ.get("CHAOS_LEASE_SECONDS", "1.0"))
    limits = WorkerLimits(lease_seconds=lease, progress_seconds=0.1, poll_seconds=0.05)
    worker = NullWorker(db, events, limits)
    stop = asyncio.Event()
    reaper = asyncio.create_task(reap(db, lease / 2, stop))
    try:
        await worker.run(stop)
    finally:
        stop.set()
        await reaper
        await db.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
