"""Issue 7's done-when line in the console chat: a kohya-format LoRA uploaded as `fox` draws
exactly what bare diffusers draws with that file loaded by `load_lora_weights`, at weight 1 and
at 0.6; the same upload and use through the command layer's refusals and listings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import bot_env
from tests.support.console_process import ConsoleProcess
from tests.test_adapters import bare, save_kohya_lora

PROMPT = "a red fox in the snow --seed 11 --steps 4 --cfg 7 --sampler euler --size 64x64"


@pytest.fixture(scope="module")
def kohya_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_kohya_lora(tmp_path_factory.mktemp("lora") / "fox.safetensors")


def pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_a_kohya_lora_uploaded_in_the_console_equals_bare_diffusers(tmp_path: Path, models_dir: Path, kohya_file: Path) -> None:
    bot = ConsoleProcess(bot_env(tmp_path / "data", models_dir), tmp_path / "bot.log")
    send = bot.say  # sends a line, returns its input id

    saved = bot.message("text", reply_to=send(text="/lora upload fox", attachments=[str(kohya_file)]))
    assert "Saved the LoRA `fox`" in saved["text"] and "kohya" in saved["text"]
    listed = bot.message("text", reply_to=send(text="/loras"))
    assert "• fox — kohya" in listed["text"]

    full = bot.message("result", reply_to=send(text=f"/imagine <lora:fox:1> {PROMPT}"))
    assert np.abs(pixels(full["images"][0]) - bare(models_dir, kohya_file)).max() <= 2
    with Image.open(full["images"][0]) as image:
        assert 'Lora hashes: "fox: ' in image.text["parameters"]
    partial = bot.message("result", reply_to=send(text=f"/imagine <lora:fox:0.6> {PROMPT}"))
    assert np.abs(pixels(partial["images"][0]) - bare(models_dir, kohya_file, 0.6)).max() <= 2
    plain = bot.message("result", reply_to=send(text=f"/imagine {PROMPT}"))
    assert np.abs(pixels(plain["images"][0]) - pixels(full["images"][0])).max() > 10  # the LoRA mattered

    unknown = bot.message("error", reply_to=send(text=f"/imagine <lora:fox:1> {PROMPT}", user="bob"))
    assert "I don't know a LoRA named `fox`" in unknown["text"]  # alice's is private

    # The file the console hands back goes in again as it is.
    [document] = bot.message(("text", "result"), reply_to=send(text="/lora download fox"))["documents"]
    assert Path(document["path"]).name == "fox.safetensors" == document["filename"]
    assert Path(document["path"]).read_bytes() == kohya_file.read_bytes()
    again = bot.message("text", reply_to=send(text="/lora upload foxcopy", attachments=[document["path"]]))
    assert "Saved the LoRA `foxcopy`" in again["text"], again["text"]
    assert bot.finish() == 0
