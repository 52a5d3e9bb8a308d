"""Prompt features through the real discord.py client and the fake Discord: the slash commands
/style, /wildcard, /enhance (with its Imagine buttons), /describe, the Describe message menu,
and /imagine's style and regions options."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config import Settings
from tests.fakes.discord import FakeDiscord
from tests.support.tiny_text_models import build_tiny_gpt2
from tests.test_describe_enhance import A1111_PARAMETERS, png_with
from tests.test_discord import answer_to, dc_settings, discord_bot, seen, server  # noqa: F401 - fixtures


def saying(interaction, words: str):  # type: ignore[no-untyped-def]
    """The answer to `interaction` once it says `words` (the deferred "thinking" answer says nothing)."""
    return lambda m: answer_to(interaction)(m) and words in m.content


@pytest.fixture
def dc_prompt_settings(dc_settings: Settings, tmp_path: Path) -> Settings:  # noqa: F811
    return dc_settings.model_copy(update={"enhancer": str(build_tiny_gpt2(tmp_path / "gpt2"))})


async def test_prompt_features_in_discord(dc_prompt_settings: Settings, server: FakeDiscord) -> None:  # noqa: F811
    settings = dc_prompt_settings
    async with discord_bot(settings, server):
        names = {c["name"] for c in server.commands["global"]}
        assert {"describe", "enhance", "styles", "style", "wildcard", "Describe"} <= names

        saved = server.slash("style", {"action": "save", "name": "noir", "template": "{prompt}, film noir", "negative": "color"})
        await server.await_for(saying(saved, "noir"))
        styled = server.slash("imagine", {"prompt": "a fox", "style": "noir", "size": "64x64"})
        result = await seen(settings, await server.await_for(answer_to(styled, files=True)))
        assert "a fox, film noir" in result.content and "style noir" in result.content

        added = server.slash("wildcard", {"action": "add", "name": "moods", "lines": "calm | stormy"})
        await server.await_for(saying(added, "2 lines"))
        wild = server.slash("imagine", {"prompt": "a __moods__ sea", "size": "64x64"})
        drawn = (await server.await_for(answer_to(wild, files=True))).content
        assert re.search(r"Job \d+: a (calm|stormy) sea\n", drawn), drawn  # the pick drawn, not the template

        asked = server.slash("enhance", {"prompt": "a lighthouse", "n": 2, "seed": 1})
        answer = await seen(settings, await server.await_for(saying(asked, "Press Imagine")))
        assert answer.labels() == ["Imagine 1", "Imagine 2"]
        drawn = await server.await_for(answer_to(server.press(answer, "Imagine 1"), files=True))
        assert "a lighthouse" in drawn.content

        regional = server.slash("imagine", {"prompt": "a castle BREAK a dragon", "regions": "cols", "size": "64x64"})
        assert "regions cols" in (await server.await_for(answer_to(regional, files=True))).content

        described = server.slash("describe", attachments={"image": ("fox.png", png_with({"parameters": A1111_PARAMETERS}), "image/png")})
        shown = await seen(settings, await server.await_for(saying(described, "AUTOMATIC1111")))
        assert "AUTOMATIC1111" in shown.content and shown.labels() == ["Imagine this"]
        again = await server.await_for(answer_to(server.press(shown, "Imagine this"), files=True))
        assert "masterpiece" in again.content

        menu = server.context_menu("Describe", result)  # our own picture, from the message menu
        ours = await server.await_for(saying(menu, "this bot"))
        assert "this bot" in ours.content and "a fox, film noir" in ours.content


async def test_a_lora_uploaded_in_discord_draws_as_bare_diffusers(
    dc_prompt_settings: Settings,
    server: FakeDiscord,  # noqa: F811
    models_dir: Path,
    tmp_path: Path,
) -> None:
    import io

    import numpy as np
    from PIL import Image

    from tests.test_adapters import bare, save_kohya_lora

    path = save_kohya_lora(tmp_path / "fox.safetensors")
    settings = dc_prompt_settings.model_copy(update={"default_steps": 4})
    async with discord_bot(settings, server):
        uploaded = server.slash(
            "lora",
            {"action": "upload", "name": "fox"},
            attachments={"file": ("fox.safetensors", path.read_bytes(), "application/octet-stream")},
        )
        await server.await_for(saying(uploaded, "Saved the LoRA"))
        asked = server.slash(
            "imagine", {"prompt": "a red fox in the snow --seed 11 --cfg 7 --sampler euler", "size": "64x64", "lora": "fox:0.6"}
        )
        result = await server.await_for(answer_to(asked, files=True))
        [(_, data)] = result.files.items()
        drawn = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
        assert np.abs(drawn - bare(models_dir, path, 0.6)).max() <= 2


async def test_an_admin_adds_and_removes_a_model_in_discord(dc_settings: Settings, server: FakeDiscord, models_dir: Path) -> None:  # noqa: F811
    from generation.models.tiny import TINY_VERSION
    from tests.fakes.discord import BOB

    settings = dc_settings.model_copy(update={"admin_ids": ["discord:1001"]})  # Ada
    async with discord_bot(settings, server):
        refused = server.slash("model", {"action": "add", "name": "second", "source": str(models_dir / TINY_VERSION)}, user=BOB)
        await server.await_for(saying(refused, "Only admins"))
        added = server.slash(
            "model",
            {
                "action": "add",
                "name": "second",
                "source": str(models_dir / TINY_VERSION),
                "architecture": "sd1",
                "description": "a copy of tiny",
            },
        )
        await server.await_for(saying(added, "Added the model `second`"))
        choices = server.autocomplete("imagine", {"prompt": "x", "model": "sec"}, focused="model")
        await server.await_until(lambda: choices.callbacks)
        assert choices.callbacks[0]["data"]["choices"] == [{"name": "second", "value": "second"}]
        drawn = server.slash("imagine", {"prompt": "a fox", "model": "second", "size": "64x64"}, user=BOB)
        assert "second" in (await server.await_for(answer_to(drawn, files=True))).content
        removed = server.slash("model", {"action": "remove", "name": "second"})
        await server.await_for(saying(removed, "Removed the model `second`"))
        gone = server.slash("imagine", {"prompt": "a fox", "model": "second", "size": "64x64"}, user=BOB)
        await server.await_for(saying(gone, "Unknown model `second`"))
