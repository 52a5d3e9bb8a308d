"""Issue 16's done-when line in Telegram and Discord: `/train lora foxy` with 4 pictures (a Telegram
album, Discord's /train with image1..image4) reports progress, posts a sample, ends with the LoRA,
`/lora download foxy` sends `foxy.safetensors`, and `<lora:foxy:1>` in /imagine equals bare
diffusers with that downloaded file loaded by `load_lora_weights` (within 2 of 255).

The real clients run against the fake servers (tests/fakes/), with the worker training and
drawing on the tiny model."""

from __future__ import annotations

import asyncio
import io
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
from tests.support.running_chat import recorded, running_chat
from tests.support.train_pictures import picture_bytes
from tests.test_adapters import bare

OPTIONS = "--steps 20 --seed 3 --rank 4 --lr 1e-3 --sample-every 10"
PROMPT = "a red fox in the snow --seed 11 --steps 4 --cfg 7 --sampler euler --size 64x64"


def rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def matches_bare(picture: bytes, models_dir: Path, download: bytes, folder: Path) -> int:
    saved = folder / "foxy.safetensors"  # as a person saves the download
    saved.write_bytes(download)
    return int(np.abs(rgb(picture) - bare(models_dir, saved)).max())


# --- Telegram ----------------------------------------------------------------------------------------


@pytest.fixture
def tg_server():  # type: ignore[no-untyped-def]
    fake = FakeTelegram().start()
    yield fake
    fake.stop()


async def test_train_a_lora_from_a_telegram_album_and_draw_with_it(
    settings: Settings, tg_server: FakeTelegram, models_dir: Path, tmp_path: Path
) -> None:
    server = tg_server
    settings = settings.model_copy(
        update={
            "telegram_token": SecretStr(fake_telegram.TOKEN),
            "telegram_base_url": server.base_url,
            "telegram_album_seconds": 0.5,
            "default_steps": 4,  # the samples' steps
        }
    )
    async with running_chat(settings, TelegramChat, ready=lambda chat: "getUpdates" in server.calls):
        pictures = picture_bytes()
        album = await asyncio.to_thread(
            server.send_album, [(f"/train lora foxy {OPTIONS}", pictures[0]), *((None, p) for p in pictures[1:])]
        )
        first = album[0]
        to_album = server.replies_to(first)
        status = await server.await_for(lambda m: to_album(m) and m.kind == "text", 60)  # `code` shows as code: no backticks
        assert "LoRA foxy from 4 pictures" in status.text and "20 steps" in status.text, status.text
        result = await server.await_for(lambda m: to_album(m) and "trained the LoRA foxy" in m.text, 300)
        assert "<lora:foxy:1>" in result.text
        job = result.text.split("Job ")[1].split(":")[0]
        samples = [m for m in server.sent if m.text.startswith("🧪 Job")]
        assert [m.text.split(":")[0] for m in samples] == [f"🧪 Job {job}, step 10/20"], [m.text for m in samples]
        assert samples[0].kind == "photo" and samples[0].uploaded
        assert server.sent.index(status) < server.sent.index(samples[0]) < server.sent.index(result)
        assert any("step" in edit and "loss" in edit for edit in status.edits), status.edits

        asked = server.send("/lora download foxy")
        document = await server.await_for(lambda m: m.kind == "document" and m.reply_to == asked["message_id"], 60)
        assert document.filename == "foxy.safetensors" and document.uploaded

        drawn_asked = server.send(f"/imagine <lora:foxy:1> {PROMPT}")
        drawn = await server.await_for(lambda m: m.kind == "photo" and m.reply_to == drawn_asked["message_id"], 120)
        assert "🧪" not in drawn.text
        await recorded(settings, drawn.chat_id, drawn.message_id)
        server.press(drawn, "📄 PNG")  # Telegram recompresses photos: compare the original
        original = await server.await_for(lambda m: m.kind == "document" and m.reply_to == drawn.message_id, 60)
        plain_asked = server.send(f"/imagine {PROMPT}")
        plain = await server.await_for(lambda m: m.kind == "photo" and m.reply_to == plain_asked["message_id"], 120)

    assert matches_bare(original.uploaded or b"", models_dir, document.uploaded or b"", tmp_path) <= 2
    assert int(np.abs(rgb(original.uploaded or b"") - rgb(plain.uploaded or b"")).max()) > 10, "the LoRA changes the picture"


# --- Discord -----------------------------------------------------------------------------------------


@pytest.fixture
def dc_server():  # type: ignore[no-untyped-def]
    fake = FakeDiscord().start()
    yield fake
    fake.stop()


def answer_to(interaction: Interaction, containing: str = ""):  # type: ignore[no-untyped-def]
    return lambda m: m.interaction_id == interaction.id and not m.deleted and containing in m.content


async def test_train_a_lora_with_discords_slash_command_and_draw_with_it(
    settings: Settings, dc_server: FakeDiscord, models_dir: Path, tmp_path: Path
) -> None:
    server = dc_server
    settings = settings.model_copy(
        update={
            "discord_token": SecretStr(fake_discord.TOKEN),
            "discord_api_base": server.api_base,
            "discord_gateway_url": server.gateway_url,
            "default_steps": 4,
            "discord_status_edit_seconds": 0.5,
        }
    )
    async with running_chat(settings, DiscordChat, ready=lambda chat: chat.client.is_ready()):
        pictures = {f"image{i + 1}": (f"fox{i}.png", data, "image/png") for i, data in enumerate(picture_bytes())}
        asked = server.slash("train", {"method": "lora", "name": "foxy", "options": OPTIONS}, attachments=pictures)
        status = await server.await_for(answer_to(asked, "LoRA `foxy` from 4 pictures"), 60)
        assert "20 steps" in status.content, status.content
        result = await server.await_for(lambda m: not m.deleted and "trained the LoRA `foxy`" in m.content, 300)
        assert "<lora:foxy:1>" in result.content
        assert result.interaction_id == asked.id or result.reference is not None, "the result answers the request"
        job = result.content.split("Job ")[1].split(":")[0]
        samples = [m for m in server.sent if m.content.startswith("🧪 Job")]
        assert [m.content.split(":")[0] for m in samples] == [f"🧪 Job {job}, step 10/20"], [m.content for m in samples]
        [(name, data)] = samples[0].files.items()
        assert name.endswith(".png") and rgb(data).size, name
        assert server.sent.index(status) < server.sent.index(samples[0]) < server.sent.index(result)
        assert any("step" in edit and "loss" in edit for edit in status.edits), status.edits

        download = server.slash("lora", {"action": "download", "name": "foxy"})
        sent_file = await server.await_for(lambda m: m.interaction_id == download.id and bool(m.files), 60)
        assert list(sent_file.files) == ["foxy.safetensors"]

        drawn_asked = server.slash("imagine", {"prompt": f"<lora:foxy:1> {PROMPT}"})
        drawn = await server.await_for(lambda m: answer_to(drawn_asked)(m) and bool(m.files), 120)
        plain_asked = server.slash("imagine", {"prompt": PROMPT})
        plain = await server.await_for(lambda m: answer_to(plain_asked)(m) and bool(m.files), 120)

    [(name, picture)] = drawn.files.items()
    assert name.endswith(".png")  # Discord keeps the original PNG
    assert matches_bare(picture, models_dir, sent_file.files["foxy.safetensors"], tmp_path) <= 2
    [plain_picture] = plain.files.values()
    assert int(np.abs(rgb(picture) - rgb(plain_picture)).max()) > 10, "the LoRA changes the picture"
