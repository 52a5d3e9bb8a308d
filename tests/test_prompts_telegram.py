"""Prompt features through the real python-telegram-bot client and the fake Bot API: styles,
wildcards, /enhance with its Imagine buttons, --regions, and /describe of a PNG sent as a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import Settings
from tests.fakes.telegram import FakeTelegram
from tests.support.running_chat import recorded
from tests.support.tiny_text_models import build_tiny_gpt2
from tests.test_describe_enhance import A1111_PARAMETERS, A1111_PROMPT, png_with
from tests.test_telegram import is_photo_reply, is_text_reply, server, telegram_bot, tg_settings  # noqa: F401 - fixtures


@pytest.fixture
def tg_prompt_settings(tg_settings: Settings, tmp_path: Path) -> Settings:  # noqa: F811
    return tg_settings.model_copy(update={"enhancer": str(build_tiny_gpt2(tmp_path / "gpt2"))})


async def test_prompt_features_in_telegram(tg_prompt_settings: Settings, server: FakeTelegram) -> None:  # noqa: F811
    settings = tg_prompt_settings
    async with telegram_bot(settings, server):
        saved = server.send("/style save noir {prompt}, film noir --no color")
        await server.await_for(is_text_reply(saved, "noir"))
        styled = server.send("/imagine a fox --style noir --size 64x64")
        assert "style noir" in (await server.await_for(is_photo_reply(styled))).text

        added = server.send("/wildcard add moods calm | stormy")  # updates run concurrently: wait for it
        await server.await_for(is_text_reply(added, "2 lines"))
        wild = server.send("/imagine a __moods__ sea --size 64x64")
        first_line = (await server.await_for(is_photo_reply(wild))).text.split("\n")[0]
        assert first_line.endswith(("a calm sea", "a stormy sea")), first_line  # the pick drawn, not the template

        asked = server.send("/enhance a lighthouse --n 2 --seed 1")
        answer = await server.await_for(lambda m: m.reply_to == asked["message_id"] and "Press Imagine" in m.text)
        assert answer.labels() == ["Imagine 1", "Imagine 2"]
        await recorded(settings, answer.chat_id, answer.message_id)
        server.press(answer, "Imagine 2")
        await server.await_for(lambda m: m.kind == "photo" and "a lighthouse" in m.text)

        regional = server.send("/imagine a castle BREAK a dragon --regions cols --size 64x64")
        assert "regions cols" in (await server.await_for(is_photo_reply(regional))).text

        described = server.send("/describe", document=("fox.png", png_with({"parameters": A1111_PARAMETERS}), "image/png"))
        shown = await server.await_for(is_text_reply(described, "AUTOMATIC1111"))
        assert "masterpiece" in shown.text and shown.labels() == ["Imagine this"]
        await recorded(settings, shown.chat_id, shown.message_id)
        server.press(shown, "Imagine this")
        drawn = await server.await_for(lambda m: m.kind == "photo" and "masterpiece" in m.text)
        assert A1111_PROMPT.split("\n")[0][:40] in drawn.text.replace("\n", " ")  # drawn without the LoRA it names


async def test_a_lora_uploaded_in_telegram_draws_as_bare_diffusers(
    tg_prompt_settings: Settings,
    server: FakeTelegram,  # noqa: F811
    models_dir: Path,
    tmp_path: Path,
) -> None:
    import io

    import numpy as np
    from PIL import Image

    from tests.test_adapters import bare, save_kohya_lora

    path = save_kohya_lora(tmp_path / "fox.safetensors")
    settings = tg_prompt_settings.model_copy(update={"default_steps": 4})
    async with telegram_bot(settings, server):
        uploaded = server.send("/lora upload fox", document=("fox.safetensors", path.read_bytes(), "application/octet-stream"))
        await server.await_for(is_text_reply(uploaded, "Saved the LoRA"))
        asked = server.send("/imagine <lora:fox:0.6> a red fox in the snow --seed 11 --cfg 7 --sampler euler --size 64x64")
        photo = await server.await_for(is_photo_reply(asked))
        await recorded(settings, photo.chat_id, photo.message_id)
        server.press(photo, "📄 PNG")  # the original PNG: Telegram recompresses photos
        document = await server.await_for(lambda m: m.kind == "document" and m.reply_to == photo.message_id)
        drawn = np.asarray(Image.open(io.BytesIO(document.uploaded or b"")).convert("RGB")).astype(int)
        assert np.abs(drawn - bare(models_dir, path, 0.6)).max() <= 2
