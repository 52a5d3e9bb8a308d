"""Issue 19's third done-when line on the real clients: a picture the classifier scores over the
place's threshold arrives as the place's policy says, on Telegram (a `has_spoiler` photo; blurred
with no PNG button once the group's owner sets `/place --nsfw blur`) and on Discord (a `SPOILER_`
attachment; as it is in an age-restricted channel; `/place` only for people who manage the
server), and the decision is recorded. The classifier is tests.test_safety's controlled tiny
safety checker (every picture scores 0.9)."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import SecretStr

from bot.discord import DiscordChat
from bot.telegram import TelegramChat
from config import Settings
from tests.fakes import discord as fake_discord
from tests.fakes import telegram as fake_telegram
from tests.fakes.discord import FakeDiscord, Interaction
from tests.fakes.telegram import FakeTelegram
from tests.support.running_chat import running_chat
from tests.test_safety import controlled_checker


@pytest.fixture(scope="module")
def flagging(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return controlled_checker(tmp_path_factory.mktemp("safety"), 0.9)


def recorded_actions(settings: Settings) -> list[str | None]:
    with sqlite3.connect(settings.data_dir / "sdbot.db") as db:
        return [row[0] for row in db.execute('select safety_action from job_outputs order by job_id, "index"')]


def spread(data: bytes) -> float:
    return float(np.asarray(Image.open(io.BytesIO(data)).convert("L")).astype(float).std())


async def test_telegram_spoilers_then_blurs_a_flagged_picture(settings: Settings, flagging: Path) -> None:
    server = FakeTelegram().start()
    try:
        settings = settings.model_copy(
            update={
                "telegram_token": SecretStr(fake_telegram.TOKEN),
                "telegram_base_url": server.base_url,
                "safety_classifier": str(flagging),
                "default_steps": 2,
            }
        )
        group, bob = fake_telegram.GROUP, fake_telegram.BOB
        server.chat_admins.add((group["id"], bob["id"]))
        async with running_chat(settings, TelegramChat, ready=lambda chat: "getUpdates" in server.calls):

            def photo_for(message):  # type: ignore[no-untyped-def]
                return lambda m: m.kind == "photo" and m.chat_id == group["id"] and m.reply_to == message["message_id"]

            asked = server.send("/imagine a fox --seed 4", chat=group)
            hidden = await server.await_for(photo_for(asked), 120)
            assert hidden.spoiler and "Behind a spoiler" in hidden.text and "📄 PNG" in hidden.labels()

            refused = server.send("/place --nsfw blur", chat=group)  # Ada is no admin of the group
            answer = await server.await_for(lambda m: m.chat_id == group["id"] and m.reply_to == refused["message_id"])
            assert "Only this chat's admins" in answer.text
            changed = server.send("/place --nsfw blur", user=bob, chat=group)
            saved = await server.await_for(lambda m: m.chat_id == group["id"] and m.reply_to == changed["message_id"])
            assert "Saved." in saved.text and "blur (this chat's setting)" in saved.text

            asked = server.send("/imagine a fox --seed 4", chat=group)
            blurred = await server.await_for(photo_for(asked), 120)
            assert not blurred.spoiler and "Blurred by this chat's safety policy" in blurred.text
            assert "📄 PNG" not in blurred.labels()  # no originals here
            assert spread(blurred.uploaded or b"") < spread(hidden.uploaded or b"")
        assert recorded_actions(settings) == ["spoiler", "blur"]
    finally:
        server.stop()


def answer(interaction: Interaction, *, files: bool):  # type: ignore[no-untyped-def]
    return lambda m: (
        m.interaction_id == interaction.id
        and not m.deleted
        and bool(m.content)
        and bool(m.files) == files
        and not m.content.startswith("⏳")
    )


async def test_discord_spoilers_outside_age_restricted_channels(settings: Settings, flagging: Path) -> None:
    server = FakeDiscord().start()
    try:
        settings = settings.model_copy(
            update={
                "discord_token": SecretStr(fake_discord.TOKEN),
                "discord_api_base": server.api_base,
                "discord_gateway_url": server.gateway_url,
                "safety_classifier": str(flagging),
                "default_steps": 2,
                "admin_ids": [f"discord:{fake_discord.ADA['id']}"],
            }
        )
        server.member_permissions[fake_discord.BOB["id"]] = str(1 << 10)  # view channel only
        async with running_chat(settings, DiscordChat, ready=lambda chat: chat.client.is_ready()):
            general = await server.await_for(answer(server.slash("imagine", {"prompt": "a fox --seed 4"}), files=True), 120)
            [name] = general.files
            assert name.startswith("SPOILER_") and "Behind a spoiler" in general.content
            after_dark = server.slash("imagine", {"prompt": "a fox --seed 4"}, channel=fake_discord.AFTER_DARK)
            shown = await server.await_for(answer(after_dark, files=True), 120)
            [name] = shown.files
            assert not name.startswith("SPOILER_") and "spoiler" not in shown.content

            denied = await server.await_for(answer(server.slash("place", {"nsfw": "block"}, user=fake_discord.BOB), files=False))
            assert "Only this chat's admins" in denied.content
            saved = await server.await_for(answer(server.slash("place", {"nsfw": "block"}), files=False))
            assert "block (this chat's setting)" in saved.content
            blocked = await server.await_for(answer(server.slash("imagine", {"prompt": "a fox --seed 4"}), files=True), 120)
            [(name, data)] = blocked.files.items()
            assert not name.startswith("SPOILER_") and "Withheld by this chat's safety policy" in blocked.content
            assert (np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) == 128).all()

            # An admin's review of the withheld job: its original PNGs, which only the admin sees.
            job = blocked.content.split("Job ")[1].split()[0].strip(":·,")
            review = server.slash("admin", {"action": "review", "args": job})
            originals = await server.await_for(lambda m: m.interaction_id == review.id and m.ephemeral and bool(m.content))
            assert "originals, for review" in originals.content and "1: 0.90 (block)" in originals.content, originals.content
            [(name, png)] = originals.files.items()
            assert name == f"sdbot-{job}-1-seed4.png"
            assert "Seed: 4" in Image.open(io.BytesIO(png)).text["parameters"]  # the original, not the grey placeholder
        assert recorded_actions(settings) == ["spoiler", "allow", "block"]
    finally:
        server.stop()
