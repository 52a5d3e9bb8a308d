"""One leader per database (storage/leader.py), on a SQLite file and on PostgreSQL: exactly one
of several contenders leads; when it lets go, dies, or loses its database connection, another
takes over within the retry time; and the periodic work (runtime/periodic.py) runs only there."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from runtime.periodic import PeriodicWork
from storage.db import Database
from storage.leader import Leadership
from tests.conftest import ROOT
from tests.support import postgres_cluster

RETRY = 0.2


@pytest.fixture(params=["sqlite", "postgresql"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'sdbot.db'}"
    return await postgres_cluster.cluster().new_database()


@pytest.fixture
async def contenders(url: str) -> AsyncIterator[Callable[..., Leadership]]:
    made: list[Leadership] = []

    def make(retry_seconds: float = RETRY) -> Leadership:
        leadership = Leadership(url, retry_seconds=retry_seconds)
        made.append(leadership)
        return leadership

    yield make
    for leadership in made:
        await leadership.close()


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.02)


async def test_exactly_one_leads_and_another_takes_over_when_it_lets_go(contenders) -> None:  # type: ignore[no-untyped-def]
    first, second, third = contenders(), contenders(), contenders()
    for leadership in (first, second, third):
        await leadership.start()
    assert first.is_leader  # the first to try leads from its start
    await asyncio.sleep(RETRY * 3)  # the others have retried, and failed
    assert [first.is_leader, second.is_leader, third.is_leader] == [True, False, False]

    await first.close()
    started = time.monotonic()
    await eventually(lambda: second.is_leader or third.is_leader)
    assert time.monotonic() - started < RETRY * 5
    await asyncio.sleep(RETRY * 3)
    assert [second.is_leader, third.is_leader].count(True) == 1


async def test_a_leader_that_loses_its_connection_stops_leading(url: str, contenders) -> None:  # type: ignore[no-untyped-def]
    if url.startswith("sqlite"):
        pytest.skip("a file lock has no connection to lose")
    import asyncpg

    # the leader retries slowly, so the follower (fast) is the one to take over, deterministically
    leader, follower = contenders(retry_seconds=30), contenders()
    await leader.start()
    await follower.start()
    assert leader.is_leader and not follower.is_leader
    pid = leader._lock.connection.get_server_pid()  # type: ignore[attr-defined]
    admin = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    await eventually(lambda: not leader.is_leader, timeout=2)  # at once, not at its next check in 30 s
    await eventually(lambda: follower.is_leader, timeout=RETRY * 10)
    assert not leader.is_leader


async def test_the_leader_process_is_killed_and_another_takes_over(url: str, contenders) -> None:  # type: ignore[no-untyped-def]
    """A real process leads, then SIGKILL: no clean-up of its own, the lock goes with it."""
    script = (
        "import asyncio, sys\n"
        "from storage.leader import Leadership\n"
        "async def main():\n"
        "    leadership = Leadership(sys.argv[1], retry_seconds=0.2)\n"
        "    await leadership.start()\n"
        "    print('leading' if leadership.is_leader else 'following', flush=True)\n"
        "    await asyncio.Event().wait()\n"
        "asyncio.run(main())\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script, url], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert await asyncio.to_thread(process.stdout.readline) == "leading\n"
        here = contenders()
        await here.start()
        await asyncio.sleep(RETRY * 3)
        assert not here.is_leader
        process.kill()
        process.wait()
        await eventually(lambda: here.is_leader)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


class FakeLeadership:
    def __init__(self, is_leader: bool):
        self.is_leader = is_leader


async def test_periodic_work_runs_only_in_the_leader(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'q.db'}")
    runs: list[str] = []

    async def job() -> None:
        runs.append("ran")

    leading = FakeLeadership(True)
    periodic = PeriodicWork(db, leading, lease_seconds=30, on_requeued=lambda: None)  # type: ignore[arg-type]
    await periodic._run_if_leader(job)
    leading.is_leader = False
    await periodic._run_if_leader(job)
    assert runs == ["ran"]
    await db.close()


async def test_a_run_outlives_the_schedulers_shutdown(tmp_path: Path) -> None:
    """APScheduler cancels running jobs at shutdown; ours are shielded and awaited by stop()."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'q.db'}")
    periodic = PeriodicWork(db, FakeLeadership(True), lease_seconds=30, on_requeued=lambda: None)  # type: ignore[arg-type]
    finished = asyncio.Event()

    async def slow() -> None:
        await asyncio.sleep(0.2)
        finished.set()

    periodic.start()
    outer = asyncio.create_task(periodic._run_if_leader(slow))
    await asyncio.sleep(0.05)
    outer.cancel()  # what the scheduler's shutdown does to a running job
    await periodic.stop()
    assert finished.is_set()
    await db.close()
