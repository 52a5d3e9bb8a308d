"""Prompt features in the console chat, as a user (or script) drives `run_bot.py console --jsonl`:
styles, wildcards (the admin's folder and a user's own list), /enhance with its Imagine buttons,
--regions, and /describe of our own picture, whose Imagine this draws it again pixel for pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from config.styles import apply_styles, load_builtin_styles
from generation.prompts.wildcards import expand
from tests.conftest import bot_env
from tests.support.console_process import ConsoleProcess
from tests.support.tiny_text_models import build_tiny_gpt2


def parameters(path: str) -> str:
    with Image.open(path) as image:
        return image.text["parameters"]


def test_prompt_features_in_the_console(tmp_path: Path, models_dir: Path) -> None:
    wildcards = tmp_path / "wildcards"
    wildcards.mkdir()
    (wildcards / "weather.txt").write_text("rain\nsnow\nfog\n")
    enhancer = build_tiny_gpt2(tmp_path / "gpt2")
    env = bot_env(
        tmp_path / "data",
        models_dir,
        SDBOT_DEFAULT_STEPS="2",
        SDBOT_WILDCARDS_DIR=str(wildcards),
        SDBOT_ENHANCER=str(enhancer),
    )
    bot = ConsoleProcess(env, tmp_path / "bot.log")
    send = bot.say  # sends a line, returns its input id

    builtin = load_builtin_styles()
    listing = bot.message("text", reply_to=send(text="/styles"))
    assert f"• cinematic: {builtin['cinematic'].prompt}" in listing["text"]
    saved = bot.message("text", reply_to=send(text="/style save noir {prompt}, film noir --no color"))
    assert "`noir`" in saved["text"]
    styled = bot.message("result", reply_to=send(text="/imagine a fox --style noir,cinematic --seed 3 --size 64x64"))
    prompt, negative = apply_styles([builtin["cinematic"]], "a fox, film noir", "color")
    assert parameters(styled["images"][0]).startswith(f"{prompt}\nNegative prompt: {negative}\n")

    added = bot.message("text", reply_to=send(text="/wildcard add moods calm | stormy"))
    assert "2 lines" in added["text"]
    template = "a __moods__ sea in __weather__"
    batch = bot.message("result", reply_to=send(text=f"/imagine {template} --n 2 --seed 4 --size 64x64"))
    files = {"moods": ("calm", "stormy"), "weather": ("rain", "snow", "fog")}
    for index, path in enumerate(batch["images"]):
        assert parameters(path).startswith(expand(template, 4 + index, files) + "\n")
        assert f"Template: {template}" in parameters(path)

    answer = bot.message("result", reply_to=send(text="/enhance a lighthouse --n 2 --seed 1"))
    assert [a["label"] for a in answer["actions"]] == ["Imagine 1", "Imagine 2"]
    second = answer["text"].split("\n")[2].split(". ", 1)[1]
    assert second.startswith("a lighthouse")
    drawn = bot.message("result", reply_to=send(press={"message": answer["id"], "action": "Imagine 2"}))
    assert parameters(drawn["images"][0]).startswith(second + "\n")

    regional = bot.message("result", reply_to=send(text="/imagine a castle BREAK a dragon --regions cols --seed 2 --size 64x64"))
    assert "Regions: cols" in parameters(regional["images"][0])
    refused = bot.message("error", reply_to=send(text="/imagine a castle --regions cols"))
    assert "2" in refused["text"] or "BREAK" in refused["text"]

    described = bot.message("result", reply_to=send(text="/describe", reply_to=styled["id"]))
    assert "this bot" in described["text"] and prompt in described["text"]
    again = bot.message("result", reply_to=send(press={"message": described["id"], "action": "Imagine this"}))
    first = np.asarray(Image.open(styled["images"][0]))
    assert np.array_equal(np.asarray(Image.open(again["images"][0])), first)
    assert bot.finish() == 0
