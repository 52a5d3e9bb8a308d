"""The console's short forms for people (`@b3 text`, `!b3 U1`): a mistyped one is answered with how
to write it and queues nothing. It used to fall through as a prompt, so `!b8` or `@b9` queued a
25-step drawing of the typo, and five of them filled the queue limit."""

from __future__ import annotations

import asyncio
import io
import json
import re
from pathlib import Path

import pytest
from sqlalchemy import select

import run_bot
from bot.console import ConsoleChat
from bot.console.protocol import InputError, parse_human_line
from config import Settings
from storage.tables import Job


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("!b8", "e.g. `!b8 U1`"),  # no button named
        ("!zz U1", "`zz` is not one of my message ids. Write `!b3 U1`"),  # no such message id
        ("!u2 U1", "`u2` is not one of my message ids"),  # buttons are under the bot's messages only
        ("!", "the id of my message is missing"),
        ("@bxyz a dog", "`bxyz` is not a message id. Write `@b3 a blue fox`"),
        ("@b9", "a reply needs text after the id: a prompt, like `@b9 a blue fox`"),
        ("@b9   ", "a reply needs text"),
        ("@ a dog", "the id of the message is missing"),
    ],
)
def test_a_malformed_short_form_says_how_to_write_it(line: str, says: str) -> None:
    with pytest.raises(InputError) as raised:
        parse_human_line(line)
    assert says in str(raised.value)


def test_well_formed_lines_and_plain_sentences() -> None:
    assert parse_human_line("!b8 U1").press == ("b8", "U1")
    assert parse_human_line("!b3 Upscale 2x").press == ("b3", "Upscale 2x")
    reply = parse_human_line("@u2 a dog --steps 4")
    assert (reply.reply_to, reply.text, reply.press) == ("u2", "a dog --steps 4", None)
    # the console is a private chat: a plain sentence is a prompt, sent as text like /imagine
    plain = parse_human_line("  a dog on a beach  ")
    assert (plain.text, plain.reply_to, plain.press) == ("a dog on a beach", None, None)
    assert parse_human_line("/imagine !important a dog").text == "/imagine !important a dog"
    assert "/imagine " in str(pytest.raises(InputError, parse_human_line, "!important a dog").value)  # how to draw it anyway


async def test_mistyped_lines_queue_nothing_in_a_console_run(tmp_path: Path) -> None:
    # nothing is drawn here, so the tiny model need not be built (the `settings` fixture builds it)
    settings = Settings(_env_file=None, model="tiny", data_dir=tmp_path / "data", models_dir=tmp_path / "models")
    lines = [
        "!b8",  # u1 (b1: its answer)
        "!zz U1",  # u2
        "@bxyz a dog",  # u3
        "@b9",  # u4
        "@b99 a cat",  # u5: well formed, but there is no b99 yet
        json.dumps({"text": "a cat", "reply_to": "b77"}),  # u6: the same, written as JSON
        "!b42 U1",  # u7: a press on a message not written yet
        "@u9 a cat",  # u8: an input line not sent yet
        "/queue",  # u9 (b9)
        "a red fox --steps 2",  # u10 (b10): a plain sentence draws in the console, a private chat
        "!b10 Nope",  # u11: a button b10 (the status) does not have: the service says so
        "/cancel all",  # u12: no worker here; stop the fox so the run can end
        json.dumps({"reply_to": "b9"}),  # u13: a line that asks nothing still gets an answer
    ]
    core = await run_bot.build_core(settings)
    out = io.StringIO()
    try:
        chat = ConsoleChat(
            core.service,
            state_dir=tmp_path / "console",
            jsonl=False,
            input_stream=io.StringIO("\n".join(lines) + "\n"),
            output_stream=out,
            poll_seconds=0.1,
        )
        assert await asyncio.wait_for(chat.run(), 60) == 0
        async with core.db.transaction() as session:
            prompts = [params["prompt"] for params in (await session.execute(select(Job.params))).scalars()]
    finally:
        await core.db.close()
    assert prompts == ["a red fox"]  # the typos queued nothing; only the plain sentence drew
    answers = {}  # input line -> the text of the first answer to it
    for match in re.finditer(r"^\[b\d+ → (u\d+)\] (.*)$", out.getvalue(), re.MULTILINE):
        answers.setdefault(match[1], match[2])
    assert answers["u1"].startswith("Line 1: which button?") and "`!b8 U1`" in answers["u1"]
    assert answers["u2"].startswith("Line 2: `!` presses a button, but `zz` is not one of my message ids")
    assert answers["u3"].startswith("Line 3: `@` replies to a message, but `bxyz` is not a message id")
    assert answers["u4"].startswith("Line 4: a reply needs text after the id")
    assert answers["u5"] == "Line 5: there is no message b99 yet (the newest is b4). Use an id shown in [brackets]."
    assert answers["u6"].startswith("Line 6: there is no message b77 yet")
    assert answers["u7"].startswith("Line 7: there is no message b42 yet")
    assert answers["u8"].startswith("Line 8: there is no line u9 before this one")
    assert answers["u9"].startswith("You have no jobs waiting or running.")
    assert answers["u10"].startswith("⏳ Job 1 queued") and "a red fox" in answers["u10"]
    assert answers["u11"].startswith("That message has no buttons")
    assert answers["u13"].startswith("Nothing to act on")
