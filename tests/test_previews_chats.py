"""Live previews reach each platform as edits of the status message, before the result and never
faster than the platform's pace: the console's `edit` events name a JPEG (`image`), Telegram's
status becomes a photo through editMessageMedia, Discord's status gets the picture as its
attachment. The real clients run against the fake servers, with the tiny model drawing."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
from pathlib import Path
from typing import Any

from PIL import Image
from pydantic import SecretStr

from bot.console import ConsoleChat
from bot.discord import DiscordChat
from bot.telegram import TelegramChat
from config import Settings
from tests.fakes import discord as fake_discord
from tests.fakes import telegram as fake_telegram
from tests.fakes.discord import FakeDiscord
from tests.fakes.telegram import GROUP, FakeTelegram
from tests.support.running_chat import running_chat

SLOW_JOB = "a slow fox --steps 100 --size 64x64"  # 2-4 s on the tiny model: several previews 0.3 s apart
SLACK = 0.05  # (the status loop looks every 0.5 s: without the throttle, gaps of 0.5 s would show) the fakes stamp an edit when it arrives, a moment after the bot decided to send it


def with_previews(settings: Settings, **update: Any) -> Settings:
    return settings.model_copy(update={"preview": "linear", "preview_seconds": 0.3, "progress_seconds": 0.05, **update})


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def is_jpeg(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as picture:
        return picture.format == "JPEG" and max(picture.size) <= 256


async def console_events(settings: Settings, tmp_path: Path, line: str) -> list[dict[str, Any]]:
    out = io.StringIO()

    def make(service: Any, _: Settings) -> ConsoleChat:
        return ConsoleChat(
            service,
            state_dir=tmp_path / "console",
            input_stream=io.StringIO(json.dumps({"text": line}) + "\n"),
            output_stream=out,
            poll_seconds=0.1,
        )

    async with running_chat(settings, make) as (_, task):
        async with asyncio.timeout(120):
            assert await task == 0  # the console returns once the job is done and delivered
    return [json.loads(text) for text in out.getvalue().splitlines()]


async def test_console_edits_carry_the_preview_before_the_result(settings: Settings, tmp_path: Path) -> None:
    events = await console_events(with_previews(settings), tmp_path, f"/imagine {SLOW_JOB}")
    [status] = [e for e in events if e.get("kind") == "status"]
    result = next(i for i, e in enumerate(events) if e.get("kind") == "result")
    shown = [(i, e) for i, e in enumerate(events) if e["event"] == "edit" and e["id"] == status["id"] and e.get("image")]
    assert shown, events
    assert all(i < result for i, _ in shown)  # every preview came before the result
    image = Path(shown[-1][1]["image"])
    assert image.parent == tmp_path / "console" / "previews" and is_jpeg(image.read_bytes())
    assert "preview" not in events[result] or events[result]["preview"] != str(image)  # not a --tile preview


async def test_console_without_previews_shows_none(settings: Settings, tmp_path: Path) -> None:
    events = await console_events(with_previews(settings, preview="off"), tmp_path, f"/imagine {SLOW_JOB}")
    assert any(e["event"] == "edit" and "step" in e["text"] for e in events)  # progress still shows
    assert not any(e.get("image") for e in events)
    assert any(e.get("kind") == "result" for e in events)


async def test_telegram_status_becomes_the_preview_then_goes(settings: Settings) -> None:
    server = FakeTelegram().start()
    try:
        update = {
            "telegram_token": SecretStr(fake_telegram.TOKEN),
            "telegram_base_url": server.base_url,
            "telegram_group_edit_seconds": 1.0,
        }
        ready = lambda chat: bool({"getUpdates", "setWebhook"} & set(server.calls))  # noqa: E731
        async with running_chat(with_previews(settings, **update), TelegramChat, ready=ready):
            asked = server.send(f"/imagine {SLOW_JOB}", chat=GROUP)
            status = await server.await_for(lambda m: m.reply_to == asked["message_id"] and "queued" in m.text)
            result = await server.await_for(lambda m: m.reply_to == asked["message_id"] and m is not status and m.kind == "photo", 120)
            await server.await_until(lambda: status.deleted)  # the result replaces the status
        assert status.media_edits and all(is_jpeg(data) for data in status.media_edits), (server.refused, server.calls, status.edits)
        assert status.media_times[0] < result.sent_at
        assert all(gap >= 1.0 - SLACK for gap in gaps(status.edit_times)), status.edit_times  # the group's pace, pictures or not
        assert "step" in status.text  # the caption says the progress
    finally:
        server.stop()


async def test_discord_status_gets_the_preview_as_its_attachment(settings: Settings) -> None:
    server = FakeDiscord().start()
    try:
        update = {
            "discord_token": SecretStr(fake_discord.TOKEN),
            "discord_api_base": server.api_base,
            "discord_gateway_url": server.gateway_url,
            "discord_status_edit_seconds": 1.0,
        }
        async with running_chat(with_previews(settings, **update), DiscordChat, ready=lambda chat: chat.client.is_ready()):
            asked = server.slash("imagine", {"prompt": "a slow fox", "steps": 100, "size": "64x64"})

            def is_result(m: Any) -> bool:
                return m.interaction_id == asked.id and any(name.endswith(".png") for name in m.files)

            result = await server.await_for(is_result, 120)
            status = next(m for m in server.sent if m.id == asked.original)
            await server.await_until(lambda: status.deleted)
        assert status.file_edits, status.edits
        assert all(name.endswith(".jpg") and is_jpeg(data) for files in status.file_edits for name, data in files.items())
        assert status.file_times[0] < result.sent_at
        assert all(gap >= 1.0 - SLACK for gap in gaps(status.edit_times)), status.edit_times  # per message
        assert all(gap >= 1.0 - SLACK for gap in gaps(status.file_times)), status.file_times  # per channel, pictures
    finally:
        server.stop()


async def test_pictures_keep_the_chats_pace_across_its_jobs() -> None:
    """Two running jobs in one chat, each with a new preview at every look: pictures go out at
    most once per `media_interval` in the chat; the other job's text still goes, without one."""
    from bot.loops import StatusLoop
    from commands.frame.types import StatusUpdate

    looks = itertools.count()

    class Service:
        async def status_updates(self, platform: str) -> list[StatusUpdate]:
            n = next(looks)
            return [StatusUpdate("chat", f"m{job}", job, f"step {n}", b"jpeg %d" % n) for job in (1, 2)]

    edits: list[StatusUpdate] = []

    async def edit(update: StatusUpdate) -> None:
        edits.append(update)

    loop = StatusLoop(Service(), "test", edit, min_interval=lambda chat: 0.0, media_interval=lambda chat: 60.0)  # type: ignore[arg-type]
    for _ in range(3):
        await loop.one_pass()
    assert [(e.message_id, e.preview is not None) for e in edits] == [("m1", True), ("m2", False)] * 1 + [("m1", False), ("m2", False)] * 2
