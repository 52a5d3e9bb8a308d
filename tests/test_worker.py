"""The worker loop itself: /cancel stops a running job between steps, and a shutdown hands the
job back to the queue without counting the attempt."""

from __future__ import annotations

import asyncio
import contextlib

import run_bot
from config import Settings
from storage import queue
from tests.test_service import Bot


async def job_row(bot: Bot, job_id: int = 1):  # type: ignore[no-untyped-def]
    async with bot.core.db.transaction() as session:
        return await queue.get(session, job_id)


async def wait_for_job(bot: Bot, predicate, timeout: float = 60):  # type: ignore[no-untyped-def]
    """Poll job 1 until `predicate(job)` holds; return the job."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate(job := await job_row(bot)):
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)
    return job


@contextlib.asynccontextmanager
async def running_bot(settings: Settings):  # type: ignore[no-untyped-def]
    """A bot whose worker loop runs as in production, with one long job already drawing."""
    settings.max_steps = 1000
    core = await run_bot.build_core(settings)
    bot = Bot(core, run_bot.build_worker(core))
    stop = asyncio.Event()
    task = asyncio.create_task(bot.worker.run(stop))
    try:
        await bot.send("/imagine a long job --steps 400")
        await wait_for_job(bot, lambda job: job.progress_step > 0)
        yield bot, stop, task
    finally:
        stop.set()
        await task
        await core.db.close()


async def test_cancel_stops_a_running_job(settings: Settings) -> None:
    async with running_bot(settings) as (bot, _, _):
        [(_, reply)] = await bot.send("/cancel 1")
        assert "stopping after its current step" in reply.text
        job = await wait_for_job(bot, lambda job: job.status == "cancelled")
        assert job.outputs == [] and job.progress_step < 400
        assert await bot.service.pending("test") == []


async def test_shutdown_hands_the_job_back(settings: Settings) -> None:
    async with running_bot(settings) as (bot, stop, task):
        stop.set()
        await asyncio.wait_for(asyncio.shield(task), 30)
        job = await job_row(bot)
        assert (job.status, job.attempt, job.lease_owner) == ("queued", 0, None)


async def test_no_task_is_left_behind_after_a_job(settings: Settings) -> None:
    """The heartbeat is stopped between beats and awaited. A task cancelled inside a database
    transaction and left pending hung the event loop's shutdown (found in CI; reproduced with
    aiosqlite + SQLAlchemy in 1 of 2 tries)."""
    settings.progress_seconds = 0.001  # beat as often as possible, so one is in flight at the end
    core = await run_bot.build_core(settings)
    bot = Bot(core, run_bot.build_worker(core))
    try:
        for _ in range(3):
            await bot.send("/imagine a cat --steps 3")
            assert await bot.worker.run_once()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
            assert others == []
    finally:
        bot.worker.executor.shutdown()
        await core.db.close()


def test_worker_limits_come_from_the_settings(settings: Settings) -> None:
    from generation.worker import WorkerLimits

    s = settings.model_copy(update={"lease_seconds": 12.5, "max_batch_jobs": 3, "batch_wait_ms": 40, "train_hours": "1-5"})
    limits = WorkerLimits.from_settings(s, models=("tiny",))
    assert (limits.lease_seconds, limits.max_batch_jobs, limits.batch_wait_ms, limits.train_hours, limits.models) == (
        12.5,
        3,
        40,
        "1-5",
        ("tiny",),
    )
    assert (limits.progress_seconds, limits.poll_seconds, limits.affinity_seconds) == (
        s.progress_seconds,
        s.poll_seconds,
        s.affinity_seconds,
    )
