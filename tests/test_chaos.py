"""Chaos on the durable queue, on SQLite and on PostgreSQL: 300 jobs from 30 people, 4 real worker
processes (tests/null_worker.py: the real Worker with a null engine), and during the run 7
SIGKILLs (each worker restarted) and 2 SIGSTOPs longer than the lease. Then: 300 done, 300
delivered, none lost, none delivered twice, and each job's result comes from the attempt that
held it at the end, with its attempts recorded.

Each SIGSTOP hits a worker in the middle of a job and lasts until another worker has taken that
job over; the worker wakes while the job is drawn again (a retried job draws for a second). That
is the moment only the queue's compare-and-set on the attempt stops the stale worker from
completing the job, and the same chaos without it (CHAOS_NO_CAS) must fail."""

from __future__ import annotations

import asyncio
import collections
import random
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
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
JOB_SECONDS, RETRY_SECONDS = 0.1, 1.0


async def fill(db: Database) -> None:
    async with db.transaction() as session:
        people = [await users.get_or_create(session, "chaos", f"user{i}") for i in range(PEOPLE)]
        for number in range(JOBS):
            await queue.enqueue(
                session, user_id=people[number % PEOPLE].id, platform="chaos", chat_id="c", source_message_id=None,
                kind="txt2img", model="null", batch_key="", params={"n": number}, max_attempts=50,
            )  # fmt: skip


class Workers:
    def __init__(
        self, url: str, events: Path, log: Path, count: int = WORKERS, job_seconds: float = JOB_SECONDS,
        cas: bool = True, retry_seconds: float | None = None,
    ):  # fmt: skip
        self.url, self.events, self.log = url, events, open(log, "ab")  # noqa: SIM115 - closed in stop_all
        self.env = {"CHAOS_JOB_SECONDS": str(job_seconds), "CHAOS_LEASE_SECONDS": str(LEASE_SECONDS),
                    "CHAOS_RETRY_SECONDS": str(retry_seconds if retry_seconds is not None else job_seconds),
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


async def chaos(workers: Workers, rng: random.Random) -> tuple[int, list[float]]:
    """KILLS SIGKILLs (restarted at once) and STOPS targeted SIGSTOPs, spread over the run.
    Returns the kills and how long each stop lasted."""
    actions = ["kill"] * KILLS + ["stop"] * STOPS
    rng.shuffle(actions)
    kills, stops = 0, []
    loop = asyncio.get_running_loop()
    for action in actions:
        await asyncio.sleep(rng.uniform(0.3, 0.8))
        if action == "kill":
            index = rng.randrange(WORKERS)
            proc = workers.procs[index]
            proc.kill()
            proc.wait()
            workers.procs[index] = workers.start()
            kills += 1
            continue
        index, job_id, attempt = await busy_worker(workers, rng)
        proc = workers.procs[index]
        proc.send_signal(signal.SIGSTOP)
        stopped = loop.time()
        for tick in range(int(20 * LEASE_SECONDS / 0.01)):  # until another worker took the job over
            if any(a > attempt for a, _ in read_events(workers.events)[0].get(job_id, ())):
                break
            if tick and tick % int(5 * LEASE_SECONDS / 0.01) == 0:
                # stopped inside a transaction, it holds SQLite's write lock and nobody can take the
                # job over: let it finish that transaction, and stop it again
                proc.send_signal(signal.SIGCONT)
                await asyncio.sleep(0.02)
                proc.send_signal(signal.SIGSTOP)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the new holder is drawing it (for RETRY_SECONDS)
        proc.send_signal(signal.SIGCONT)
        stops.append(loop.time() - stopped)
        await asyncio.sleep(RETRY_SECONDS)  # the woken worker tries to finish its stale attempt, unkilled
    return kills, stops


async def busy_worker(workers: Workers, rng: random.Random) -> tuple[int, int, int]:
    """A worker in the middle of a job: (its index, the job, the attempt it holds)."""
    host = socket.gethostname()
    # Up to 30 s: a worker started in place of a killed one imports torch first, which on a
    # loaded CI machine took longer than the 5 s this waited before (a red run, not a lost job).
    for _ in range(3000):
        claimed: dict[str, tuple[int, int]] = {}
        for line in workers.events.read_text().splitlines():
            what, job_id, attempt, owner = line.split()
            if what == "claimed":
                claimed[owner] = (int(job_id), int(attempt))
            elif claimed.get(owner) == (int(job_id), int(attempt)):
                del claimed[owner]
        running = [(i, *claimed[owner]) for i, proc in enumerate(workers.procs)
                   for owner in claimed if owner.startswith(f"{host}:{proc.pid}:")]  # fmt: skip
        if running:
            return rng.choice(running)
        await asyncio.sleep(0.01)
    raise AssertionError("no worker was drawing a job")


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


@dataclass
class Outcome:
    kills: int
    stops: list[float]
    jobs: list[Job]
    deliveries: list[Delivery]
    sends: collections.Counter[int]
    claimed: dict[int, set[tuple[int, str]]]
    completed: dict[int, list[tuple[int, str]]]


async def run_chaos(url: str, folder: Path, *, cas: bool = True) -> Outcome:
    db = Database(url)
    await db.migrate()
    await fill(db)
    events = folder / "events"
    workers = Workers(url, events, folder / "workers.log", cas=cas, retry_seconds=RETRY_SECONDS)
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
        await asyncio.sleep(RETRY_SECONDS + 0.5)  # a stale worker would complete or send again now
    finally:
        done.set()
        await delivering
        workers.stop_all()
    async with db.transaction() as session:
        jobs = list((await session.execute(select(Job))).scalars())
        deliveries = list((await session.execute(select(Delivery))).scalars())
    await db.close()
    return Outcome(kills, stops, jobs, deliveries, sends, *read_events(events))


def problems(outcome: Outcome) -> list[str]:
    """What went wrong: nothing, when the queue holds its promises."""
    found = []
    if collections.Counter(job.status for job in outcome.jobs) != {JobStatus.SUCCEEDED: JOBS}:
        found.append(f"not all done: {collections.Counter(job.status for job in outcome.jobs)}")
    if len(outcome.deliveries) != JOBS or not all(d.status == "sent" and d.kind == "result" for d in outcome.deliveries):
        found.append("deliveries missing or unsent")
    if set(outcome.sends) != {job.id for job in outcome.jobs} or set(outcome.sends.values()) != {1}:
        found.append("lost or sent twice")
    for job in outcome.jobs:
        held = (job.attempt, (job.result or {}).get("by"))
        if job.result is None or outcome.completed[job.id] != [held] or job.result["attempt"] != job.attempt:
            found.append(f"job {job.id}: completed by {outcome.completed[job.id]}, but attempt {job.attempt} held it")
        elif held not in outcome.claimed[job.id] or len(outcome.claimed[job.id]) > job.attempt:
            found.append(f"job {job.id}: claims {outcome.claimed[job.id]} not counted as attempts ({job.attempt})")
    return found


@pytest.mark.timeout(600)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_nothing_is_lost_or_sent_twice_through_kills_and_stops(tmp_path: Path, backend: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'chaos.db'}" if backend == "sqlite" else await postgres_cluster.cluster().new_database()
    outcome = await run_chaos(url, tmp_path)
    assert outcome.kills == KILLS and len(outcome.stops) == STOPS
    assert all(seconds > LEASE_SECONDS for seconds in outcome.stops), outcome.stops
    assert problems(outcome) == []
    assert [job for job in outcome.jobs if job.attempt > 1], "the kills and stops took jobs over"


@pytest.mark.timeout(600)
async def test_the_chaos_fails_without_the_compare_and_set(tmp_path: Path) -> None:
    """The check of the check: the same chaos, with the queue's compare-and-set on the attempt
    removed (CHAOS_NO_CAS), ends with jobs completed by attempts that no longer held them."""
    outcome = await run_chaos(f"sqlite+aiosqlite:///{tmp_path / 'chaos.db'}", tmp_path, cas=False)
    found = problems(outcome)
    assert any("but attempt" in problem for problem in found), found
    print(f"without the compare-and-set: {len(found)} problem(s), e.g. {found[:2]}")


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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 12 * LEASE_SECONDS
        while len(read_events(events)[0][1]) < 2:  # B reaps the lease and claims attempt 2
            if loop.time() > deadline:
                # A was stopped inside a transaction (its heartbeat's): it holds SQLite's write
                # lock, so B can neither reap nor claim. Let A finish that transaction, stop it again.
                first.procs[0].send_signal(signal.SIGCONT)
                await asyncio.sleep(0.02)
                first.procs[0].send_signal(signal.SIGSTOP)
                deadline = loop.time() + 12 * LEASE_SECONDS
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
