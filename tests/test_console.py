"""The console chat as a script uses it: `run_bot.py console --jsonl` in a real process, on a
model folder saved with plain `save_pretrained`, compared pixel by pixel with bare diffusers."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generation.models.tiny import build_tiny_pipeline
from tests.conftest import ROOT, bot_env
from tests.support.console_process import ConsoleProcess
from tests.support.labels import EDIT_LABELS


@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("anyones") / "red-fox-model"
    build_tiny_pipeline().save_pretrained(folder)
    return folder


@functools.cache
def bare_pipeline(folder: Path):  # type: ignore[no-untyped-def]
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def bare(folder: Path, seed: int) -> np.ndarray:
    """Bare diffusers, as its docs show it, for the settings of FOX."""
    pipe = bare_pipeline(folder)
    generator = torch.Generator("cpu").manual_seed(seed)
    image = pipe("a red fox", num_inference_steps=4, guidance_scale=7, height=64, width=64, generator=generator).images[0]
    return np.asarray(image).astype(int)


def pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def without_ages(history: str) -> str:
    return re.sub(r"\d+[a-z]+ ago", "… ago", history)


FOX = "/imagine a red fox --seed 42 --steps 4 --cfg 7 --sampler euler --size 64x64"


def test_console_end_to_end_and_after_restart(tmp_path: Path, models_dir: Path, saved_folder: Path) -> None:
    env = bot_env(tmp_path / "data", models_dir, SDBOT_MODEL=str(saved_folder))
    bot = ConsoleProcess(env, tmp_path / "bot.log")

    bot.send(text=FOX)
    queued = bot.message("status", reply_to="u1")
    assert queued["job"] == 1 and queued["user"] == "console"
    fox = bot.message("result", reply_to="u1")
    assert np.abs(pixels(fox["images"][0]) - bare(saved_folder, 42)).max() <= 2
    assert Path(fox["images"][0]).is_absolute()
    assert [a["label"] for a in fox["actions"]] == [*EDIT_LABELS, "Reroll"]

    bot.send(text=FOX.replace("--seed 42", "--seed 10 --n 4"), user="ann")
    batch = bot.message("result", reply_to="u2")
    assert batch["user"] == "ann" and len(batch["images"]) == 4
    for i, path in enumerate(batch["images"]):
        assert np.abs(pixels(path) - bare(saved_folder, 10 + i)).max() <= 2

    bot.send(text="/history")
    history = bot.message("text", reply_to="u3")["text"]
    for n, text in enumerate(["/imagine a fox --steps 500", "/imagine a fox --sampler nope", "/imagine"], start=4):
        bot.send(text=text)
        assert "out of bounds" in bot.message("error", reply_to=f"u{n}")["text"] or n > 4
    bot.send_raw("{not json")  # a broken line gets an answer, the chat goes on
    assert "not valid JSON" in bot.message("error", reply_to="u7")["text"]
    bot.send(text="/history")
    # the same jobs (bad input queued nothing); only "9s ago" may have become "10s ago"
    assert without_ages(bot.message("text", reply_to="u8")["text"]) == without_ages(history)

    bot.send(press={"message": batch["id"], "action": "U3"}, user="ann")
    single = bot.message("single", reply_to="u9")
    assert single["images"] == [batch["images"][2]] and [a["label"] for a in single["actions"]] == EDIT_LABELS
    bot.send(press={"message": fox["id"], "action": "vary:1"})
    bot.message("result", reply_to="u10")
    bot.send(text="a red fox in the snow", reply_to=fox["id"])
    remix = bot.message("result", reply_to="u11")
    assert remix["text"].startswith("🔁") and "a red fox in the snow" in remix["text"]
    assert bot.finish() == 0
    assert [e for e in bot.events if e.get("kind") == "error" and "Traceback" in e["text"]] == []

    # A new process on the same data: old buttons and replies still work, ids keep counting.
    again = ConsoleProcess(env, tmp_path / "bot.log")
    again.send(press={"message": batch["id"], "action": "Reroll"}, user="ann")
    reroll = again.message("result", reply_to="u1")
    assert len(reroll["images"]) == 4 and reroll["images"][0] not in batch["images"]
    again.send(text="a fox at dawn", reply_to=single["id"])
    again.message("result", reply_to="u2")
    assert again.finish() == 0
    earlier = {e["id"] for e in bot.messages()}
    assert not earlier & {e["id"] for e in again.messages()}


def test_console_attachment_and_bad_file(tmp_path: Path, models_dir: Path) -> None:
    photo = tmp_path / "photo.png"
    Image.new("RGB", (96, 64), (200, 40, 40)).save(photo)
    bot = ConsoleProcess(bot_env(tmp_path / "data", models_dir), tmp_path / "bot.log")
    bot.send(text="/imagine a red square --steps 4", attachments=[str(photo)])
    done = bot.message("result", reply_to="u1")
    assert Image.open(done["images"][0]).size == (96, 64)
    bot.send(text="/imagine x", attachments=[str(tmp_path / "missing.png")])
    assert "can't read the attachment" in bot.message("error", reply_to="u2")["text"]
    assert bot.finish() == 0


def test_the_command_layer_does_not_import_torch() -> None:
    """A bot-only process (multi-machine mode) must start without torch or diffusers."""
    code = (
        "import sys, run_bot, bot.console, bot.telegram, bot.discord, commands.service\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers', 'transformers'))\n"
        "print(heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_human_line_forms() -> None:
    """The hint under every result says "press with: !b3 Upscale 2x": labels with spaces press too."""
    from bot.console.protocol import InputError, parse_human_line

    assert parse_human_line("!b3 Upscale 2x").press == ("b3", "Upscale 2x")
    assert parse_human_line("!b12   Vary (Subtle)  ").press == ("b12", "Vary (Subtle)")
    assert parse_human_line("!b2 U1").press == ("b2", "U1")
    assert parse_human_line("@b2 a blue fox").reply_to == "b2" and parse_human_line("@b2 a blue fox").text == "a blue fox"
    with pytest.raises(InputError, match="presses a button"):  # a typo is not a prompt (tests/test_console_lines.py)
        parse_human_line("!nonsense")
