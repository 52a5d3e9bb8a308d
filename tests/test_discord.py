"""The Discord adapter, end to end: the real discord.py client against the fake Discord REST API
and gateway in tests/fakes/discord.py, with the tiny model drawing.

The first test runs `run_bot.py serve` as a real process; the others run the adapter in this
process.
"""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import SecretStr

from bot.discord import DiscordChat
from config import Settings
from tests.conftest import bot_env
from tests.fakes.discord import AFTER_DARK, BOB, GUILD_ID, TOKEN, FakeDiscord, Interaction, Sent
from tests.support.labels import EDIT_LABELS
from tests.support.menus import COMMAND_MENU
from tests.support.running_chat import recorded, running_chat
from tests.support.serve_process import ServeProcess


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    fake = FakeDiscord().start()
    yield fake
    fake.stop()


def png(width: int = 64, height: int = 64, noise: bool = False) -> bytes:
    out = io.BytesIO()
    if noise:
        Image.fromarray(np.random.default_rng(1).integers(0, 255, (height, width, 3), dtype=np.uint8)).save(out, format="PNG")
    else:
        Image.new("RGB", (width, height), (200, 40, 40)).save(out, format="PNG")
    return out.getvalue()


def answer_to(interaction: Interaction, *, files: bool | None = None, ephemeral: bool | None = None):  # type: ignore[no-untyped-def]
    def matches(m: Sent) -> bool:
        return (
            m.interaction_id == interaction.id
            and not m.deleted
            and (files is None or bool(m.files) == files)
            and (ephemeral is None or m.ephemeral == ephemeral)
            and "queued" not in m.content
        )

    return matches


async def seen(settings: Settings, message: Sent) -> Sent:
    """`message` once the bot has recorded it (see `recorded`)."""
    await recorded(settings, message.channel_id, message.id)
    return message


def test_serve_answers_in_discord_and_buttons_survive_a_restart(tmp_path: Path, models_dir: Path, server: FakeDiscord) -> None:
    env = bot_env(
        tmp_path / "data",
        models_dir,
        SDBOT_DISCORD_TOKEN=TOKEN,
        SDBOT_DISCORD_API_BASE=server.api_base,
        SDBOT_DISCORD_GATEWAY_URL=server.gateway_url,
        SDBOT_LOG_LEVEL="DEBUG",
    )
    log_path = tmp_path / "bot.log"
    bot = ServeProcess(env, log_path)
    try:
        server.wait_until(lambda: server.identified == 1 and "global" in server.commands, 120)
        names = [c["name"] for c in server.commands["global"]]
        assert names == [*COMMAND_MENU, "Remix", "Describe", "Control"]
        steps = next(o for c in server.commands["global"] if c["name"] == "imagine" for o in c["options"] if o["name"] == "steps")
        assert "1–100" in steps["description"]  # bounds from the settings, in the declaration's words

        asked = server.slash("imagine", {"prompt": "a cat", "steps": 2, "size": "64x64"})
        result = server.wait_for(answer_to(asked, files=True))
        assert asked.callbacks[0] == {"type": 5}  # deferred first
        status = next(m for m in server.sent if m.id == asked.original)  # "thinking…", then the status
        assert result.labels() == [*EDIT_LABELS, "Reroll"] and "a cat" in result.content
        [(name, data)] = result.files.items()
        with Image.open(io.BytesIO(data)) as picture:  # the original PNG, parameters and all
            assert name.endswith(".png") and picture.size == (64, 64) and "Steps: 2" in picture.info["parameters"]
        server.wait_until(lambda: status.deleted, 30)

        bigger = server.wait_for(answer_to(server.press(result, "Upscale 2x"), files=True))
        assert bigger.labels() == EDIT_LABELS and "Upscale 2x (lanczos)" in bigger.content  # no Reroll: lanczos is fixed
        [(_, data)] = bigger.files.items()
        with Image.open(io.BytesIO(data)) as picture:
            assert picture.size == (128, 128)
        varied = server.wait_for(answer_to(server.press(result, "Vary (Strong)"), files=True))
        assert "🔁" in varied.content and varied.labels() == [*EDIT_LABELS, "Reroll"]

        bad = server.slash("imagine", {"prompt": "a cat", "steps": 5000, "cfg": 99.0})
        error = server.wait_for(answer_to(bad, ephemeral=True))
        assert "`steps: 5000` is out of bounds" in error.content and "`cfg: 99.0` is out of bounds" in error.content
    finally:
        assert bot.stop() == 0

    bot = ServeProcess(env, log_path)  # restart: the old buttons still work
    try:
        server.wait_until(lambda: server.identified == 2, 120)
        pressed = server.press(result, "Reroll")
        # The interaction token of the press lives in the new process, so the result is its followup.
        rerolled = server.wait_for(answer_to(pressed, files=True), 120)
        assert "Job 4" in rerolled.content
    finally:
        assert bot.stop() == 0
    assert TOKEN not in log_path.read_text(), "the bot token reached the log"


@pytest.fixture
def dc_settings(settings: Settings, server: FakeDiscord) -> Settings:
    return settings.model_copy(
        update={
            "discord_token": SecretStr(TOKEN),
            "discord_api_base": server.api_base,
            "discord_gateway_url": server.gateway_url,
            "default_steps": 2,
            "discord_status_edit_seconds": 0.5,
        }
    )


def discord_bot(settings: Settings, server: FakeDiscord, *, draw: bool = True):  # type: ignore[no-untyped-def]
    """The adapter in this process, once it is connected and ready."""
    return running_chat(settings, DiscordChat, draw=draw, ready=lambda chat: chat.client.is_ready())


async def test_remix_menu_and_replies(dc_settings: Settings, server: FakeDiscord) -> None:
    settings = dc_settings.model_copy(update={"discord_message_content": True})
    async with discord_bot(settings, server):
        assert server.intents is not None and server.intents & (1 << 15)  # message content was asked for
        asked = server.slash("imagine", {"prompt": "two foxes", "n": 2, "size": "64x64"})
        grid = await seen(settings, await server.await_for(answer_to(asked, files=True)))
        [(name, data)] = grid.files.items()
        assert name.endswith("grid.png") and Image.open(io.BytesIO(data)).size == (64 * 2 + 4, 64)
        assert grid.labels() == ["U1", "U2", "V1", "V2", "Reroll"]

        # Remix on the bot's batch asks to pick one; on U2's image it remixes
        menu = server.context_menu("Remix", grid)
        await server.await_until(lambda: menu.callbacks)
        assert menu.callbacks[0]["type"] == 9  # a modal
        [field] = server.modal_fields(menu)
        vague = server.submit_modal(menu, {field: "in winter"})
        assert "Press U1–U2" in (await server.await_for(answer_to(vague, ephemeral=True))).content
        single = await seen(settings, await server.await_for(answer_to(server.press(grid, "U2"), files=True)))
        menu = server.context_menu("Remix", single)
        await server.await_until(lambda: menu.callbacks)
        remixed = await server.await_for(answer_to(server.submit_modal(menu, {field: "in winter --steps 2"}), files=True))
        assert "🔁" in remixed.content and "in winter" in remixed.content

        # Remix on a person's image; and on a message without one
        theirs = server.post("look at this", user=BOB, attachments=[("red.png", png(), "image/png")])
        menu = server.context_menu("Remix", theirs)
        await server.await_until(lambda: menu.callbacks)
        remixed = await server.await_for(answer_to(server.submit_modal(menu, {field: "oil painting"}), files=True))
        assert "🔁" in remixed.content
        words = server.post("no picture here", user=BOB)
        menu = server.context_menu("Remix", words)
        await server.await_until(lambda: menu.callbacks)
        refused = await server.await_for(answer_to(server.submit_modal(menu, {field: "oil painting"}), ephemeral=True))
        assert "no image" in refused.content

        # With the message content intent, a text reply to a result remixes it
        reply = server.post("as a mosaic --steps 2", reply_to=single.id)
        status = await server.await_for(lambda m: m.reference == reply["id"])
        assert "queued" in status.content
        delivered = await server.await_for(lambda m: "as a mosaic" in m.content and "<@1001>" in m.content and m.files)
        assert "🔁" in delivered.content  # no interaction token: posted in the channel, naming the user
        assert delivered.reference == reply["id"]  # as a reply to the message that asked


async def test_uploads_limits_and_age_restricted_channels(dc_settings: Settings, server: FakeDiscord) -> None:
    settings = dc_settings.model_copy(update={"max_upload_bytes": 4096})
    server.upload_limit = 6000  # the interaction's attachment_size_limit, and what the fake accepts
    async with discord_bot(settings, server):
        big = server.slash("imagine", {"prompt": "from this"}, attachments={"image": ("big.png", png(80, 80, noise=True), "image/png")})
        error = await server.await_for(answer_to(big, ephemeral=True))
        assert "`big.png` is 18.9 KiB; I take images up to 4 KiB" in error.content
        small = server.slash("imagine", {"prompt": "from this", "steps": 2}, attachments={"image": ("red.png", png(), "image/png")})
        result = await server.await_for(answer_to(small, files=True))
        assert "🔁" in result.content

        # a result over the upload limit is re-encoded to fit, and says so
        noisy = server.slash("imagine", {"prompt": "noise", "size": "128x128"}, channel=AFTER_DARK)
        fitted = await server.await_for(answer_to(noisy, files=True))
        [(name, data)] = fitted.files.items()
        assert len(data) <= 6000 and name.endswith(".jpg") and "re-encoded as JPEG" in fitted.content
        assert "🔞" in fitted.content  # asked for in an age-restricted channel
        assert "🔞" not in result.content


async def test_guild_sync_autocomplete_and_stale_buttons(dc_settings: Settings, server: FakeDiscord) -> None:
    settings = dc_settings.model_copy(update={"discord_guild_ids": [GUILD_ID]})
    async with discord_bot(settings, server, draw=False):
        assert "global" not in server.commands and [c["name"] for c in server.commands[GUILD_ID]][0] == "imagine"
        choices = server.autocomplete("imagine", {"prompt": "x", "model": "ti"}, focused="model")
        await server.await_until(lambda: choices.callbacks)
        assert choices.callbacks[0] == {"type": 8, "data": {"choices": [{"name": "tiny", "value": "tiny"}]}}

        wide = server.slash("imagine", {"prompt": "wide", "aspect": "3:2", "negative": "fog"})
        await server.await_until(lambda: any(m.id == wide.original and "88x64" in m.content for m in server.sent))

        old = server.plant("🖼️ Job 7: from before the database was wiped", {"U1": "sdbot:upscale:1"})
        stale = server.press(old, "U1")
        answer = await server.await_for(answer_to(stale, ephemeral=True))
        assert "don't know that message" in answer.content


async def test_a_refused_token_stops_with_a_clear_message(dc_settings: Settings, server: FakeDiscord, caplog) -> None:  # type: ignore[no-untyped-def]
    settings = dc_settings.model_copy(update={"discord_token": SecretStr("wrong")})
    with caplog.at_level(logging.ERROR):
        async with discord_bot(settings, server, draw=False) as (_, task):
            assert await asyncio.wait_for(task, 30) == 2
    assert "Discord refused SDBOT_DISCORD_TOKEN" in caplog.text


async def test_an_unreachable_discord_is_retried(dc_settings: Settings, unused_tcp_port: int, caplog) -> None:  # type: ignore[no-untyped-def]
    settings = dc_settings.model_copy(update={"discord_api_base": f"http://127.0.0.1:{unused_tcp_port}/api/v10"})
    async with running_chat(settings, DiscordChat, draw=False) as (_, task):
        with caplog.at_level(logging.WARNING):
            await asyncio.sleep(2.5)  # the first two tries, 1 s apart
        assert not task.done()
    assert caplog.text.count("can't reach Discord") >= 2


async def test_the_status_message_shows_progress_then_goes(dc_settings: Settings, server: FakeDiscord) -> None:
    settings = dc_settings.model_copy(update={"progress_seconds": 0.05, "discord_status_edit_seconds": 0.3})
    async with discord_bot(settings, server):
        asked = server.slash("imagine", {"prompt": "a slow one", "steps": 60, "size": "64x64"})
        await server.await_for(answer_to(asked, files=True), 120)
        status = next(m for m in server.sent if m.id == asked.original)
        await server.await_until(lambda: status.deleted)
        assert any("step" in edit for edit in status.edits), status.edits


async def test_edit_commands_and_a_tiled_preview(dc_settings: Settings, server: FakeDiscord) -> None:
    async with discord_bot(dc_settings, server):
        names = [c["name"] for c in server.commands["global"]]
        assert {"upscale", "vary", "zoom", "pan", "inpaint", "facefix"} <= set(names)
        upscale = server.slash("upscale", {"factor": 4}, attachments={"image": ("red.png", png(40, 30), "image/png")})
        bigger = await server.await_for(answer_to(upscale, files=True))
        [(_, data)] = bigger.files.items()
        assert Image.open(io.BytesIO(data)).size == (160, 120) and bigger.labels() == EDIT_LABELS

        mask = png(40, 30)  # all red: a mask that is white where it is light (here: nowhere but red > 128)
        inpaint = server.slash(
            "inpaint",
            {"prompt": "a hat", "box": "0,0,50%,50%"},
            attachments={"image": ("red.png", png(64, 64), "image/png"), "mask": ("m.png", mask, "image/png")},
        )
        assert "one way" in (await server.await_for(answer_to(inpaint, ephemeral=True))).content  # box and mask both

        tiled = server.slash("imagine", {"prompt": "bricks --tile", "size": "64x64"})
        result = await server.await_for(answer_to(tiled, files=True))
        assert len(result.files) == 2  # the tile, then the same tiled 2x2
        sizes = sorted(Image.open(io.BytesIO(data)).size for data in result.files.values())
        assert sizes == [(64, 64), (128, 128)]
        varied = await server.await_for(answer_to(server.press(await seen(dc_settings, result), "Vary (Subtle)"), files=True))
        assert "🔁" in varied.content and len(varied.files) == 2  # an edit of a tile is a tile, shown 2x2 too
        twice = server.slash("imagine", {"prompt": "bricks --steps 3", "steps": 2})
        assert "`steps:` and `--steps`" in (await server.await_for(answer_to(twice, ephemeral=True))).content
