"""/describe and /enhance through the command layer with a real worker: metadata answers at once
(an A1111 PNG, a ComfyUI PNG, ours: "Imagine this" draws ours again pixel for pixel), the model
path with tiny random BLIP and CLIP, and /enhance with a tiny random GPT-2, with its buttons."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from commands.frame.types import Attachment
from tests.support.tiny_text_models import build_tiny_blip, build_tiny_clip, build_tiny_gpt2
from tests.test_service import Bot, make_bot, pixels

A1111_PROMPT = "masterpiece, a (red:1.2) fox in the snow, <lora:fluffy:0.8>\nwinter forest"
A1111_PARAMETERS = (
    f"{A1111_PROMPT}\nNegative prompt: blurry, lowres\n"
    "Steps: 3, Sampler: Euler a, Schedule type: Automatic, CFG scale: 6.5, Seed: 1234, Size: 96x64, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Clip skip: 2, Version: v1.10.1"
)


def png_with(chunks: dict[str, str], size: tuple[int, int] = (64, 48)) -> bytes:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 120, 200)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def parameters(reply, index: int = 0) -> str:  # type: ignore[no-untyped-def]
    return Image.open(reply.images[index].path).text["parameters"]


async def test_describe_an_a1111_png_returns_its_prompt_and_imagines_it(bot: Bot) -> None:
    picture = Attachment("fox.png", png_with({"parameters": A1111_PARAMETERS}), "image/png")
    [(answer_id, answer)] = await bot.send("/describe", attachments=(picture,))
    assert answer.kind == "result" and "AUTOMATIC1111" in answer.text
    assert A1111_PROMPT in answer.text and "Negative prompt: blurry, lowres" in answer.text
    assert "v1-5-pruned-emaonly" in answer.text  # a model this bot doesn't have: said so
    assert [a.label for a in answer.actions] == ["Imagine this"]
    assert await bot.finish() == []  # answered at once: nothing was queued
    [(_, info)] = await bot.send(f"/info {answer.job_id}")
    assert "(describe)" in info.text and A1111_PROMPT in info.text
    assert "a description of a picture" in await bot.history()

    [(_, queued)] = await bot.press(answer_id, "Imagine this")
    assert queued.kind == "status" and "without the LoRA `fluffy`" in queued.text  # one this user hasn't got
    [(_, result)] = await bot.finish()
    text = parameters(result.reply)
    assert text.startswith(f"{A1111_PROMPT.replace('<lora:fluffy:0.8>', '')}\nNegative prompt: blurry, lowres\n")
    for field in ("Steps: 3", "Sampler: Euler a", "CFG scale: 6.5", "Seed: 1234", "Size: 96x64", "Clip skip: 2"):
        assert field in text, field


async def test_describe_a_comfyui_png(bot: Bot) -> None:
    graph = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "fog", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 99,
                "steps": 2,
                "cfg": 5.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
    }
    picture = Attachment("comfy.png", png_with({"prompt": json.dumps(graph)}), "image/png")
    [(answer_id, answer)] = await bot.send("/describe", attachments=(picture,))
    assert "ComfyUI" in answer.text and "a lighthouse at dusk" in answer.text and "fog" in answer.text
    await bot.press(answer_id, "Imagine this")
    [(_, result)] = await bot.finish()
    text = parameters(result.reply)
    assert text.startswith("a lighthouse at dusk\nNegative prompt: fog\n")
    assert "Seed: 99" in text and "Steps: 2" in text and "Sampler: Euler," in text


async def test_imagine_this_draws_our_picture_again_pixel_for_pixel(bot: Bot) -> None:
    await bot.send("/imagine a (red:1.3) fox, [blurry] --seed 5 --steps 3 --sampler euler")
    [(single_id, result)] = await bot.finish()
    [(answer_id, answer)] = await bot.send("/describe", reply_to=single_id)
    assert "this bot" in answer.text and "a (red:1.3) fox, [blurry]" in answer.text
    await bot.press(answer_id, "Imagine this")
    [(_, again)] = await bot.finish()
    assert again.reply.images[0].seed == 5 and np.array_equal(pixels(again.reply), pixels(result.reply))

    # Image 2 of a batch is drawn again alone with its seed (6): equal but for the float
    # rounding of a batch of one against a batch of two (docs/rules.md, "Reproducibility": within 2 of 255).
    await bot.send("/imagine a (red:1.3) fox, [blurry] --seed 5 --steps 3 --sampler euler --n 2")
    [(batch_id, batch)] = await bot.finish()
    [(single_id, _)] = await bot.press(batch_id, "U2")
    [(answer_id, answer)] = await bot.send("/describe", reply_to=single_id)
    await bot.press(answer_id, "Imagine this")
    [(_, again)] = await bot.finish()
    assert again.reply.images[0].seed == 6
    assert np.abs(pixels(again.reply) - pixels(batch.reply, 1)).max() <= 2

    # A remix (img2img) sent back as a file, as a person would after saving it: the same job,
    # its input picture included.
    [(_, _)] = await bot.send("as a blue fox --strength 0.6 --n 1", reply_to=single_id)
    [(_, remix)] = await bot.finish()
    saved = Attachment("saved.png", Path(remix.reply.images[0].path).read_bytes(), "image/png")
    [(answer_id, answer)] = await bot.send("/describe", attachments=(saved,), user="bob")
    await bot.press(answer_id, "Imagine this", user="bob")
    [(_, again)] = await bot.finish()
    assert again.user_id == "bob" and np.array_equal(pixels(again.reply), pixels(remix.reply))


async def test_describe_without_metadata_needs_a_caption_model(bot: Bot) -> None:
    photo = Attachment("photo.png", png_with({}), "image/png")
    [(_, refused)] = await bot.send("/describe", attachments=(photo,))
    assert refused.kind == "error" and "SDBOT_CAPTIONER" in refused.text
    [(_, nothing)] = await bot.send("/describe")
    assert nothing.kind == "error" and "reply to one" in nothing.text
    assert await bot.finish() == []


@pytest.fixture(scope="module")
def text_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("text-models")
    return {
        "enhancer": build_tiny_gpt2(folder / "gpt2"),
        "captioner": build_tiny_blip(folder / "blip"),
        "describe_clip": build_tiny_clip(folder / "clip"),
    }


async def test_describe_with_caption_and_clip_models(settings, text_models) -> None:  # type: ignore[no-untyped-def]
    bot = await make_bot(
        settings.model_copy(update={"captioner": str(text_models["captioner"]), "describe_clip": str(text_models["describe_clip"])})
    )
    try:
        photo = Attachment("photo.png", png_with({}, size=(96, 64)), "image/png")
        [(_, queued)] = await bot.send("/describe", attachments=(photo,))
        assert queued.kind == "status" and "a description of a picture" in queued.text
        [(answer_id, answer)] = await bot.finish()
        labels = [a.label for a in answer.reply.actions]
        assert 1 <= len(labels) <= 4 and labels[0] in ("Imagine this", "Imagine 1")
        first_line = answer.reply.text.split("\n")[1]
        await bot.press(answer_id, labels[0])
        [(_, result)] = await bot.finish()
        prompt = parameters(result.reply).split("\nNegative prompt:")[0].split("\nSteps:")[0]
        assert prompt and prompt in first_line
        assert result.reply.images[0].width / result.reply.images[0].height == pytest.approx(1.5, rel=0.1)
    finally:
        bot.worker.executor.shutdown()
        await bot.core.db.close()


async def test_enhance_writes_prompts_with_imagine_buttons(settings, text_models) -> None:  # type: ignore[no-untyped-def]
    [(_, refused)] = await (bot0 := await make_bot(settings)).send("/enhance a fox")
    assert refused.kind == "error" and "SDBOT_ENHANCER" in refused.text
    bot0.worker.executor.shutdown()
    await bot0.core.db.close()

    bot = await make_bot(settings.model_copy(update={"enhancer": str(text_models["enhancer"]), "default_steps": 2}))
    try:
        for bad, words in [("/enhance", "few words"), ("/enhance a fox --n 5", "1 to 4"), ("/enhance a fox --seed x", "seed")]:
            [(_, reply)] = await bot.send(bad)
            assert reply.kind == "error" and words in reply.text, (bad, reply.text)
        await bot.send("/enhance a fox in the snow --n 3 --seed 4")
        [(answer_id, answer)] = await bot.finish()
        assert [a.label for a in answer.reply.actions] == ["Imagine 1", "Imagine 2", "Imagine 3"]
        candidates = [line.split(". ", 1)[1] for line in answer.reply.text.split("\n")[1:4]]
        assert all(c.startswith("a fox in the snow") for c in candidates)

        await bot.send("/enhance a fox in the snow --n 3 --seed 4")
        [(_, same)] = await bot.finish()
        assert same.reply.text.split("\n")[1:4] == answer.reply.text.split("\n")[1:4]  # deterministic per seed

        await bot.press(answer_id, "Imagine 2")
        [(_, result)] = await bot.finish()
        assert parameters(result.reply).startswith(candidates[1] + "\n")
    finally:
        bot.worker.executor.shutdown()
        await bot.core.db.close()
