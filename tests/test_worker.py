"""The worker loop itself: /cancel stops a running job between steps, and a shutdown hands the
job back to the queue without counting the attempt."""

from __future__ import annotations

import asyncio

import run_bot
from config import Settings
from storage import queue
from tests.test_service import Bot


async def wait_until(predicate, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def start(settings: Settings) -> tuple[Bot, asyncio.Event, asyncio.Task]:
    settings.max_steps = 1000
    core = await run_bot.build_core(settings)
    bot = Bot(core, run_bot.build_worker(core))
    stop = asyncio.Event()
    return bot, stop, asyncio.create_task(bot.worker.run(stop))


async def job_row(bot: Bot, job_id: int = 1):  # type: ignore[no-untyped-def]
    async with bot.core.db.transaction() as session:
        return await queue.get(session, job_id)


async def test_cancel_stops_a_running_job(settings: Settings) -> None:
    bot, stop, task = await start(settings)
    try:
        await bot.send("/imagine a long job --steps 400")

        async def drawing() -> bool:
            return (await job_row(bot)).progress_step > 0

        await wait_until(drawing)
        [(_, reply)] = await bot.send("/cancel 1")
        assert "stopping after its current step" in reply.text

        async def cancelled() -> bool:
            return (await job_row(bot)).status == "cancelled"

        await wait_until(cancelled)
        job = await job_row(bot)
        assert job.outputs == [] and job.progress_step < 400
        assert await bot.service.pending("test") == []
    finally:
        stop.set()
        await task
        await bot.core.db.close()


async def test_shutdown_hands_the_job_back(settings: Settings) -> None:
    bot, stop, task = await start(settings)
    try:
        await bot.send("/imagine a long job --steps 400")

        async def drawing() -> bool:
            return (await job_row(bot)).progress_step > 0

        await wait_until(drawing)
        stop.set()
        await asyncio.wait_for(task, 30)
        job = await job_row(bot)
        assert (job.status, job.attempt, job.lease_owner) == ("queued", 0, None)
    finally:
        stop.set()
        await bot.core.db.close()


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
