"""Issue 19's first done-when line on the real clients: Ada uploads a LoRA on Telegram, links her
Telegram and Discord with /link, and draws with the LoRA on Discord. Both adapters run against
their fake servers with one database, as two bot processes would. Also: a Discord guild role and
a Telegram group's admins mapped to a role (SDBOT_ROLE_MAP), and no link code in a group chat.
"""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image
from pydantic import SecretStr
from safetensors.torch import save

from bot.discord import DiscordChat
from bot.telegram import TelegramChat
from config import Settings
from generation.models.tiny import build_tiny_pipeline
from tests.fakes import discord as fake_discord
from tests.fakes import telegram as fake_telegram
from tests.fakes.discord import FakeDiscord, Interaction, Sent
from tests.fakes.telegram import FakeTelegram
from tests.support.running_chat import running_chat
from tests.test_adapters import make_lora, to_kohya

CODE = re.compile(r"\b([A-Z0-9]{4}-[A-Z0-9]{4})\b")


@pytest.fixture
def servers():  # type: ignore[no-untyped-def]
    telegram, discord = FakeTelegram().start(), FakeDiscord().start()
    yield telegram, discord
    telegram.stop()
    discord.stop()


def both(settings: Settings, telegram: FakeTelegram, discord: FakeDiscord) -> Settings:
    return settings.model_copy(
        update={
            "telegram_token": SecretStr(fake_telegram.TOKEN),
            "telegram_base_url": telegram.base_url,
            "discord_token": SecretStr(fake_discord.TOKEN),
            "discord_api_base": discord.api_base,
            "discord_gateway_url": discord.gateway_url,
            "default_steps": 2,
            "role_map": {f"discord:{fake_discord.HELPERS_ROLE}": "trusted", "telegram:chat_admin": "trusted"},
        }
    )


def reply_to(message: dict):  # type: ignore[no-untyped-def,type-arg]
    return lambda m: m.chat_id == message["chat"]["id"] and m.reply_to == message["message_id"]


def answer(interaction: Interaction, *, files: bool = False):  # type: ignore[no-untyped-def]
    return lambda m: (
        m.interaction_id == interaction.id
        and not m.deleted
        and bool(m.content)
        and bool(m.files) == files
        and not m.content.startswith("⏳")
    )  # not a job's status message


async def test_link_telegram_and_discord_and_use_a_telegram_lora_on_discord(settings: Settings, servers) -> None:  # type: ignore[no-untyped-def]
    telegram, discord = servers
    settings = both(settings, telegram, discord)
    lora = save(to_kohya(make_lora(build_tiny_pipeline(), 1)))
    async with (
        running_chat(settings, TelegramChat, ready=lambda chat: "getUpdates" in telegram.calls),
        running_chat(settings, DiscordChat, draw=False, ready=lambda chat: chat.client.is_ready()),
    ):
        uploaded = telegram.send("/lora upload fox", document=("fox.safetensors", lora, "application/octet-stream"))
        stored = await telegram.await_for(reply_to(uploaded))
        assert "fox" in stored.text and "LoRA" in stored.text, stored.text

        in_group = telegram.send("/link", chat=fake_telegram.GROUP)
        refused = await telegram.await_for(reply_to(in_group))
        assert "private chat" in refused.text and not CODE.search(refused.text)

        asked = telegram.send("/link")  # in Ada's private chat
        given = await telegram.await_for(reply_to(asked))
        code = CODE.search(given.text)
        assert code, given.text

        not_yet = discord.slash("imagine", {"prompt": "a fox <lora:fox:0.8> --seed 3"})
        first = await discord.await_for(lambda m: m.interaction_id == not_yet.id and bool(m.content) and not m.deleted)
        assert "fox" in first.content and "queued" not in first.content, first.content  # Discord's Ada has no such LoRA yet
        linked = await discord.await_for(answer(discord.slash("link", {"code": code.group(1)})))
        assert linked.ephemeral and "🔗 Linked" in linked.content and "Telegram 1001" in linked.content

        drawn = discord.slash("imagine", {"prompt": "a fox <lora:fox:0.8> --seed 3"})
        result: Sent = await discord.await_for(answer(drawn, files=True), 120)
        [(_, png)] = result.files.items()
        parameters = Image.open(io.BytesIO(png)).text["parameters"]
        assert "<lora:fox:0.8>" in parameters and 'Lora hashes: "fox:' in parameters

        me = await discord.await_for(answer(discord.slash("me")))
        assert me.ephemeral and "Telegram 1001" in me.content and "Discord 1001" in me.content and "Role: default" in me.content

        # Platform roles: Bob has the guild's helpers role on Discord, and owns the Telegram group
        discord.member_roles[fake_discord.BOB["id"]] = [fake_discord.HELPERS_ROLE]
        bob = await discord.await_for(answer(discord.slash("me", user=fake_discord.BOB)))
        assert "Role: trusted" in bob.content
        telegram.chat_admins.add((fake_telegram.GROUP["id"], fake_telegram.BOB["id"]))
        for user, role in ((fake_telegram.BOB, "trusted"), (fake_telegram.ADA, "default")):
            asked = telegram.send("/me", user=user, chat=fake_telegram.GROUP)
            shown = await telegram.await_for(reply_to(asked))
            assert f"Role: {role}" in shown.text, shown.text
        assert telegram.calls.count("getChatMember") == 2  # once per person and group, then cached
