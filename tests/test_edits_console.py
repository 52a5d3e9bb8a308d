"""The edits in the console chat, as a user (or script) drives `run_bot.py console --jsonl`:
generate, press U1, press each of the twelve buttons under the single image, then reply to a
result with /inpaint (box), /upscale 4 --method esrgan and /facefix — with an upscaler and a face
model configured the way an admin would (files named in the environment)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import bot_env
from tests.support.console_process import ConsoleProcess
from tests.support.face_models import write_restoreformer
from tests.support.labels import EDIT_LABELS
from tests.support.sr_models import write_esrgan

# label -> (size of its result, words its result message shows)
EXPECTED = {
    "Upscale 2x": ((128, 128), "Upscale 2x (esrgan)"),
    "Upscale 4x": ((256, 256), "Upscale 4x (esrgan)"),
    "Vary (Subtle)": ((64, 64), "Vary (Subtle)"),
    "Vary (Strong)": ((64, 64), "Vary (Strong)"),
    "Zoom Out 1.5x": ((96, 96), "Zoom Out 1.5x"),
    "Zoom Out 2x": ((128, 128), "Zoom Out 2x"),
    "⬅": ((96, 64), "Pan left"),
    "➡": ((96, 64), "Pan right"),
    "⬆": ((64, 96), "Pan up"),
    "⬇": ((64, 96), "Pan down"),
}


def size_of(path: str) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def test_every_edit_in_the_console(tmp_path: Path, models_dir: Path) -> None:
    upscaler = write_esrgan(tmp_path / "x4.safetensors", scale=4)
    face_model = write_restoreformer(tmp_path / "restoreformer.safetensors")
    env = bot_env(
        tmp_path / "data",
        models_dir,
        SDBOT_DEFAULT_STEPS="2",
        SDBOT_UPSCALERS=f"x4={upscaler}",
        SDBOT_FACE_RESTORERS=f"restoreformer={face_model}",
        SDBOT_UPSCALE_TILE="32",
    )
    bot = ConsoleProcess(env, tmp_path / "bot.log")
    send = bot.say  # sends a line, returns its input id

    asked = send(text="/imagine a red fox --seed 5 --n 2 --size 64x64")
    batch = bot.message("result", reply_to=asked)
    single = bot.message("single", reply_to=send(press={"message": batch["id"], "action": "U1"}))
    assert [a["label"] for a in single["actions"]] == EDIT_LABELS

    results = {}
    for label in EDIT_LABELS:
        pressed = send(press={"message": single["id"], "action": label})
        if label in ("Face fix", "Detail"):  # the picture is noise: no face, and the bot says so
            assert "no face" in bot.message("failure", reply_to=pressed)["text"]
            continue
        results[label] = result = bot.message("result", reply_to=pressed)
        size, words = EXPECTED[label]
        assert size_of(result["images"][0]) == size and words in result["text"], label
        assert [a["label"] for a in result["actions"]][: len(EDIT_LABELS)] == EDIT_LABELS  # its own buttons

    # The zoomed-out picture keeps the original, pixel for pixel, in its middle.
    original = np.asarray(Image.open(single["images"][0]).convert("RGB"))
    zoomed = np.asarray(Image.open(results["Zoom Out 2x"]["images"][0]).convert("RGB"))
    assert np.array_equal(zoomed[32:96, 32:96], original)

    target = results["Vary (Strong)"]["id"]
    inpainted = bot.message("result", reply_to=send(text="/inpaint a red hat --box 10%,0%,50%,40%", reply_to=target))
    assert "Inpaint" in inpainted["text"] and size_of(inpainted["images"][0]) == (64, 64)
    before = np.asarray(Image.open(results["Vary (Strong)"]["images"][0]).convert("RGB")).astype(int)
    after = np.asarray(Image.open(inpainted["images"][0]).convert("RGB")).astype(int)
    keep = np.ones((64, 64), bool)
    keep[0 : 26 + 10, 0 : 38 + 10] = False  # the box (6..38 x 0..26) and the 10 px reach of the default feather
    assert np.array_equal(after[keep], before[keep])

    upscaled = bot.message("result", reply_to=send(text="/upscale 4 --method esrgan", reply_to=target))
    assert size_of(upscaled["images"][0]) == (256, 256) and "Upscale 4x (esrgan)" in upscaled["text"]
    assert "no face" in bot.message("failure", reply_to=send(text="/facefix", reply_to=target))["text"]

    # Clear replies for what cannot work, nothing queued.
    assert "works on a picture" in bot.message("error", reply_to=send(text="/upscale 4"))["text"]
    assert "one way" in bot.message("error", reply_to=send(text="/inpaint a hat", reply_to=target))["text"]
    assert bot.finish() == 0
    assert [e for e in bot.events if "Traceback" in str(e.get("text"))] == []


def _quadrants_match(preview_path: str, image_path: str) -> bool:
    """The preview is the image tiled 2x2: a JPEG of it, which on the tiny model's noise is off by about
    9 of 255 on average (the preview of another picture: 40 to 46)."""
    image = np.asarray(Image.open(image_path).convert("RGB")).astype(int)
    preview = np.asarray(Image.open(preview_path).convert("RGB")).astype(int)
    h, w = image.shape[:2]
    if preview.shape[:2] != (2 * h, 2 * w):
        return False
    return all(np.abs(preview[y : y + h, x : x + w] - image).mean() < 20 for y in (0, h) for x in (0, w))


def test_every_tile_result_carries_its_2x2_preview_in_the_console(tmp_path: Path, models_dir: Path) -> None:
    """docs/console-protocol.md: a `--tile` result's message has `preview`, the picture tiled 2x2;
    so do U1 of a tiled batch, an edit of a tile (it stays a tile) and a reroll. Other results don't."""
    bot = ConsoleProcess(bot_env(tmp_path / "data", models_dir, SDBOT_DEFAULT_STEPS="2"), tmp_path / "bot.log")
    send = bot.say
    tile = bot.message("result", reply_to=send(text="/imagine a stone wall texture --tile --seed 2 --steps 3 --size 64x64"))
    assert "second image shows it 2×2" in tile["text"] and _quadrants_match(tile["preview"], tile["images"][0])
    batch = bot.message("result", reply_to=send(text="/imagine bricks --tile --n 2 --size 64x64"))
    assert _quadrants_match(batch["preview"], batch["images"][0])  # a batch: the first image, tiled
    single = bot.message("single", reply_to=send(press={"message": batch["id"], "action": "U2"}))
    assert _quadrants_match(single["preview"], single["images"][0])
    varied = bot.message("result", reply_to=send(press={"message": tile["id"], "action": "Vary (Subtle)"}))
    rerolled = bot.message("result", reply_to=send(press={"message": tile["id"], "action": "Reroll"}))
    for result in (varied, rerolled):
        assert _quadrants_match(result["preview"], result["images"][0])
    plain = bot.message("result", reply_to=send(text="/imagine a stone wall --size 64x64"))
    assert "preview" not in plain
    assert bot.finish() == 0
