"""The edits in the console chat, as a user (or script) drives `run_bot.py console --jsonl`:
generate, press U1, press each of the eleven buttons under the single image, then reply to a
result with /inpaint (box), /upscale 4 --method esrgan and /facefix — with an upscaler and a face
model configured the way an admin would (files named in the environment)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import bot_env
from tests.console_process import ConsoleProcess
from tests.face_models import write_restoreformer
from tests.labels import EDIT_LABELS
from tests.sr_models import write_esrgan

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
        tmp_path / "data", models_dir, SDBOT_DEFAULT_STEPS="2", SDBOT_UPSCALERS=f"x4={upscaler}",
        SDBOT_FACE_RESTORERS=f"restoreformer={face_model}", SDBOT_UPSCALE_TILE="32",
    )  # fmt: skip
    bot = ConsoleProcess(env, tmp_path / "bot.log")
    send = bot.say  # sends a line, returns its input id

    asked = send(text="/imagine a red fox --seed 5 --n 2 --size 64x64")
    batch = bot.message("result", reply_to=asked)
    single = bot.message("single", reply_to=send(press={"message": batch["id"], "action": "U1"}))
    assert [a["label"] for a in single["actions"]] == EDIT_LABELS

    results = {}
    for label in EDIT_LABELS:
        pressed = send(press={"message": single["id"], "action": label})
        if label == "Face fix":  # the picture is noise: no face, and the bot says so
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
    keep[0 : 26 + 12, 0 : 38 + 12] = False  # the box (6..38 x 0..26) and the reach of the 4 px feather
    assert np.array_equal(after[keep], before[keep])

    upscaled = bot.message("result", reply_to=send(text="/upscale 4 --method esrgan", reply_to=target))
    assert size_of(upscaled["images"][0]) == (256, 256) and "Upscale 4x (esrgan)" in upscaled["text"]
    assert "no face" in bot.message("failure", reply_to=send(text="/facefix", reply_to=target))["text"]

    # Clear replies for what cannot work, nothing queued.
    assert "works on a picture" in bot.message("error", reply_to=send(text="/upscale 4"))["text"]
    assert "one way" in bot.message("error", reply_to=send(text="/inpaint a hat", reply_to=target))["text"]
    assert bot.finish() == 0
    assert [e for e in bot.events if "Traceback" in str(e.get("text"))] == []
