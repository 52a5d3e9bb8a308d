"""Uploaded LoRAs and embeddings through the command layer: every bad file is refused with a
reason, stored nowhere and listed nowhere, and nothing it carries runs; privacy between two
users; sharing, renaming, deleting; the architecture check at upload and at use."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save
from PIL import Image

from commands.types import Attachment
from generation.tiny import build_tiny_pipeline
from tests.test_adapters import make_lora, to_kohya
from tests.test_asset_files import Payload, raw_file, sdxl_lora  # noqa: F401 - sdxl_lora is a fixture
from tests.test_service import Bot, pixels

PROMPT = "a red fox in the snow --seed 11 --steps 2 --size 64x64"


@pytest.fixture(scope="module")
def kohya_bytes() -> bytes:
    return save(to_kohya(make_lora(build_tiny_pipeline(), 1)))


def blobs_of(bot: Bot) -> set[str]:
    root = bot.core.ctx.settings.data_dir / "blobs"
    return {path.name for path in root.rglob("*") if path.is_file()}


async def upload(bot: Bot, data: bytes, name: str = "fox.safetensors", command: str = "/lora upload", user: str = "alice"):  # type: ignore[no-untyped-def]
    [(_, reply)] = await bot.send(command, user=user, attachments=(Attachment(name, data),))
    return reply


async def test_bad_files_are_refused_stored_nowhere_and_never_run(bot: Bot, tmp_path, sdxl_lora: bytes) -> None:  # noqa: F811
    marker = tmp_path / "pwned"
    unet = build_tiny_pipeline().unet.state_dict()
    bad = {
        "a pickle named .ckpt": (pickle.dumps(Payload(marker)), "fox.ckpt", "pickle"),
        "a pickle named .safetensors": (pickle.dumps(Payload(marker)), "fox.safetensors", "pickle"),
        "a header that claims 2**40 bytes": (raw_file({}, length=2**40), "fox.safetensors", "header"),
        "offsets past the end": (raw_file({"x.lora_down.weight": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}, b"\0" * 8),
                                 "fox.safetensors", "end"),
        "a full UNet posing as a LoRA": (save({k: v.contiguous() for k, v in unet.items()}), "fox.safetensors", "checkpoint"),
        "a LoRA shaped for SDXL": (sdxl_lora, "fox.safetensors", "SDXL"),
    }  # fmt: skip
    before = blobs_of(bot)
    for what, (data, filename, words) in bad.items():
        reply = await upload(bot, data, filename)
        assert reply.kind == "error" and words in reply.text, (what, reply.text)
    assert not marker.exists()
    assert blobs_of(bot) == before  # nothing stored
    [(_, listing)] = await bot.send("/loras")
    assert "none yet" in listing.text
    [(_, nothing)] = await bot.send("/lora upload fox")
    assert nothing.kind == "error" and "Attach" in nothing.text
    [(_, bare_command)] = await bot.send("/lora")  # no verb: the list
    assert "Your LoRAs" in bare_command.text
    [(_, unknown_verb)] = await bot.send("/embedding frobnicate x")
    assert unknown_verb.kind == "error" and "/embedding upload" in unknown_verb.text


async def test_privacy_sharing_and_management(bot: Bot, kohya_bytes: bytes) -> None:
    saved = await upload(bot, kohya_bytes, "My Fox.safetensors")
    assert "`my_fox`" in saved.text and "private" in saved.text
    again = await upload(bot, kohya_bytes, "My Fox.safetensors")
    assert again.kind == "error" and "already have" in again.text

    await bot.send(f"/imagine <lora:my_fox:0.8> {PROMPT}")
    [(_, alices)] = await bot.finish()
    assert 'Lora hashes: "my_fox: ' in Image.open(alices.reply.images[0].path).text["parameters"]

    [(_, hidden)] = await bot.send(f"/imagine <lora:my_fox:0.8> {PROMPT}", user="bob")
    assert hidden.kind == "error" and "don't know a LoRA named `my_fox`" in hidden.text
    [(_, hidden_info)] = await bot.send("/lora info my_fox", user="bob")
    assert hidden_info.kind == "error"
    [(_, bob_list)] = await bot.send("/loras", user="bob")
    assert "my_fox" not in bob_list.text

    [(_, shared)] = await bot.send("/lora share my_fox")
    assert "everyone" in shared.text
    await bot.send(f"/imagine {PROMPT} --lora my_fox:0.8", user="bob")
    [(_, bobs)] = await bot.finish()
    assert np.array_equal(pixels(bobs.reply), pixels(alices.reply))  # --lora NAME:W means <lora:NAME:W>
    [(_, not_his)] = await bot.send("/lora delete my_fox", user="bob")
    assert not_his.kind == "error"

    [(_, renamed)] = await bot.send("/lora rename my_fox fox")
    assert "`fox`" in renamed.text
    [(_, unshared)] = await bot.send("/lora unshare fox")
    assert "private" in unshared.text
    [(_, gone)] = await bot.send(f"/imagine <lora:fox> {PROMPT}", user="bob")
    assert gone.kind == "error"
    [(_, deleted)] = await bot.send("/lora delete fox")
    assert "Deleted" in deleted.text
    [(_, listing)] = await bot.send("/loras")
    assert "none yet" in listing.text


async def test_embeddings_upload_and_use(bot: Bot) -> None:
    vectors = torch.randn(2, 32) * 5  # the tiny model's text width
    reply = await upload(bot, save({"emb_params": vectors}), "shiny.safetensors", command="/embedding upload")
    assert reply.kind == "text" and "`shiny`" in reply.text and "a1111-ti" in reply.text
    as_lora = await upload(bot, save({"emb_params": vectors}), "shiny.safetensors")
    assert as_lora.kind == "error"
    await bot.send(f"/imagine a shiny fox {PROMPT[len('a red fox in the snow'):]}")
    await bot.send(f"/imagine a red fox {PROMPT[len('a red fox in the snow'):]}")
    [(_, with_it), (_, without)] = await bot.finish()
    assert "TI hashes" in Image.open(with_it.reply.images[0].path).text["parameters"]
    assert np.abs(pixels(with_it.reply) - pixels(without.reply)).mean() > 1


async def test_models_and_choosing_one(bot: Bot) -> None:
    [(_, listing)] = await bot.send("/models")
    assert "• tiny — SD 1.x, 64px native (default, yours)" in listing.text
    [(_, chosen)] = await bot.send("/model tiny")
    assert "Saved" in chosen.text and "tiny" in chosen.text
    [(_, unknown)] = await bot.send("/model nope")
    assert unknown.kind == "error" and "Models: tiny" in unknown.text
