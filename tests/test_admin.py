"""/admin status: the workers' roll call and the queue, as an admin sees them."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest

from storage import queue, users, workers
from storage.tables import WorkerRow, utcnow


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    return settings.model_copy(update={"admin_ids": ["test:root"]})


async def test_only_admins_and_clear_usage(bot) -> None:  # type: ignore[no-untyped-def]
    [(_, refused)] = await bot.send("/admin status", user="alice")
    assert refused.kind == "error" and "admins" in refused.text
    [(_, empty)] = await bot.send("/admin", user="root")
    assert empty.kind == "error" and "/admin status" in empty.text
    [(_, unknown)] = await bot.send("/admin reboot", user="root")
    assert unknown.kind == "error" and "`/admin reboot`" in unknown.text and "/admin status" in unknown.text


async def test_status_shows_workers_queue_and_models_nobody_serves(bot) -> None:  # type: ignore[no-untyped-def]
    worker = bot.worker
    worker.gpu = "1"
    worker.limits = dataclasses.replace(worker.limits, models=("tiny",))
    async with bot.core.db.transaction() as s:  # a job for a model only another kind of worker would take
        someone = await users.get_or_create(s, "test", "bob")
        waiting = await queue.enqueue(
            s,
            user_id=someone.id,
            platform="test",
            chat_id="chat",
            source_message_id=None,
            kind="txt2img",
            model="big-xl",
            batch_key="",
            params={},
            max_attempts=1,
        )
        waiting.created_at = utcnow() - timedelta(minutes=3)
        s.add(WorkerRow(owner="gpu-box:77:dead", host="gpu-box", models=[], jobs=[5], seen_at=utcnow() - timedelta(minutes=10)))
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        for _ in range(100):  # the worker announces itself as it starts
            async with bot.core.db.transaction() as s:
                if await s.get(WorkerRow, worker.owner) is not None:
                    break
            await asyncio.sleep(0.05)
        [(_, reply)] = await bot.send("/admin status", user="root")
    finally:
        stop.set()
        await running
    text = reply.text
    assert reply.ephemeral
    assert "Workers: 1 running, 1 not responding" in text
    mine = next(line for line in text.splitlines() if worker.owner in line)
    assert "GPU 1" in mine and "models: tiny" in mine and "idle" in mine and "seen 0 s ago" in mine
    dead = next(line for line in text.splitlines() if "gpu-box:77:dead" in line)
    assert "NOT RESPONDING, seen 10 min ago" in dead and "drawing job 5" in dead and "models: any" in dead
    assert "Queue: 1 waiting, 0 running" in text and "by model: big-xl 1" in text
    assert f"oldest waiting: job {waiting.id} (big-xl), 180 s ago" in text or f"job {waiting.id} (big-xl), 3 min ago" in text
    assert "No running worker takes jobs for `big-xl`" in text
    async with bot.core.db.transaction() as s:  # a clean stop takes the worker off the roll
        assert [row.owner for row in await workers.roll(s)] == ["gpu-box:77:dead"]
