"""/control and /edit as people use them, on the tiny model, in the console chat (a real
`run_bot.py console --jsonl` process; Telegram and Discord: test_control_telegram.py and
test_control_discord.py). The console's pictures equal bare diffusers' (`StableDiffusionControlNetPipeline`
for one control and for two, `StableDiffusionInstructPix2PixPipeline` for /edit) within 2/255,
given the maps the bot showed, which are the preprocessors' own."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps

from generation.control.preprocess import xdog
from generation.control.tiny import ensure_tiny_pix2pix
from tests.conftest import bot_env
from tests.support.console_process import ConsoleProcess
from tests.test_control_engine import bare


def rgb(path_or_bytes: str | bytes) -> np.ndarray:
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    return np.asarray(Image.open(source).convert("RGB")).astype(int)


def test_control_and_edit_in_the_console_equal_bare_diffusers(tmp_path: Path, models_dir: Path) -> None:
    bot = ConsoleProcess(bot_env(tmp_path / "data", models_dir), tmp_path / "bot.log")
    send = bot.say
    picture = bot.message("result", reply_to=send(text="/imagine a landscape --seed 5 --steps 2 --size 64x64"))
    source = Image.open(picture["images"][0]).convert("RGB")

    one = bot.message("result", reply_to=send(text="/control canny a fox --seed 3 --steps 4 --sampler euler", reply_to=picture["id"]))
    [canny] = [bot.message("map", reply_to=one["id"])]
    expected_map = cv2.Canny(np.asarray(ImageOps.fit(source, (64, 64))), 100, 200)
    assert np.array_equal(rgb(canny["images"][0])[..., 0], expected_map)
    reference = bare(models_dir, ["canny"], image=Image.open(canny["images"][0]), width=64, height=64)
    assert np.abs(rgb(one["images"][0]) - reference).max() <= 2

    two = bot.message(
        "result",
        reply_to=send(text="/control canny a fox --seed 3 --steps 4 --sampler euler --control scribble:0.5", reply_to=picture["id"]),
    )
    maps = [bot.message("map", reply_to=two["id"]) for _ in range(2)]
    assert np.array_equal(rgb(maps[1]["images"][0])[..., 0], xdog(np.asarray(source)))
    reference = bare(
        models_dir,
        ["canny", "scribble"],
        image=[Image.open(m["images"][0]) for m in maps],
        width=64,
        height=64,
        controlnet_conditioning_scale=[1.0, 0.5],
    )
    assert np.abs(rgb(two["images"][0]) - reference).max() <= 2

    edited = bot.message("result", reply_to=send(text="/edit make it snowy --seed 3 --steps 4 --sampler euler", reply_to=picture["id"]))
    from diffusers import EulerDiscreteScheduler, StableDiffusionInstructPix2PixPipeline

    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(
        str(ensure_tiny_pix2pix(models_dir)), safety_checker=None, requires_safety_checker=False
    )
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    reference = pipe(
        "make it snowy",
        image=source,
        num_inference_steps=4,
        guidance_scale=7.0,
        image_guidance_scale=1.5,
        generator=torch.Generator().manual_seed(3),
    ).images[0]
    assert np.abs(rgb(edited["images"][0]) - np.asarray(reference).astype(int)).max() <= 2
    assert "Edit again" in [a["label"] for a in edited["actions"]]

    qr = bot.message("result", reply_to=send(text="/control qr https://example.com a village --steps 2 --size 128x128"))
    decoded, _, _ = cv2.QRCodeDetector().detectAndDecode(rgb(bot.message("map", reply_to=qr["id"])["images"][0]).astype(np.uint8))
    assert decoded == "https://example.com"
    refused = bot.message("error", reply_to=send(text="/control canny a fox"))
    assert "needs a picture" in refused["text"]
    assert bot.finish() == 0
