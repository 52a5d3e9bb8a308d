#!/usr/bin/env python3
"""The queue's own speed: claim + complete jobs per second with a null engine, on SQLite and
PostgreSQL, with 1 and 4 worker processes.

Each case queues `--jobs` jobs in a fresh database, starts the worker processes, lets them go
together, and times from the first claim to the last completion. A worker is the real
`generation.worker.Worker` (claim with its lease, the engine thread, the heartbeat task,
complete with the compare-and-set on the attempt and the outbox row, each in its own
transaction) whose job does no work, one job per claim ("one by one": jobs that cannot share a
call) and in batches (compatible jobs: claimed together, completed in one commit with a
savepoint each). The baseline, in the same run, is the queue functions
alone in a loop (`queue.claim` then `queue.complete`, one transaction each): the ratio shows
what the worker's machinery costs on top of the database. On SQLite a second baseline is plain
`sqlite3` (no SQLAlchemy, no aiosqlite) running the same two transactions on the same schema
and pragmas (WAL, synchronous FULL, BEGIN IMMEDIATE): what the database itself allows.

    python bench/queue_throughput.py                                   # SQLite, and PostgreSQL if installed
    python bench/queue_throughput.py --postgres-url postgresql+asyncpg://user@host/db   # your server
    python bench/queue_throughput.py --jobs 5000 --backends sqlite

Without --postgres-url it starts a throwaway cluster (tests/support/postgres_cluster.py) with fsync off,
so its PostgreSQL figures leave out the disk; SQLite's include it (WAL, synchronous FULL).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # the repository, in place of bench/ (as the other benches insert it)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from sqlalchemy import func, select  # noqa: E402

from generation.jobs import Rendered  # noqa: E402
from generation.spec import GenerationSpec  # noqa: E402
from generation.worker import BatchTask, Worker, WorkerLimits  # noqa: E402
from storage import queue, users  # noqa: E402
from storage.blobs import LocalBlobStore  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.tables import Job  # noqa: E402

BATCH = int(os.environ.get("BENCH_BATCH", "8"))  # SDBOT_MAX_BATCH_JOBS of the workers here (--batch)


class NullEngine:
    loaded_model = "tiny"  # as a real worker has one: the claim then orders by model affinity too

    def preload(self, model: str) -> None:
        pass


class NullTask:
    """A job that draws nothing: what is left is the queue and the worker around it."""

    def __init__(self, worker: Worker, job: Job):
        self.worker, self.job = worker, job

    def describe(self) -> str:
        return "null job"

    async def prepare(self) -> None:
        pass

    def work(self, progress: Any, stopping: Any, should_yield: Any) -> None:
        return None

    async def finish(self, produced: None, run_seconds: float) -> None:
        async with self.worker.db.transaction() as session:
            await queue.complete(session, self.job, self.job.attempt, owner=self.worker.owner, outputs=[], run_seconds=run_seconds)


class NullBatch(BatchTask):
    """A batch that draws nothing; claimed and completed by the worker's real batch path."""

    def work(self, progress: Any, stopping: Any, should_yield: Any) -> list[Rendered]:
        return [Rendered([], []) for _ in self.held]


class NullWorker(Worker):
    def _task(self, job: Job) -> NullTask:  # type: ignore[override]
        return NullTask(self, job)

    def _batch_task(self, held, specs):  # type: ignore[no-untyped-def]
        return NullBatch(self, held, specs)


# A valid txt2img job (so the worker's batch path reads it as it reads any), never drawn.
NULL_SPEC = GenerationSpec(kind="txt2img", prompt="null", model="tiny", width=64, height=64, steps=1, cfg=7.0, sampler="Euler", seed=1)


async def fill(url: str, jobs: int, batchable: bool) -> None:
    db = Database(url)
    await db.migrate()
    async with db.transaction() as session:
        people = [await users.get_or_create(session, "bench", f"person{i}") for i in range(30)]
        for number in range(jobs):
            await queue.enqueue(
                session,
                user_id=people[number % 30].id,
                platform="bench",
                chat_id="c",
                source_message_id=None,
                kind="txt2img",
                model="tiny",
                batch_key=NULL_SPEC.batch_key() if batchable else "",
                params=NULL_SPEC.model_dump(mode="json"),
                max_attempts=3,
            )
    await db.close()


async def child(url: str, go: Path, mode: str) -> None:
    """One worker process: wait for the go file, then claim and complete until the queue is empty."""
    db = Database(url)
    blobs = LocalBlobStore(Path(tempfile.mkdtemp(prefix="bench-blobs-")))
    limits = WorkerLimits(lease_seconds=30, progress_seconds=1, poll_seconds=0.05, max_batch_jobs=BATCH, max_batch_images=BATCH)
    worker = NullWorker(db, NullEngine(), blobs, limits)  # type: ignore[arg-type]
    async with db.transaction() as session:  # open the pool's connection before the clock starts
        await queue.queued_count(session)
    while not go.exists():
        await asyncio.sleep(0.005)
    first = time.time()
    if mode in ("worker", "batches"):
        while await worker.run_once():
            pass
    elif mode == "sqlite3":
        plain_sqlite3(url.split("///", 1)[1], worker.owner)
    else:  # the baseline: the queue functions alone
        while True:
            async with db.transaction() as session:
                jobs = await queue.claim(session, worker.owner, 30)
            if not jobs:
                break
            async with db.transaction() as session:
                await queue.complete(session, jobs[0], jobs[0].attempt, worker.owner, outputs=[], run_seconds=0.0)
    last = time.time()
    worker.executor.shutdown()
    await db.close()
    print(json.dumps({"first": first, "last": last}))


def plain_sqlite3(path: str, owner: str) -> None:
    """The claim and the completion as plain sqlite3 transactions: the claim's order and lease,
    the compare-and-set on the attempt with the outbox row, each committed (fsync) on its own."""
    import sqlite3
    from datetime import UTC, datetime, timedelta

    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=ON")
    while True:
        now = datetime.now(UTC).replace(tzinfo=None)
        db.execute("BEGIN IMMEDIATE")
        row = db.execute(
            "SELECT id, attempt, platform, chat_id FROM jobs WHERE status = 'queued' ORDER BY priority DESC, fair_round, id LIMIT 1"
        ).fetchone()
        if row is None:
            db.execute("COMMIT")
            break
        job_id, attempt, platform, chat_id = row
        db.execute(
            "UPDATE jobs SET status = 'running', attempt = ?, lease_owner = ?, lease_expires_at = ?, started_at = ?, "
            "progress_step = 0, progress_total = 0 WHERE id = ?",
            (attempt + 1, owner, now + timedelta(seconds=30), now, job_id),
        )
        db.execute("COMMIT")
        db.execute("BEGIN IMMEDIATE")
        changed = db.execute(
            "UPDATE jobs SET status = 'succeeded', finished_at = ?, updated_at = ?, lease_owner = NULL, lease_expires_at = NULL, "
            "run_seconds = 0, gpu_seconds = 0 WHERE id = ? AND attempt = ? AND lease_owner = ? AND status = 'running'",
            (now, now, job_id, attempt + 1, owner),
        ).rowcount
        assert changed == 1
        db.execute(
            "INSERT INTO deliveries (job_id, platform, chat_id, kind, status, attempts, created_at) VALUES (?, ?, ?, 'result', 'pending', 0, ?)",
            (job_id, platform, chat_id, now),
        )
        db.execute("COMMIT")
    db.close()


async def count_succeeded(url: str) -> int:
    db = Database(url)
    async with db.transaction() as session:
        count = (await session.execute(select(func.count()).where(Job.status == "succeeded"))).scalar_one()
    await db.close()
    return count


def run_case(url: str, jobs: int, processes: int, mode: str) -> float:
    asyncio.run(fill(url, jobs, batchable=mode == "batches"))
    with tempfile.TemporaryDirectory() as temp:
        go = Path(temp) / "go"
        children = [
            subprocess.Popen([sys.executable, __file__, "--child", url, str(go), mode], stdout=subprocess.PIPE, text=True)
            for _ in range(processes)
        ]
        time.sleep(3.0)  # imports and connections, outside the timing
        go.touch()
        reports = [json.loads(c.communicate(timeout=600)[0].strip().splitlines()[-1]) for c in children]
    done = asyncio.run(count_succeeded(url))
    if done != jobs:
        raise SystemExit(f"{mode} with {processes} process(es): {done} of {jobs} jobs done")
    return jobs / (max(r["last"] for r in reports) - min(r["first"] for r in reports))


def database_urls(args: argparse.Namespace, temp: Path):  # type: ignore[no-untyped-def]
    """A fresh database for each case, per backend."""
    counter = iter(range(1000))
    backends = args.backends.split(",")
    if "sqlite" in backends:
        yield "sqlite", lambda: f"sqlite+aiosqlite:///{temp / f'bench{next(counter)}.db'}"
    if "postgresql" in backends:
        if args.postgres_url:
            yield "postgresql", lambda: _fresh_schema(args.postgres_url)
            return
        try:
            from tests.support import postgres_cluster

            cluster = postgres_cluster.cluster()
        except Exception as error:  # noqa: BLE001 - no PostgreSQL here: say so and go on
            print(f"PostgreSQL skipped: {error}")
            return
        yield "postgresql (throwaway, fsync off)", lambda: asyncio.run(cluster.new_database())


def _fresh_schema(url: str) -> str:
    async def reset() -> None:
        db = Database(url)
        async with db.engine.begin() as conn:
            from sqlalchemy import text

            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await db.close()

    asyncio.run(reset())
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", default="1,4", help="worker process counts to measure")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--batch", type=int, default=BATCH, help="jobs per batch in the batched case (default 8)")
    parser.add_argument("--postgres-url", help="a PostgreSQL database to use (its public schema is dropped!)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["BENCH_BATCH"] = str(args.batch)  # for the worker processes
    globals()["BATCH"] = args.batch
    if args.child:
        asyncio.run(child(args.child[0], Path(args.child[1]), args.child[2]))
        return
    rows = []
    with tempfile.TemporaryDirectory() as temp:
        for backend, fresh in database_urls(args, Path(temp)):
            for processes in (int(n) for n in args.workers.split(",")):
                if backend == "sqlite" and processes == 1:
                    plain = run_case(fresh(), args.jobs, 1, "sqlite3")
                    print(f"sqlite, plain sqlite3 (the same two transactions, one process): {plain:,.0f} jobs/s", flush=True)
                    rows.append(("sqlite: plain sqlite3", 1, plain, float("nan"), float("nan")))
                bare = run_case(fresh(), args.jobs, processes, "bare")
                worker = run_case(fresh(), args.jobs, processes, "worker")
                batches = run_case(fresh(), args.jobs, processes, "batches")
                rows.append((backend, processes, bare, worker, batches))
                print(
                    f"{backend}, {processes} worker(s): queue alone {bare:,.0f} jobs/s, worker one by one "
                    f"{worker:,.0f} jobs/s, worker in batches of {BATCH} {batches:,.0f} jobs/s",
                    flush=True,
                )
    try:
        from tests.support import postgres_cluster

        postgres_cluster.stop()
    except Exception:  # noqa: BLE001
        pass
    print(f"\n{args.jobs} jobs per case, null engine, on {os.cpu_count()} CPUs; ratios against the queue alone")
    print(f"{'backend':36} {'workers':>7} {'queue alone':>12} {'worker, one by one':>24} {f'worker, batches of {BATCH}':>24}")
    for backend, processes, bare, worker, batches in rows:
        if worker != worker:  # NaN: the plain sqlite3 baseline has no worker cases
            print(f"{backend:36} {processes:>7} {bare:>10,.0f}/s")
            continue
        print(
            f"{backend:36} {processes:>7} {bare:>10,.0f}/s {worker:>14,.0f}/s {worker / bare:>6.2f}x "
            f"{batches:>14,.0f}/s {batches / bare:>6.2f}x"
        )


if __name__ == "__main__":
    main()
