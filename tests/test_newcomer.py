"""What a newcomer tripped on in the command layer: option spellings, options before the prompt,
times and amounts said honestly, Deforum keys that are no frame numbers, and results that show
what was drawn (wildcard picks, a schedule's prompts) and remixes of one picture that draw one."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from commands.jobs.admission import amount_text, clock_text
from tests.test_service import Bot


async def one(bot: Bot, text: str, **fields) -> str:  # type: ignore[no-untyped-def]
    [(_, reply)] = await bot.send(text, **fields)
    return reply.text


async def test_replies_write_options_as_help_does_and_say_where_options_go(bot: Bot) -> None:
    unknown = await one(bot, "/imagine a cat --bogus 3")
    assert "--clip-skip" in unknown and "--base-ratio" in unknown and "_" not in unknown.split("Options here:")[1]
    assert await one(bot, "/imagine --steps 4 a cat") == (
        "`--steps 4` is followed by `a cat`: options go after the prompt, e.g. `a cat --steps 4`."
    )
    assert "options go after the prompt, e.g. `a cat --size 64x64`" in await one(bot, "/imagine --size 64x64 a cat")
    assert "the prompt first, then the options" in await one(bot, "/imagine --no blurry a cat")
    assert await one(bot, "/imagine a cat --seed -5") == "`--seed -5` is out of bounds: use -1 to 4294967295."
    sampler = await one(bot, "/imagine a cat --sampler dpm++ 3m sde")
    assert sampler.startswith("`DPM++ 3M SDE` has no equivalent scheduler in diffusers") and "Samplers: Euler a" in sampler
    assert await bot.finish() == []


async def test_a_style_without_its_placeholder_is_appended(bot: Bot) -> None:
    saved = await one(bot, "/style save plain just words")
    assert "Saved the style `plain`" in saved and "{prompt}, just words" in saved, saved
    queued = await one(bot, "/imagine a fox --style plain")
    assert "a fox, just words" in queued, queued


async def test_tiny_draws_8_steps_unless_sdbot_default_steps_is_set(settings) -> None:  # type: ignore[no-untyped-def]
    from config import Settings
    from tests.test_service import make_bot

    given = {name: getattr(settings, name) for name in settings.model_fields_set if name != "default_steps"}
    unset = Settings(_env_file=None, **given)  # as if SDBOT_DEFAULT_STEPS were not set
    for config, steps in ((unset, 8), (settings, settings.default_steps)):
        made = await make_bot(config)
        try:
            [(_, queued)] = await made.send("/imagine a fox")
            assert f" · {steps} steps · " in queued.text, queued.text
        finally:
            made.worker.executor.shutdown()
            await made.core.db.close()


def test_times_say_their_day_and_amounts_are_not_rounded_up() -> None:
    now = datetime(2026, 12, 7, 23, 0, tzinfo=UTC)
    assert clock_text(now + timedelta(minutes=30), now) == "23:30 UTC"
    assert clock_text(now + timedelta(hours=5, minutes=44), now) == "04:44 UTC tomorrow"
    assert clock_text(now + timedelta(days=2), now) == "23:00 UTC on 9 Dec"
    assert [amount_text(s) for s in (0.001, 0.0, 0.7123, 1.0, 12.34, 200)] == ["0.001 s", "0 s", "0.7 s", "1 s", "12.3 s", "3 min 20 s"]


async def test_a_deforum_key_that_is_no_frame_number_is_refused_with_its_position(bot: Bot) -> None:
    text = await one(bot, '/deforum "0: a forest, x: a city" --frames 8')
    assert "`x:` is not a frame number" in text and "at character 14" in text, text
    assert "`1.5:` is not a frame number" in await one(bot, '/deforum "0: a forest, 1.5: a city" --frames 8')
    [(_, syntax)] = await bot.send('/deforum "0: (a forest:1.2), [a:b:2], 4: a city" --frames 8 --steps 2')
    assert syntax.kind == "status", syntax.text  # `(x:1.2)` and `[a:b:2]` are prompt syntax, not keys
    assert "Deforum: a forest → a city" in await one(bot, '/deforum "0: a forest, 4: a city" --frames 8 --steps 2')


async def test_results_show_what_was_drawn_and_a_remix_of_one_picture_draws_one(bot: Bot) -> None:
    await bot.send("/wildcard add colors crimson | azure")
    await bot.send("/imagine a __colors__ fox --n 2 --steps 2 --seed 3")
    [(grid_id, grid)] = await bot.finish()
    picks = [text.split("\n")[0] for text in (output_prompt(bot, grid.reply, i) for i in range(2))]
    head = grid.reply.text.split("\n")[0]
    assert "__colors__" not in head and all(pick in head for pick in picks), (head, picks)
    [(single_id, single)] = await bot.press(grid_id, "U2")
    assert single.text.startswith(f"Image 2 of job {grid.reply.job_id}: {picks[1]}")
    info = await one(bot, f"/info {grid.reply.job_id}")
    assert "Template: a __colors__ fox" in info

    queued = await one(bot, "a green fox --steps 4", reply_to=single_id)
    assert "· seed " in queued and "seeds" not in queued, queued  # one picture, not the grid's two
    assert "seeds" in await one(bot, "a green fox --steps 4 --n 2", reply_to=single_id)


def output_prompt(bot: Bot, reply, index: int) -> str:  # type: ignore[no-untyped-def]
    """The PNG parameters stored for image `index` of a result: its first line is the prompt drawn."""
    with sqlite3.connect(bot.core.ctx.settings.data_dir / "sdbot.db") as db:
        [(parameters,)] = db.execute(
            'select parameters from job_outputs where job_id = ? and "index" = ?', (reply.job_id, index)
        ).fetchall()
    return parameters


async def test_describe_reads_an_upload_as_every_command_does(bot: Bot) -> None:
    from commands.frame.types import Attachment

    fake = Attachment("fake.png", b"this is no picture at all", "image/png")
    for command in ("/describe", "/imagine a fox"):
        [(_, reply)] = await bot.send(command, attachments=(fake,))
        assert reply.kind == "error" and "I can't read `fake.png` as an image" in reply.text, (command, reply.text)


async def test_a_file_is_judged_by_its_content_not_its_name(bot: Bot) -> None:
    """The blob store keeps a LoRA as `<sha256>.st`; a person who got that file back may upload it."""
    from safetensors.torch import save

    from commands.frame.types import Attachment
    from generation.models.tiny import build_tiny_pipeline
    from tests.test_adapters import make_lora, to_kohya

    data = save(to_kohya(make_lora(build_tiny_pipeline(), 1)))
    [(_, saved)] = await bot.send("/lora upload", attachments=(Attachment("877d4110.st", data),))
    assert "Saved the LoRA `877d4110.st`" in saved.text, saved.text  # named after the file, as uploads are
    [(_, refused)] = await bot.send("/lora upload notes", attachments=(Attachment("notes.txt", b"just some words"),))
    assert refused.kind == "error" and "is not a .safetensors file" in refused.text, refused.text
