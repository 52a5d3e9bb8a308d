"""Issue 16's done-when line in the console chat: `/train lora foxy --steps 20` with 4 pictures
reports progress, posts samples, ends with the LoRA in `/loras`, and `<lora:foxy:1>` in /imagine
equals bare diffusers with the saved file loaded by `load_lora_weights` (within 2 of 255)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import bot_env
from tests.support.console_process import ConsoleProcess
from tests.support.train_pictures import picture_files
from tests.test_adapters import bare

PROMPT = "a red fox in the snow --seed 11 --steps 4 --cfg 7 --sampler euler --size 64x64"


def pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_train_a_lora_in_the_console_and_draw_with_it(tmp_path: Path, models_dir: Path) -> None:
    bot = ConsoleProcess(bot_env(tmp_path / "data", models_dir, SDBOT_DEFAULT_STEPS="4"), tmp_path / "bot.log")
    pictures = picture_files(tmp_path / "pictures")
    asked = bot.say(text="/train lora foxy --steps 20 --seed 3 --rank 4 --lr 1e-3 --sample-every 10", attachments=pictures)
    status = bot.message("status", reply_to=asked)
    assert "LoRA `foxy` from 4 pictures" in status["text"] and "20 steps" in status["text"]
    result = bot.message("result", timeout=300, reply_to=asked)
    assert "trained the LoRA `foxy`" in result["text"] and "<lora:foxy:1>" in result["text"]
    assert result["images"], "the last sample comes with the result"
    edits = [event["text"] for event in bot.events if event.get("event") == "edit" and event["id"] == status["id"]]
    assert any("step" in text and "loss" in text for text in edits), edits
    samples = bot.messages("sample")
    assert [sample["text"].split(":")[0] for sample in samples] == [f"🧪 Job {result['job']}, step 10/20"]
    assert samples[0]["images"]

    listed = bot.message("text", reply_to=bot.say(text="/loras"))
    assert "• foxy — kohya" in listed["text"]
    download = bot.message("text", reply_to=bot.say(text="/lora download foxy"))
    [document] = download["documents"]
    assert document["filename"] == "foxy.safetensors"
    drawn = bot.message("result", reply_to=bot.say(text=f"/imagine <lora:foxy:1> {PROMPT}"))
    plain = bot.message("result", reply_to=bot.say(text=f"/imagine {PROMPT}"))
    assert bot.finish() == 0
    with_lora = pixels(drawn["images"][0])
    saved = tmp_path / document["filename"]  # as a person saves the download
    saved.write_bytes(Path(document["path"]).read_bytes())
    assert np.abs(with_lora - bare(models_dir, saved)).max() <= 2
    assert np.abs(with_lora - pixels(plain["images"][0])).max() > 10, "the trained LoRA changes the picture"
