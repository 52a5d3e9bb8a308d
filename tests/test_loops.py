"""The adapters' delivery loop: an outage or flood control never loses a result; only a chat that
keeps refusing a delivery gives it up, after MAX_DELIVERY_ATTEMPTS tries."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from bot import loops
from bot.loops import DeliveryLoop, Postpone, Unreachable
from commands.frame.types import Outgoing
from storage.outbox import MAX_DELIVERY_ATTEMPTS
from tests.test_service import Bot


async def finished_job(bot: Bot) -> None:  # noqa: F811
    await bot.send("/imagine a cat --size 64x64 --steps 2")
    while await bot.worker.run_once():
        pass


async def run_until_nothing_is_owed(bot: Bot, loop: DeliveryLoop) -> None:  # noqa: F811
    task = asyncio.create_task(loop.run())
    try:
        async with asyncio.timeout(30):
            while await bot.service.pending("test"):
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def deliveries(bot: Bot) -> list[tuple[str, int]]:  # noqa: F811
    path = bot.core.settings.data_dir / "sdbot.db"
    with sqlite3.connect(path) as db:
        return db.execute("select status, attempts from deliveries").fetchall()


async def test_outages_and_flood_control_lose_nothing(bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setattr(loops, "MAX_BACKOFF_SECONDS", 0.01)
    await finished_job(bot)
    tries: list[str] = []

    async def send(item: Outgoing) -> str:
        tries.append(item.reply.kind)
        if len(tries) <= MAX_DELIVERY_ATTEMPTS + 2:  # longer than a refusing chat is given
            raise Unreachable("connection refused")
        if len(tries) == MAX_DELIVERY_ATTEMPTS + 3:
            raise Postpone(0.01)
        return "m-result"

    await run_until_nothing_is_owed(bot, DeliveryLoop(bot.service, "test", send, poll_seconds=0.001))
    assert len(tries) == MAX_DELIVERY_ATTEMPTS + 4 and set(tries) == {"result"}
    assert deliveries(bot) == [("sent", 1)]  # the one try that went out; none counted against it
    [(_, reply)] = await bot.send("/info", reply_to="m-result")  # the sent message resolves
    assert "Job 1" in reply.text


async def test_a_chat_that_keeps_refusing_is_given_up(bot: Bot) -> None:  # noqa: F811
    await finished_job(bot)

    async def send(item: Outgoing) -> str:
        raise RuntimeError("Forbidden: bot was blocked by the user")

    await run_until_nothing_is_owed(bot, DeliveryLoop(bot.service, "test", send, poll_seconds=0.001))
    assert deliveries(bot) == [("dead", MAX_DELIVERY_ATTEMPTS)]
