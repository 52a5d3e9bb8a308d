"""/video in Telegram, through python-telegram-bot and the fake Bot API (tests/fakes/telegram.py),
with the built-in tiny video models beside `tiny`: Animate under a still picture, `/video --loop`
and an Extend arrive as animations (MP4) with the video buttons; bad input gets one clear text
answer and nothing is queued."""

from __future__ import annotations

import asyncio
import io
import sqlite3

import av
import pytest

from config import ModelEntry, Settings
from tests.fakes.telegram import BotMessage, FakeTelegram
from tests.support.running_chat import recorded
from tests.test_telegram import is_photo_reply, is_text_reply, server, telegram_bot, tg_settings  # noqa: F401 - fixtures

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

MODELS = ("tiny-wan", "tiny-wan-i2v", "tiny-ltx")


@pytest.fixture
def video_settings(tg_settings: Settings) -> Settings:  # noqa: F811
    return tg_settings.model_copy(update={"models": {name: ModelEntry(source=name) for name in MODELS}, "default_steps": 2})


def jobs(settings: Settings) -> int:
    with sqlite3.connect(settings.data_dir / "sdbot.db") as db:
        return int(db.execute("select count(*) from jobs").fetchone()[0])


def frames(message: BotMessage) -> int:
    with av.open(io.BytesIO(message.uploaded or b"")) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


def is_clip_reply(message_id: int, containing: str = ""):  # type: ignore[no-untyped-def]
    return lambda m: m.kind == "animation" and m.reply_to == message_id and containing in m.text


async def test_animate_loop_and_extend_in_telegram(video_settings: Settings, server: FakeTelegram) -> None:  # noqa: F811
    settings = video_settings
    async with telegram_bot(settings, server):
        asked = server.send("/imagine a red fox in the snow")
        picture = await server.await_for(is_photo_reply(asked))
        assert "Animate" in picture.labels()
        await recorded(settings, picture.chat_id, picture.message_id)
        server.press(picture, "Animate")
        animated = await server.await_for(is_clip_reply(picture.message_id, "Animate: a red fox in the snow"))
        assert animated.labels() == ["Extend", "Reroll", "Loop", "Upscale 2x"] and "tiny-wan-i2v" in animated.text
        assert frames(animated) == 9 and animated.filename is not None and animated.filename.endswith(".mp4")

        looped = server.send("/video a candle flickers --loop")
        await server.await_for(is_text_reply(looped, "It loops by playing forward, then back"))  # the queued note
        bounced = await server.await_for(is_clip_reply(looped["message_id"]))
        assert frames(bounced) == 2 * 9 - 2 and bounced.labels() == ["Extend", "Reroll", "Upscale 2x"]  # it loops: no Loop
        assert "loop" in bounced.text and "tiny-wan" in bounced.text

        await recorded(settings, animated.chat_id, animated.message_id)
        server.press(animated, "Extend")
        extended = await server.await_for(is_clip_reply(animated.message_id, "Extend"))
        assert frames(extended) == 17 and "17 frames" in extended.text

        manual = server.send("/video the fox turns its head", reply_to=picture.message_id)  # Animate's manual form
        turned = await server.await_for(is_clip_reply(manual["message_id"], "Animate: the fox turns its head"))
        assert frames(turned) == 9 and "tiny-wan-i2v" in turned.text
    assert jobs(settings) == 5  # the picture, Animate, the loop, the Extend and the manual Animate


async def test_bad_video_input_in_telegram_queues_nothing(video_settings: Settings, server: FakeTelegram) -> None:  # noqa: F811
    settings = video_settings
    async with telegram_bot(settings, server):
        asked = server.send("/imagine a red fox")
        picture = await server.await_for(is_photo_reply(asked))
        await recorded(settings, picture.chat_id, picture.message_id)
        before = jobs(settings)
        sent = {
            "/video a fox --frames 500": "--frames 500 is out of bounds: use 1 to 128",
            "/video a fox --model tiny": "tiny (SD 1.x) is a picture model",
            "/imagine a fox --model tiny-wan": "Pictures can't be drawn with tiny-wan",
            f"/video a fox --loop --end {picture.message_id}": "Use --loop or --end, not both",
            f"/video a fox --end {picture.message_id}": "needs a first frame too",
            "/video a fox --size 72x72": "multiples of 16",
        }
        messages = {command: server.send(command) for command in sent}
        wrong_model = server.send("/video the fox turns --model tiny-wan", reply_to=picture.message_id)
        for command, expected in sent.items():
            answer = await server.await_for(is_text_reply(messages[command]))
            assert expected in answer.text and not answer.labels(), (command, answer.text)
        answer = await server.await_for(is_text_reply(wrong_model))
        assert "can't start from a picture" in answer.text, answer.text
        await asyncio.sleep(0.5)
    assert not [m for m in server.sent if m.kind == "animation"]
    assert jobs(settings) == before
