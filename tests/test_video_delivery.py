"""A finished clip as each platform shows it: Telegram plays it through sendAnimation (an MP4 with
its poster as the thumbnail, the clip buttons, no PNG button), Discord gets `sdbot-<job>.mp4`
(video/mp4, which it plays inline) with the buttons, the console names the MP4. Over a chat's
limit the clip is made smaller or falls back to its poster, saying so.

The real clients run against the fake servers; the clip is a real H.264 MP4 made here."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import av
import pytest
from PIL import Image
from pydantic import SecretStr

import run_bot
from bot.console import ConsoleChat
from bot.console.protocol import human
from bot.discord import DiscordChat
from bot.telegram import TelegramChat
from commands import registry
from commands.frame.types import ImageFile, Outgoing, Reply, Request, VideoFile
from commands.jobs.render import CLIP_ACTIONS
from config import Settings
from generation.animation import video as encoder
from tests.fakes import discord as fake_discord
from tests.fakes import telegram as fake_telegram
from tests.fakes.discord import FakeDiscord
from tests.fakes.telegram import FakeTelegram
from tests.support.running_chat import running_chat

FRAMES, FPS, SIDE = 8, 8, 64


def clip(folder: Path) -> tuple[VideoFile, ImageFile]:
    """A clip whose frame i is red = 30 * i, as the worker stores one: PNG frames, MP4, GIF."""
    pictures = [Image.new("RGB", (SIDE, SIDE), (30 * i, 90, 60)) for i in range(FRAMES)]
    paths = []
    for i, picture in enumerate(pictures):
        paths.append(folder / f"frame-{i}.png")
        picture.save(paths[-1])
    mp4, gif = folder / "clip.mp4", folder / "clip.gif"
    mp4.write_bytes(encoder.encode_mp4(pictures, FPS))
    gif.write_bytes(encoder.encode_gif(pictures, FPS))
    return VideoFile(mp4, gif, SIDE, SIDE, FPS, tuple(paths)), ImageFile(paths[0], SIDE, SIDE, 2, 0)


def result(video: VideoFile, poster: ImageFile) -> Reply:
    return Reply("a fox running — 8 frames at 8 fps", kind="result", images=(poster,), video=video, actions=CLIP_ACTIONS, job_id=1)


def decoded_frames(data: bytes) -> tuple[int, float]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        count = sum(1 for _ in container.decode(stream))
        return count, float(stream.average_rate)


# --- Telegram ----------------------------------------------------------------------------------------


@pytest.fixture
def tg_server():  # type: ignore[no-untyped-def]
    fake = FakeTelegram().start()
    yield fake
    fake.stop()


def telegram_settings(settings: Settings, server: FakeTelegram, **update: object) -> Settings:
    return settings.model_copy(
        update={
            "telegram_token": SecretStr(fake_telegram.TOKEN),
            "telegram_base_url": server.base_url,
            **update,
        }
    )


def outgoing(chat_id: str, reply: Reply) -> Outgoing:
    return Outgoing(1, chat_id, reply, None, None, chat_id)


async def test_telegram_plays_a_clip_inline_with_its_poster_and_buttons(
    settings: Settings, tg_server: FakeTelegram, tmp_path: Path
) -> None:
    server = tg_server
    video, poster = clip(tmp_path)
    chat_id = str(fake_telegram.ADA["id"])
    async with running_chat(
        telegram_settings(settings, server), TelegramChat, draw=False, ready=lambda chat: "getUpdates" in server.calls
    ) as (chat, _):
        message_id = await chat._deliver(outgoing(chat_id, result(video, poster)))
    [sent] = [m for m in server.sent if str(m.message_id) == message_id]
    assert sent.kind == "animation" and sent.filename == "sdbot-1.mp4"
    assert sent.uploaded == video.mp4.read_bytes()  # under the limit: the stored MP4 as it is
    assert decoded_frames(sent.uploaded) == (FRAMES, FPS)
    animation = sent.api["animation"]
    assert animation["mime_type"] == "video/mp4" and (animation["width"], animation["height"]) == (SIDE, SIDE)
    assert animation["duration"] == 1  # 8 frames at 8 fps
    with Image.open(io.BytesIO(sent.thumbnail)) as thumbnail:  # the poster, as Telegram takes a thumbnail
        assert thumbnail.format == "JPEG" and thumbnail.size == (SIDE, SIDE)
        assert abs(thumbnail.convert("RGB").getpixel((32, 32))[1] - 90) <= 3
    labels = [button["text"] for row in sent.keyboard for button in row]
    assert labels == [action.label for action in CLIP_ACTIONS]  # no 📄 PNG: the frames come with /frames
    assert sent.text.startswith("a fox running")


async def test_telegram_sends_the_poster_when_no_file_of_the_clip_fits(settings: Settings, tg_server: FakeTelegram, tmp_path: Path) -> None:
    server = tg_server
    video, poster = clip(tmp_path)
    tiny_limit = telegram_settings(settings, server, telegram_max_upload_bytes=200)
    chat_id = str(fake_telegram.ADA["id"])
    async with running_chat(tiny_limit, TelegramChat, draw=False, ready=lambda chat: "getUpdates" in server.calls) as (chat, _):
        message_id = await chat._deliver(outgoing(chat_id, result(video, poster)))
    [sent] = [m for m in server.sent if str(m.message_id) == message_id]
    assert sent.kind == "photo" and "even made smaller it is over the 200 bytes I may send here" in sent.text
    assert "/frames" in sent.text
    assert [button["text"] for row in sent.keyboard for button in row] == [a.label for a in CLIP_ACTIONS]


# --- Discord -----------------------------------------------------------------------------------------


def discord_settings(settings: Settings, server: FakeDiscord) -> Settings:
    return settings.model_copy(
        update={
            "discord_token": SecretStr(fake_discord.TOKEN),
            "discord_api_base": server.api_base,
            "discord_gateway_url": server.gateway_url,
        }
    )


@pytest.fixture
def dc_server():  # type: ignore[no-untyped-def]
    fake = FakeDiscord().start()
    yield fake
    fake.stop()


async def test_discord_attaches_the_clip_as_an_mp4_with_its_buttons(
    settings: Settings, dc_server: FakeDiscord, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = dc_server
    video, poster = clip(tmp_path)
    stored = video.mp4.read_bytes()

    async def animate(ctx: object, request: Request, args: str) -> list[Reply]:  # the clip, at once
        return [result(video, poster)]

    monkeypatch.setitem(registry._BY_NAME, "animate", dataclasses.replace(registry.find("animate"), handler=animate))
    async with running_chat(discord_settings(settings, server), DiscordChat, draw=False, ready=lambda chat: chat.client.is_ready()) as (
        chat,
        _,
    ):
        message_id = await chat._deliver(outgoing(fake_discord.GENERAL["id"], result(video, poster)))
        # an interaction whose attachment limit the stored MP4 is over: re-encoded (or downscaled) to fit
        server.upload_limit = len(stored) - 1
        asked = server.slash("animate", {"prompt": "a fox running"})
        smaller = await server.await_for(lambda m: m.interaction_id == asked.id and bool(m.files))
    [sent] = [m for m in server.sent if m.id == message_id]
    assert sent.files == {"sdbot-1.mp4": stored}
    [attachment] = sent.api["attachments"]
    assert attachment["content_type"] == "video/mp4"  # what makes Discord play it inline
    assert sent.labels() == [action.label for action in CLIP_ACTIONS]

    [(name, data)] = smaller.files.items()
    assert name == "sdbot-1.mp4" and len(data) < len(stored) and "to fit this chat's limit" in smaller.content
    assert decoded_frames(data) == (FRAMES, FPS)
    assert smaller.labels() == [action.label for action in CLIP_ACTIONS]


# --- console -----------------------------------------------------------------------------------------


async def test_console_names_the_clips_mp4(settings: Settings, tmp_path: Path) -> None:
    video, poster = clip(tmp_path)
    core = await run_bot.build_core(settings)
    out = io.StringIO()
    try:
        chat = ConsoleChat(core.service, state_dir=tmp_path / "console", input_stream=io.StringIO(""), output_stream=out, poll_seconds=0.1)
        await chat._send(Outgoing(1, "console", result(video, poster), "u1", None, "console"))
    finally:
        await core.db.close()
    [event] = [json.loads(line) for line in out.getvalue().splitlines() if '"message"' in line]
    assert event["video"] == str(video.mp4.resolve()) and event["images"] == [str(poster.path.resolve())]
    assert f"🎞  {video.mp4.resolve()}" in human(event)
