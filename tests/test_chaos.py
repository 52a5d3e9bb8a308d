"""Chaos on the durable queue, on SQLite and on PostgreSQL: 300 jobs from 30 people, 4 real worker
processes (tests/null_worker.py: the real Worker with a null engine), and during the run 7
SIGKILLs (each worker restarted) and 2 SIGSTOPs longer than the lease. Then: 300 done, 300
delivered, none lost, none delivered twice, and each job's result comes from the attempt that
held it at the end, with its attempts recorded."""

from __future__ import annotations

import asyncio
import collections
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from storage import outbox, queue, users
from storage.db import Database
from storage.tables import Delivery, Job, JobStatus
from tests import postgres_cluster
from tests.conftest import ROOT

JOBS, PEOPLE, WORKERS, KILLS, STOPS = 300, 30, 4, 7, 2
LEASE_SECONDS = 1.0


async def fill(db: Database) -> None:
    async with db.transaction() as session:
        people = [await users.get_or_create(session, "chaos", f"user{i}") for i in range(PEOPLE)]
        for number in range(JOBS):
            await queue.enqueue(
                session, user_id=people[number % PEOPLE].id, platform="chaos", chat_id="c", source_message_id=None,
                kind="txt2img", model="null", batch_key="", params={"n": number}, max_attempts=50,
            )  # fmt: skip


class Workers:
    def __init__(self, url: str, events: Path, log: Path, count: int = WORKERS, job_seconds: float = 0.1, cas: bool = True):
        self.url, self.events, self.log = url, events, open(log, "ab")  # noqa: SIM115 - closed in stop_all
        self.env = {"CHAOS_JOB_SECONDS": str(job_seconds), "CHAOS_LEASE_SECONDS": str(LEASE_SECONDS),
                    "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", **({} if cas else {"CHAOS_NO_CAS": "1"})}  # fmt: skip
        self.procs = [self.start() for _ in range(count)]

    def start(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, str(ROOT / "tests" / "null_worker.py"), self.url, str(self.events)]
        return subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=self.log, stderr=self.log)

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait()
        self.log.close()


async def deliver(db: Database, sends: collections.Counter[int], done: asyncio.Event) -> None:
    """The adapter's side: send what is owed (count each send per job), then record it."""
    while not done.is_set():
        async with db.transaction() as session:
            items = await outbox.pending(session, "chaos", limit=50)
        for delivery, job in items:
            sends[job.id] += 1
            async with db.transaction() as session:
                await outbox.mark_sent(session, delivery.id, f"m{delivery.id}")
        await asyncio.sleep(0.05)


async def chaos(workers: Workers, rng: random.Random) -> tuple[int, int]:
    """KILLS SIGKILLs (restarted at once) and STOPS SIGSTOPs of 1.6 leases, spread over the run."""
    actions = ["kill"] * KILLS + ["stop"] * STOPS
    rng.shuffle(actions)
    kills = stops = 0
    for action in actions:
        await asyncio.sleep(rng.uniform(0.3, 0.8))
        index = rng.randrange(WORKERS)
        proc = workers.procs[index]
        if action == "kill":
            proc.kill()
            proc.wait()
            workers.procs[index] = workers.start()
            kills += 1
        else:
            proc.send_signal(signal.SIGSTOP)
            await asyncio.sleep(1.6 * LEASE_SECONDS)
            proc.send_signal(signal.SIGCONT)
            stops += 1
    return kills, stops


def read_events(events: Path) -> tuple[dict[int, set[tuple[int, str]]], dict[int, list[tuple[int, str]]]]:
    """Per job: the (attempt, owner) of every claim, and of every completion, in order."""
    claimed: dict[int, set[tuple[int, str]]] = collections.defaultdict(set)
    completed: dict[int, list[tuple[int, str]]] = collections.defaultdict(list)
    for line in events.read_text().splitlines() if events.exists() else []:
        what, job_id, attempt, owner = line.split()
        if what == "claimed":
            claimed[int(job_id)].add((int(attempt), owner))
        else:
            completed[int(job_id)].append((int(attempt), owner))
    return claimed, completed


async def status_counts(db: Database) -> collections.Counter[str]:
    async with db.transaction() as session:
        return collections.Counter((await session.execute(select(Job.status))).scalars())


@pytest.mark.timeout(600)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_nothing_is_lost_or_sent_twice_through_kills_and_stops(tmp_path: Path, backend: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'chaos.db'}" if backend == "sqlite" else await postgres_cluster.cluster().new_database()
    db = Database(url)
    await db.migrate()
    await fill(db)
    events = tmp_path / "events"
    workers = Workers(url, events, tmp_path / "workers.log")
    sends: collections.Counter[int] = collections.Counter()
    done = asyncio.Event()
    delivering = asyncio.create_task(deliver(db, sends, done))
    try:
        while not events.exists():  # the workers have started (torch imported) and claim
            await asyncio.sleep(0.1)
        kills, stops = await chaos(workers, random.Random(7))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 240
        while (await status_counts(db))[JobStatus.SUCCEEDED] < JOBS or len(sends) < JOBS:
            assert loop.time() < deadline, f"stuck: {await status_counts(db)}, {len(sends)} delivered"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # a stale worker that was stopped would complete or send again now
    finally:
        done.set()
        await delivering
        workers.stop_all()
    async with db.transaction() as session:
        jobs = list((await session.execute(select(Job))).scalars())
        deliveries = list((await session.execute(select(Delivery))).scalars())
    await db.close()

    assert (kills, stops) == (KILLS, STOPS)
    assert collections.Counter(job.status for job in jobs) == {JobStatus.SUCCEEDED: JOBS}
    assert len(deliveries) == JOBS and all(d.status == "sent" and d.kind == "result" for d in deliveries)
    assert set(sends) == {job.id for job in jobs} and set(sends.values()) == {1}, "lost or sent twice"
    claimed, completed = read_events(events)
    for job in jobs:
        assert job.result is not None and completed[job.id] == [(job.attempt, job.result["by"])], job.id
        assert job.result["attempt"] == job.attempt and (job.attempt, job.result["by"]) in claimed[job.id]
        assert len(claimed[job.id]) <= job.attempt  # every claim counted an attempt
    retried = [job for job in jobs if job.attempt > 1]
    assert retried, "the kills and stops took jobs over"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("cas", [True, False], ids=["with the compare-and-set", "without it"])
async def test_a_stopped_worker_cannot_complete_a_job_taken_over(tmp_path: Path, cas: bool) -> None:
    """Worker A is stopped mid-job past its lease; B takes the job over (attempt 2); A wakes while
    B works. With the queue's compare-and-set on the attempt, A's next write fails and only B
    completes the job. Without it (CHAOS_NO_CAS: the check of this check, and of the chaos test's
    "result from the attempt that held it"), A's stale attempt completes the job."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'stale.db'}"
    db = Database(url)
    await db.migrate()
    async with db.transaction() as session:
        person = await users.get_or_create(session, "chaos", "alice")
        await queue.enqueue(session, user_id=person.id, platform="chaos", chat_id="c", source_message_id=None,
                            kind="txt2img", model="null", batch_key="", params={}, max_attempts=5)  # fmt: skip
    events = tmp_path / "events"
    first = Workers(url, events, tmp_path / "a.log", count=1, job_seconds=3.0, cas=cas)
    second = None
    try:
        while not read_events(events)[0].get(1):
            await asyncio.sleep(0.05)
        [(_, owner_a)] = read_events(events)[0][1]
        first.procs[0].send_signal(signal.SIGSTOP)
        second = Workers(url, events, tmp_path / "b.log", count=1, job_seconds=3.0, cas=cas)
        while len(read_events(events)[0][1]) < 2:  # B reaps the lease and claims attempt 2
            await asyncio.sleep(0.05)
        first.procs[0].send_signal(signal.SIGCONT)
        while not read_events(events)[1].get(1) or (await status_counts(db))[JobStatus.SUCCEEDED] < 1:
            await asyncio.sleep(0.05)
        await asyncio.sleep(3.5)  # B's attempt ends too
    finally:
        first.stop_all()
        if second is not None:
            second.stop_all()
    claimed, completed = read_events(events)
    owner_b = next(owner for attempt, owner in claimed[1] if attempt == 2)
    async with db.transaction() as session:
        job = await session.get(Job, 1)
        deliveries = list((await session.execute(select(Delivery))).scalars())
    await db.close()
    assert len(deliveries) == 1
    if cas:
        assert completed[1] == [(2, owner_b)] and job.result == {"by": owner_b, "attempt": 2}
    else:
        assert completed[1][0] == (1, owner_a) and job.result == {"by": owner_a, "attempt": 1}, "no CAS: the stale attempt wins"
