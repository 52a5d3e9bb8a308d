"""A chat adapter running in the test's process, as `run_bot.py serve` runs it: the command
service, the adapter, and (unless `draw=False`) a worker drawing with the tiny model."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any

import run_bot
from config import Settings


@contextlib.asynccontextmanager
async def running_chat(
    settings: Settings,
    make_chat: Callable[[Any, Settings], Any],
    *,
    draw: bool = True,
    ready: Callable[[Any], bool] = lambda chat: True,
) -> AsyncIterator[tuple[Any, asyncio.Task[int]]]:
    """Yields (chat, the task of `chat.run()`) once `ready(chat)` holds or the task has ended."""
    core = await run_bot.build_core(settings)
    chat = make_chat(core.service, settings)
    core.wake_adapters.append(chat.wake)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(chat.run())]
    if draw:
        tasks.append(asyncio.create_task(run_bot.build_worker(core).run(stop)))
    try:
        async with asyncio.timeout(60):
            while not (ready(chat) or tasks[0].done()):
                await asyncio.sleep(0.05)
        yield chat, tasks[0]
    finally:
        stop.set()
        tasks[0].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await core.db.close()


async def recorded(settings: Settings, chat_id: object, message_id: object) -> None:
    """Wait until the bot has recorded its message (chat, id). A fake server sees a message a
    moment before the bot writes the ref that makes replies and buttons on it resolve; a person
    is never faster than that, but a test can be."""
    path = settings.data_dir / "sdbot.db"
    query = "select 1 from message_refs where chat_id = ? and message_id = ?"
    async with asyncio.timeout(30):
        while True:
            with sqlite3.connect(path) as db:
                if db.execute(query, (str(chat_id), str(message_id))).fetchone():
                    return
            await asyncio.sleep(0.05)
