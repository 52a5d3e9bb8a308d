"""Chaos on the durable queue, on SQLite and on PostgreSQL: 300 jobs from 30 people, 4 real worker
processes (tests/support/null_worker.py: the real Worker with a null engine), and during the run 7
SIGKILLs (each worker restarted) and 2 SIGSTOPs until another worker takes the job over. Then: 300 done, 300
delivered, none lost, none delivered twice, and each job's result comes from the attempt that
held it at the end, with its attempts recorded.

The chaos starts once all four workers are connected (each writes `ready`), each killed worker's
replacement is waited for the same way, and the actions are paced by jobs done, not by time: a
SIGSTOP always finds a job mid-draw and ready workers to take it over, however fast or loaded the
machine. Each SIGSTOP hits a ready worker in the middle of a job and lasts until another worker has
taken that job over (its lease ran out); the worker wakes while the job is drawn again (a retried
job draws for a second). That is the moment only the queue's compare-and-set on the attempt stops
the stale worker from completing the job, and the same chaos without it (CHAOS_NO_CAS) must fail.
A stop that did not hand its job over (nobody took it, or somebody already had) checked nothing:
it is not counted, and another is made."""

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
from tests.conftest import ROOT
from tests.support import postgres_cluster

JOBS, PEOPLE, WORKERS, KILLS, STOPS = 300, 30, 4, 7, 2
LEASE_SECONDS = 1.0
JOB_SECONDS, RETRY_SECONDS = 0.1, 1.0
STALE_SECONDS = 3.0  # test_a_stopped_worker_…: how long attempt 1 draws (a retry: twice that)
NUDGE_SECONDS = 3 * LEASE_SECONDS  # B has not taken the job over this long after A's lease ran out: nudge A
QUIET_SECONDS = 120  # no job done (nor a worker ready) this long: stuck, even on a machine loaded to a crawl


async def fill(db: Database) -> None:
    async with db.transaction() as session:
        people = [await users.get_or_create(session, "chaos", f"user{i}") for i in range(PEOPLE)]
        for number in range(JOBS):
            await queue.enqueue(
                session,
                user_id=people[number % PEOPLE].id,
                platform="chaos",
                chat_id="c",
                source_message_id=None,
                kind="txt2img",
                model="null",
                batch_key="",
                params={"n": number},
                max_attempts=50,
            )


class Workers:
    def __init__(
        self,
        url: str,
        events: Path,
        log: Path,
        count: int = WORKERS,
        job_seconds: float = JOB_SECONDS,
        cas: bool = True,
        retry_seconds: float | None = None,
    ):
        self.url, self.events, self.log = url, events, open(log, "ab")  # noqa: SIM115 - closed in stop_all
        self.env = {
            "CHAOS_JOB_SECONDS": str(job_seconds),
            "CHAOS_LEASE_SECONDS": str(LEASE_SECONDS),
            "CHAOS_RETRY_SECONDS": str(retry_seconds if retry_seconds is not None else job_seconds),
            "HF_HUB_OFFLINE": "1",
            "PATH": "/usr/bin:/bin",
            **({} if cas else {"CHAOS_NO_CAS": "1"}),
        }
        self.procs = [self.start() for _ in range(count)]

    def start(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, str(ROOT / "tests" / "support" / "null_worker.py"), self.url, str(self.events)]
        return subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=self.log, stderr=self.log)

    def owners(self) -> list[str | None]:
        """Per worker: the owner id it wrote with `ready` (connected, about to claim), or None."""
        host = socket.gethostname()
        ready = {owner for what, _, _, owner in read_lines(self.events) if what == "ready"}
        return [next((owner for owner in ready if owner.startswith(f"{host}:{proc.pid}:")), None) for proc in self.procs]

    async def ready(self, seconds: float = QUIET_SECONDS) -> None:
        """Until every worker is ready: a worker starts in about a second (no torch), far longer on
        a loaded machine, and a chaos that outran the starts stopped workers nobody could replace."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while None in self.owners():
            exited = [proc.pid for proc in self.procs if proc.poll() is not None]
            assert not exited, f"worker(s) {exited} exited before they were ready; see {self.log.name}"
            assert loop.time() < deadline, f"workers not ready after {seconds} s: {self.owners()}; see {self.log.name}"
            await asyncio.sleep(0.02)

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


async def chaos(workers: Workers, rng: random.Random) -> tuple[list[str], list[float]]:
    """KILLS SIGKILLs (each worker restarted at once, and waited for until ready) and STOPS targeted
    SIGSTOPs, spread over the first half or so of the jobs: paced by jobs completed rather than by
    time, so that however fast this machine draws, jobs are left for the stops to catch mid-job.
    Returns the owners killed and how long each stop that handed its job over lasted."""
    actions = ["kill"] * KILLS + ["stop"] * STOPS
    rng.shuffle(actions)
    killed, stops, due = [], [], 0
    for action in actions:
        due += rng.randint(8, 24)  # about 16 jobs apart: 9 actions over the first ~150 of 300
        await until_completed(workers, due)
        if action == "kill":
            index = rng.randrange(WORKERS)
            owner = workers.owners()[index]
            assert owner is not None  # every worker is ready between actions
            workers.procs[index].kill()
            workers.procs[index].wait()
            workers.procs[index] = workers.start()
            killed.append(owner)
            await workers.ready()
            continue
        for _ in range(5):  # a stop that was not the one to hand its job over checked nothing: another
            index, job_id, attempt = await busy_worker(workers, rng)
            seconds = await stop_until_taken_over(workers, index, job_id, attempt)
            if seconds is not None:
                stops.append(seconds)
                await asyncio.sleep(RETRY_SECONDS)  # the woken worker tries to finish its stale attempt, unkilled
                break
    return killed, stops


async def until_completed(workers: Workers, count: int) -> None:
    """Until `count` jobs have been completed; fails when none was for QUIET_SECONDS."""
    loop = asyncio.get_running_loop()
    seen, since = -1, loop.time()
    while (completed := sum(what == "completed" for what, *_ in read_lines(workers.events))) < count:
        if completed != seen:
            seen, since = completed, loop.time()
        assert loop.time() - since < QUIET_SECONDS, f"stuck at {completed} jobs completed; see {workers.log.name}"
        await asyncio.sleep(0.02)


async def stop_until_taken_over(workers: Workers, index: int, job_id: int, attempt: int) -> float | None:
    """SIGSTOP a worker drawing `attempt` of a job until another worker has claimed a later attempt,
    then SIGCONT it while the new holder draws. Returns how long it was stopped, or None when the
    stop did not hand the job over: somebody already had (its lease ran out on a loaded machine),
    the worker had finished the job before the stop landed (or had committed it but not yet written
    its line: the first nudge shows it), or nobody took it over in a minute."""
    proc, owner, events = workers.procs[index], workers.owners()[index], workers.events

    def taken_over() -> bool:
        return any(a > attempt for a, _ in read_events(events)[0].get(job_id, ()))

    def holds() -> bool:
        return drawing(read_lines(events)).get(owner) == (job_id, attempt)

    loop = asyncio.get_running_loop()
    proc.send_signal(signal.SIGSTOP)
    stopped = nudged = loop.time()
    if taken_over():
        proc.send_signal(signal.SIGCONT)
        return None
    while holds() and loop.time() - stopped < 60 * LEASE_SECONDS:
        if taken_over():
            await asyncio.sleep(0.05)  # the new holder is drawing it (for RETRY_SECONDS)
            proc.send_signal(signal.SIGCONT)
            return loop.time() - stopped
        if loop.time() - nudged > 5 * LEASE_SECONDS:  # timed by the clock: a loaded machine slows the turns
            # stopped inside a transaction, it holds SQLite's write lock and nobody can take the job
            # over (nor write at all: past the 30 s busy timeout, the delivery loop here would fail):
            # let it finish that transaction, and stop it again
            proc.send_signal(signal.SIGCONT)
            await asyncio.sleep(0.1)
            proc.send_signal(signal.SIGSTOP)
            nudged = loop.time()
        await asyncio.sleep(0.01)
    proc.send_signal(signal.SIGCONT)
    return None


async def busy_worker(workers: Workers, rng: random.Random) -> tuple[int, int, int]:
    """A ready worker in the middle of a job, the job's latest attempt, while another ready worker
    can take that job over: (its index, the job, the attempt it holds)."""
    for _ in range(3000):  # all four are ready and jobs are left: one is drawing within moments
        lines = read_lines(workers.events)
        latest: dict[int, int] = collections.defaultdict(int)  # per job, the latest attempt claimed
        for what, job_id, attempt, _ in lines:
            if what == "claimed":
                latest[job_id] = max(latest[job_id], attempt)
        claimed = {owner: held for owner, held in drawing(lines).items() if held[1] == latest[held[0]]}
        owners = workers.owners()
        running = [(i, *claimed[owner]) for i, owner in enumerate(owners) if owner in claimed]
        if running and len(owners) - owners.count(None) >= 2:
            return rng.choice(running)
        await asyncio.sleep(0.01)
    raise AssertionError(f"no ready worker was drawing a job (ready: {workers.owners()})")


def read_lines(events: Path) -> list[tuple[str, int, int, str]]:
    """The events file's complete lines: (claimed | completed | ready, job, attempt, owner).

    The workers append to the file while this reads it (every 10 ms, `stop_until_taken_over`):
    a line being written may be read in part, without its newline. That fragment is left for the
    next read, which sees it whole; every complete line ends with a newline."""
    lines = []
    text = events.read_text() if events.exists() else ""
    for line in text.split("\n")[:-1]:  # the last piece is "" or a line still being written
        what, job_id, attempt, owner = line.split()
        lines.append((what, int(job_id), int(attempt), owner))
    return lines


def drawing(lines: list[tuple[str, int, int, str]]) -> dict[str, tuple[int, int]]:
    """Per owner whose last line is a claim: that (job, attempt), which it has not completed."""
    last = {owner: (what, job_id, attempt) for what, job_id, attempt, owner in lines}
    return {owner: (job_id, attempt) for owner, (what, job_id, attempt) in last.items() if what == "claimed"}


def read_events(events: Path) -> tuple[dict[int, set[tuple[int, str]]], dict[int, list[tuple[int, str]]]]:
    """Per job: the (attempt, owner) of every claim, and of every completion, in order."""
    claimed: dict[int, set[tuple[int, str]]] = collections.defaultdict(set)
    completed: dict[int, list[tuple[int, str]]] = collections.defaultdict(list)
    for what, job_id, attempt, owner in read_lines(events):
        if what == "claimed":
            claimed[job_id].add((attempt, owner))
        elif what == "completed":
            completed[job_id].append((attempt, owner))
    return claimed, completed


async def status_counts(db: Database) -> collections.Counter[str]:
    async with db.transaction() as session:
        return collections.Counter((await session.execute(select(Job.status))).scalars())


@dataclass
class Outcome:
    killed: list[str]  # the owner ids of the workers killed
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
        await workers.ready()
        killed, stops = await chaos(workers, random.Random(7))
        loop = asyncio.get_running_loop()
        progress, since = (0, 0), loop.time()
        while (now := ((await status_counts(db))[JobStatus.SUCCEEDED], len(sends))) != (JOBS, JOBS):
            if now != progress:
                progress, since = now, loop.time()
            assert loop.time() - since < QUIET_SECONDS, f"stuck: {await status_counts(db)}, {len(sends)} delivered"
            await asyncio.sleep(0.2)
        await asyncio.sleep(RETRY_SECONDS + 0.5)  # a stale worker would complete or send again now
    finally:
        done.set()
        try:
            await delivering
        finally:
            workers.stop_all()  # even when delivering failed: else four workers outlive the test
    async with db.transaction() as session:
        jobs = list((await session.execute(select(Job))).scalars())
        deliveries = list((await session.execute(select(Delivery))).scalars())
    await db.close()
    return Outcome(killed, stops, jobs, deliveries, sends, *read_events(events))


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
        # a worker killed between its completion's commit and its `completed` line wrote no line
        lines = [[held], []] if held[1] in outcome.killed else [[held]]
        if job.result is None or outcome.completed[job.id] not in lines or job.result["attempt"] != job.attempt:
            found.append(f"job {job.id}: completed by {outcome.completed[job.id]}, but attempt {job.attempt} held it")
        elif held not in outcome.claimed[job.id] or len(outcome.claimed[job.id]) > job.attempt:
            found.append(f"job {job.id}: claims {outcome.claimed[job.id]} not counted as attempts ({job.attempt})")
    return found


@pytest.mark.timeout(600)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_nothing_is_lost_or_sent_twice_through_kills_and_stops(tmp_path: Path, backend: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'chaos.db'}" if backend == "sqlite" else await postgres_cluster.cluster().new_database()
    outcome = await run_chaos(url, tmp_path)
    assert len(outcome.killed) == KILLS
    assert len(outcome.stops) == STOPS, f"only {len(outcome.stops)} of {STOPS} stops handed a job over"
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
    "result from the attempt that held it"), A's stale attempt completes the job: A's attempt draws
    for STALE_SECONDS, B's for twice as long, so A, woken when B claims, ends first however the
    two are scheduled (with equal times who ended first was a coin flip: it failed 1 run in 8)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'stale.db'}"
    db = Database(url)
    await db.migrate()
    async with db.transaction() as session:
        person = await users.get_or_create(session, "chaos", "alice")
        await queue.enqueue(
            session,
            user_id=person.id,
            platform="chaos",
            chat_id="c",
            source_message_id=None,
            kind="txt2img",
            model="null",
            batch_key="",
            params={},
            max_attempts=5,
        )
    events = tmp_path / "events"
    first = Workers(url, events, tmp_path / "a.log", count=1, job_seconds=STALE_SECONDS, cas=cas, retry_seconds=2 * STALE_SECONDS)
    second = None
    try:
        while not read_events(events)[0].get(1):
            await asyncio.sleep(0.05)
        [(_, owner_a)] = read_events(events)[0][1]
        first.procs[0].send_signal(signal.SIGSTOP)
        second = Workers(url, events, tmp_path / "b.log", count=1, job_seconds=STALE_SECONDS, cas=cas, retry_seconds=2 * STALE_SECONDS)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + NUDGE_SECONDS
        while len(read_events(events)[0][1]) < 2:  # B reaps the lease and claims attempt 2
            assert second.procs[0].poll() is None, f"worker B exited; see {tmp_path / 'b.log'}"
            if loop.time() > deadline:
                # A was stopped inside a transaction (its heartbeat's): it holds SQLite's write
                # lock, so B can neither reap nor claim, and B gives up after SQLite's 30 s busy
                # timeout (it did, when this nudge came every 12 s and lasted 20 ms). Let A finish
                # that transaction, stop it again.
                first.procs[0].send_signal(signal.SIGCONT)
                await asyncio.sleep(0.1)
                first.procs[0].send_signal(signal.SIGSTOP)
                deadline = loop.time() + NUDGE_SECONDS
            await asyncio.sleep(0.05)
        first.procs[0].send_signal(signal.SIGCONT)
        while not read_events(events)[1].get(1) or (await status_counts(db))[JobStatus.SUCCEEDED] < 1:
            await asyncio.sleep(0.05)
        await asyncio.sleep(2 * STALE_SECONDS + 0.5)  # the other attempt ends too
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
