"""The Telegram adapter, end to end: the real python-telegram-bot client against the fake Bot API
server in tests/fakes/telegram.py, with the tiny model drawing.

The first test runs `run_bot.py serve` as a real process, the way a user starts it; the others run
the adapter in this process, where each case is cheaper to set up.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import os
from pathlib import Path

import pytest
from PIL import Image
from pydantic import SecretStr

from bot.telegram import TelegramChat
from config import Settings
from tests.conftest import bot_env
from tests.fakes.telegram import ADA, BOB, GROUP, TOKEN, FakeTelegram
from tests.support.labels import EDIT_LABELS
from tests.support.menus import COMMAND_MENU
from tests.support.running_chat import recorded, running_chat
from tests.support.serve_process import ServeProcess


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    fake = FakeTelegram().start()
    yield fake
    fake.stop()


def png(width: int = 64, height: int = 64, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()


def is_photo_reply(message: dict):  # type: ignore[no-untyped-def,type-arg]
    return lambda m: m.kind == "photo" and m.chat_id == message["chat"]["id"] and m.reply_to == message["message_id"]


def is_text_reply(message: dict, containing: str = ""):  # type: ignore[no-untyped-def,type-arg]
    return lambda m: (
        m.kind == "text" and m.chat_id == message["chat"]["id"] and m.reply_to == message["message_id"] and containing in m.text
    )


# --- the whole bot as a user starts it ---------------------------------------------------------------


def test_serve_answers_in_telegram_and_buttons_survive_a_restart(tmp_path: Path, models_dir: Path, server: FakeTelegram) -> None:
    env = bot_env(
        tmp_path / "data",
        models_dir,
        SDBOT_TELEGRAM_TOKEN=TOKEN,
        SDBOT_TELEGRAM_BASE_URL=server.base_url,
        SDBOT_LOG_LEVEL="DEBUG",  # the file URL is derived from the base URL
    )
    log_path = tmp_path / "bot.log"
    bot = ServeProcess(env, log_path)
    try:
        server.wait_until(lambda: server.commands and "getUpdates" in server.calls, 120)
        assert [c["command"] for c in server.commands] == COMMAND_MENU

        # Flood control on the result: PTB's limiter repeats twice, then our delivery loop waits and sends again.
        server.fail("sendPhoto", times=3, retry_after=1)
        asked = server.send("/imagine a cat --steps 2 --size 64x64")
        status = server.wait_for(is_text_reply(asked, "queued"))
        result = server.wait_for(is_photo_reply(asked))
        assert [r for r in server.refused if r[0] == "sendPhoto"] == [("sendPhoto", 429)] * 3
        assert result.labels() == [*EDIT_LABELS, "Reroll", "📄 PNG"]
        assert "a cat" in result.text and "64x64" in result.text
        with Image.open(io.BytesIO(result.uploaded or b"")) as picture:
            assert picture.size == (64, 64)
        server.wait_until(lambda: status.deleted, 30)  # the status message is replaced by the result

        server.press(result, "Upscale 2x")  # lanczos here: no upscaler model is configured
        bigger = server.wait_for(lambda m: m.reply_to == result.message_id and m.kind == "photo" and "🔍" in m.text)
        assert bigger.labels() == [*EDIT_LABELS, "📄 PNG"] and "Upscale 2x (lanczos)" in bigger.text
        with Image.open(io.BytesIO(bigger.uploaded or b"")) as picture:
            assert picture.size == (128, 128)

        server.press(result, "Vary (Strong)")
        varied = server.wait_for(lambda m: m.reply_to == result.message_id and m.kind == "photo" and "🔁" in m.text)
        assert "strength 0.7" in varied.text and "Vary (Strong)" in varied.text

        # bad input: one clear message, nothing queued
        bad = server.send("/imagine a cat --steps 5000 --sampler nope")
        error = server.wait_for(is_text_reply(bad))
        assert "--steps" in error.text and "sampler" in error.text.lower()
    finally:
        assert bot.stop() == 0  # SIGTERM is a clean stop

    # The bot restarts; the buttons of the first result still resolve through the database.
    bot = ServeProcess(env, log_path)
    try:
        before = len(server.sent)
        server.press(result, "Reroll")
        rerolled = server.wait_for(lambda m: m.reply_to == result.message_id and m.kind == "photo" and "Job 4" in m.text, 180)
        assert server.sent.index(rerolled) >= before
        results = [m.text.split(":")[0] for m in server.sent if m.kind == "photo"]
        assert sorted(results) == sorted(set(results)), f"a result was delivered twice: {results}"
        assert "seed" in rerolled.text and result.text.split("seed ")[1][:6] not in rerolled.text
    finally:
        assert bot.stop() == 0
    assert TOKEN not in log_path.read_text(), "the bot token reached the log"
    assert TOKEN.split(":")[1] not in log_path.read_text()


# --- the adapter in this process ---------------------------------------------------------------------


@pytest.fixture
def tg_settings(settings: Settings, server: FakeTelegram) -> Settings:
    return settings.model_copy(
        update={
            "telegram_token": SecretStr(TOKEN),
            "telegram_base_url": server.base_url,
            "default_steps": 2,
            "telegram_group_edit_seconds": 0.5,  # file URL: derived from the base URL
        }
    )


def telegram_bot(settings: Settings, server: FakeTelegram, *, draw: bool = True):  # type: ignore[no-untyped-def]
    """The adapter in this process, once it takes updates (polling or webhook)."""
    return running_chat(settings, TelegramChat, draw=draw, ready=lambda chat: bool({"getUpdates", "setWebhook"} & set(server.calls)))


async def test_originals_batches_and_remixes(tg_settings: Settings, server: FakeTelegram) -> None:
    async with telegram_bot(tg_settings, server):
        asked = server.send("/imagine two foxes --n 2 --size 64x64")
        grid = await server.await_for(is_photo_reply(asked))
        await recorded(tg_settings, grid.chat_id, grid.message_id)
        assert grid.labels() == ["U1", "U2", "V1", "V2", "Reroll", "📄 PNG"]
        with Image.open(io.BytesIO(grid.uploaded or b"")) as picture:
            assert picture.size == (64 * 2 + 4, 64)  # one grid image for the batch

        # 📄 PNG sends the untouched PNGs as files, parameters included
        server.press(grid, "📄 PNG")
        await server.await_until(lambda: sum(m.kind == "document" for m in server.sent) == 2)
        documents = [m for m in server.sent if m.kind == "document"]
        assert [d.filename for d in documents][0].startswith("sdbot-1-1-seed")
        with Image.open(io.BytesIO(documents[1].uploaded or b"")) as original:
            assert original.format == "PNG" and "Steps: 2" in original.info["parameters"]

        bogus = server.press(grid, data="a:bogus")  # an action this message doesn't have
        await server.await_until(lambda: bogus in server.answers)
        assert server.answers[bogus]["text"].startswith("There's no bogus button")  # alerts show no markup

        # replying to a batch asks to pick one; replying to U2's image remixes it
        vague = server.send("as a watercolor", reply_to=grid.message_id)
        assert "Press U1–U2" in (await server.await_for(is_text_reply(vague))).text
        server.press(grid, "U2")
        single = await server.await_for(lambda m: m.reply_to == grid.message_id and "Image 2 of job 1" in m.text)
        await recorded(tg_settings, single.chat_id, single.message_id)
        remix = server.send("as a watercolor --steps 2", reply_to=single.message_id)
        remixed = await server.await_for(is_photo_reply(remix))
        assert "🔁" in remixed.text and "as a watercolor" in remixed.text
        await recorded(tg_settings, remixed.chat_id, remixed.message_id)
        info = server.send("/info", reply_to=remixed.message_id)  # a command as a reply acts on that picture
        assert "Steps: 2" in (await server.await_for(is_text_reply(info))).text

        # a person's photo: replying to it with text remixes it; a caption on an upload uses it
        own = server.send(photo=png())  # no caption: the bot asks for a prompt
        assert "write a prompt as its caption" in (await server.await_for(is_text_reply(own))).text
        remix = server.send("a red square, oil painting", reply_to=own["message_id"])
        assert "🔁" in (await server.await_for(is_photo_reply(remix))).text
        theirs = server.send(photo=png(), user=BOB, chat=GROUP)  # in a group: not for the bot
        remix = server.send("/imagine a red square", chat=GROUP, reply_to=theirs["message_id"])
        assert "🔁" in (await server.await_for(is_photo_reply(remix))).text
        assert not any(m.chat_id == GROUP["id"] and m.reply_to == theirs["message_id"] for m in server.sent)
        captioned = server.send("/imagine a blue dog", photo=png(color=(20, 20, 200)))
        assert "🔁" in (await server.await_for(is_photo_reply(captioned))).text
        as_file = server.send("/imagine a file", document=("in.png", png(), "image/png"))
        assert "🔁" in (await server.await_for(is_photo_reply(as_file))).text


async def test_group_chats_only_hear_commands_and_replies(tg_settings: Settings, server: FakeTelegram) -> None:
    async with telegram_bot(tg_settings, server, draw=False):
        ignored = [
            server.send("just chatting about cats", chat=GROUP),
            server.send("/imagine@another_bot a cat", chat=GROUP),
            server.send("/weather", chat=GROUP),  # maybe another bot's
        ]
        unknown = server.send("/frobnicate@sdbot_test_bot", chat=GROUP)
        assert "I don't know /frobnicate" in (await server.await_for(is_text_reply(unknown))).text
        addressed = server.send("/imagine@sdbot_test_bot a cat --size 64x64", chat=GROUP)
        status = await server.await_for(is_text_reply(addressed, "queued"))
        helped = server.send("/help", chat=GROUP, user=BOB)
        await server.await_for(is_text_reply(helped, "Commands"))
        to_bot = server.send("thanks!", chat=GROUP, reply_to=status.message_id)
        # the status message's job isn't done: the reply is taken as a remix, and refused politely
        assert "isn't finished yet" in (await server.await_for(is_text_reply(to_bot))).text
        assert not [m for m in server.sent if m.reply_to in {i["message_id"] for i in ignored}]  # the ignored three got nothing
        said = {m.reply_to for m in server.sent if m.chat_id == GROUP["id"]} - {None}  # (a long /help's second piece)
        assert said == {unknown["message_id"], addressed["message_id"], helped["message_id"], to_bot["message_id"]}

        private = server.send("a lighthouse at night")  # in private, plain text is a prompt
        assert "queued" in (await server.await_for(is_text_reply(private))).text


async def test_status_edits_keep_the_group_pace(tg_settings: Settings, server: FakeTelegram) -> None:
    settings = tg_settings.model_copy(update={"telegram_group_edit_seconds": 1.0, "progress_seconds": 0.05})
    async with telegram_bot(settings, server):
        asked = server.send("/imagine a slow one --steps 60 --size 64x64", chat=GROUP)
        status = await server.await_for(is_text_reply(asked, "queued"))
        await server.await_for(is_photo_reply(asked), 120)
        await server.await_until(lambda: status.deleted)
        assert any("step" in edit for edit in status.edits), status.edits
        gaps = [b - a for a, b in itertools.pairwise(status.edit_times)]
        assert all(gap >= 0.95 for gap in gaps), gaps


async def test_limits_and_stale_buttons_get_short_answers(tg_settings: Settings, server: FakeTelegram) -> None:
    settings = tg_settings.model_copy(update={"telegram_max_download_bytes": 4096})
    async with telegram_bot(settings, server, draw=False):
        big = server.send("/imagine big", document=("big.png", os.urandom(8192), "image/png"))
        reply = (await server.await_for(is_text_reply(big))).text
        assert "big.png is 8 KiB; I can fetch files up to 4 KiB" in reply and "smaller" in reply
        wrong = server.send("/imagine a zip", document=("notes.zip", b"PK\x03\x04 not an image", "application/zip"))
        assert "can't read notes.zip as an image" in (await server.await_for(is_text_reply(wrong))).text

        helped = server.send("/help")
        help_message = await server.await_for(is_text_reply(helped, "Commands"))
        old = server.press(help_message, data="a:upscale:1")  # a message the bot has no record of
        await server.await_until(lambda: old in server.answers)
        assert "don't know that message" in server.answers[old]["text"] and server.answers[old]["show_alert"] == "true"
        alien = server.press(help_message, data="zzz:from-an-old-version")
        await server.await_until(lambda: alien in server.answers)
        assert "older version" in server.answers[alien]["text"]


async def test_allowlists_and_admins(tg_settings: Settings, server: FakeTelegram) -> None:
    settings = tg_settings.model_copy(update={"telegram_allowed_users": [str(ADA["id"])], "admin_ids": ["telegram:4242"]})
    async with telegram_bot(settings, server, draw=False):
        denied = server.send("/help", user=BOB)
        text = (await server.await_for(is_text_reply(denied))).text
        assert "private" in text and str(BOB["id"]) in text
        admin = {"id": 4242, "is_bot": False, "first_name": "Root"}
        for user in (ADA, admin):
            asked = server.send("/help", user=user)
            await server.await_for(is_text_reply(asked, "Commands"))


async def test_webhook_mode(tg_settings: Settings, server: FakeTelegram, unused_tcp_port: int) -> None:
    import httpx

    url = f"https://bot.example.org/hook/{unused_tcp_port}"
    settings = tg_settings.model_copy(
        update={
            "telegram_webhook_url": url,
            "telegram_webhook_listen": "127.0.0.1",
            "telegram_webhook_port": unused_tcp_port,
            "telegram_webhook_secret": SecretStr("s3cret"),
        }
    )
    async with telegram_bot(settings, server, draw=False):
        await server.await_until(lambda: server.webhook is not None)
        assert server.webhook["url"] == url and server.webhook["secret_token"] == "s3cret"
        update = {
            "update_id": 1,
            "message": {"message_id": 7, "date": 0, "chat": {"id": ADA["id"], "type": "private"}, "from": ADA, "text": "/help"},
        }
        endpoint = f"http://127.0.0.1:{unused_tcp_port}/hook/{unused_tcp_port}"
        async with httpx.AsyncClient() as client:
            refused = await client.post(endpoint, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"})
            assert refused.status_code == 403
            accepted = await client.post(endpoint, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret"})
            assert accepted.status_code == 200
        await server.await_for(lambda m: m.reply_to == 7 and "Commands" in m.text)
        assert "getUpdates" not in server.calls


async def test_a_refused_token_stops_with_a_clear_message(tg_settings: Settings, server: FakeTelegram, caplog) -> None:  # type: ignore[no-untyped-def]
    settings = tg_settings.model_copy(update={"telegram_token": SecretStr("999:wrong")})
    with caplog.at_level(logging.ERROR):
        async with telegram_bot(settings, server, draw=False) as (_, task):
            assert await asyncio.wait_for(task, 30) == 2
    assert "Telegram refused SDBOT_TELEGRAM_TOKEN" in caplog.text


# --- pictures and texts within Telegram's limits --------------------------------------------------


def test_photos_are_fitted_to_telegram_limits(tmp_path: Path) -> None:
    import numpy as np

    from bot.telegram.outgoing import MAX_PHOTO_BYTES, photo_of
    from commands.frame.types import ImageFile, Reply

    wide = tmp_path / "wide.png"
    Image.new("RGB", (8000, 2400), (10, 120, 200)).save(wide)
    noisy = tmp_path / "noisy.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (2048, 2048, 3), dtype=np.uint8)).save(noisy)
    assert noisy.stat().st_size > MAX_PHOTO_BYTES
    small = tmp_path / "small.png"
    Image.new("RGB", (64, 64)).save(small)

    def fitted(path: Path):  # type: ignore[no-untyped-def]
        with Image.open(path) as image:
            size = image.size
        return photo_of(Reply("x", kind="single", images=(ImageFile(path, *size, seed=1, index=0),), job_id=1))

    as_is = fitted(small)
    assert as_is.note is None and as_is.data == small.read_bytes()
    shrunk = fitted(wide)
    assert shrunk.width + shrunk.height <= 10_000 and "downscaled" in (shrunk.note or "")
    squeezed = fitted(noisy)
    assert len(squeezed.data) <= MAX_PHOTO_BYTES and squeezed.filename.endswith(".jpg") and "JPEG" in (squeezed.note or "")


def test_texts_become_valid_telegram_html() -> None:
    from bot.telegram.outgoing import chunks, to_html
    from tests.fakes.telegram import visible_text

    text = "**Commands** use `/imagine <prompt>` & friends: a<b, `x`"
    assert to_html(text) == "<b>Commands</b> use <code>/imagine &lt;prompt&gt;</code> &amp; friends: a&lt;b, <code>x</code>"
    assert visible_text(to_html(text), "HTML") == "Commands use /imagine <prompt> & friends: a<b, x"
    long = "\n".join(f"line {i} " + "x" * 90 for i in range(200))
    pieces = chunks(long)
    assert len(pieces) > 4 and all(len(piece) <= 4000 for piece in pieces) and "".join(pieces) == long


async def test_an_unreachable_bot_api_is_retried(tg_settings: Settings, unused_tcp_port: int, caplog) -> None:  # type: ignore[no-untyped-def]
    settings = tg_settings.model_copy(update={"telegram_base_url": f"http://127.0.0.1:{unused_tcp_port}/bot"})
    async with running_chat(settings, TelegramChat, draw=False) as (_, task):
        with caplog.at_level(logging.WARNING):
            await asyncio.sleep(2.5)  # the first two tries, 1 s apart
        assert not task.done()
    assert caplog.text.count("can't reach the Bot API") >= 2


async def test_edit_commands_as_replies_and_a_tiled_preview(tg_settings: Settings, server: FakeTelegram) -> None:
    async with telegram_bot(tg_settings, server):
        theirs = server.send("a photo", photo=png(48, 40))
        zoom = server.send("/zoom 2", reply_to=theirs["message_id"])
        zoomed = await server.await_for(is_photo_reply(zoom))
        assert "Zoom Out 2x" in zoomed.text and zoomed.labels()[: len(EDIT_LABELS)] == EDIT_LABELS
        with Image.open(io.BytesIO(zoomed.uploaded or b"")) as picture:
            assert picture.size == (96, 80)
        await recorded(tg_settings, zoomed.chat_id, zoomed.message_id)
        pan = server.send("/pan left", reply_to=zoomed.message_id)  # a reply to the bot's own result
        panned = await server.await_for(is_photo_reply(pan))
        with Image.open(io.BytesIO(panned.uploaded or b"")) as picture:
            assert picture.size == (144, 80)
        nothing = server.send("/facefix", reply_to=zoomed.message_id)
        assert "SDBOT_FACE_RESTORERS" in (await server.await_for(is_text_reply(nothing))).text

        tiled = server.send("/imagine bricks --tile --size 64x64")
        tile = await server.await_for(is_photo_reply(tiled))
        preview = await server.await_for(lambda m: m.kind == "photo" and m.reply_to == tile.message_id)
        assert preview.labels() == [] and "Tiled" in preview.text
        with Image.open(io.BytesIO(preview.uploaded or b"")) as picture:
            assert picture.size == (128, 128)
        await recorded(tg_settings, tile.chat_id, tile.message_id)
        server.press(tile, "Vary (Subtle)")  # an edit of a tile is a tile: its result is shown 2x2 too
        varied = await server.await_for(lambda m: m.reply_to == tile.message_id and m.kind == "photo" and "🔁" in m.text)
        varied_preview = await server.await_for(lambda m: m.kind == "photo" and m.reply_to == varied.message_id)
        with Image.open(io.BytesIO(varied_preview.uploaded or b"")) as picture:
            assert picture.size == (128, 128) and "Tiled" in varied_preview.text
