"""/compare and permutations in the chats: through the real python-telegram-bot client and the
fake Telegram (the labelled grid as one photo with U-buttons, a permutation's jobs each answered),
and in the console's JSON lines. Discord: tests/test_compare.py."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

from PIL import Image

from bot.console import ConsoleChat
from config import Settings
from tests.fakes.telegram import FakeTelegram
from tests.support.running_chat import recorded, running_chat
from tests.test_telegram import is_photo_reply, is_text_reply, server, telegram_bot, tg_settings  # noqa: F401 - fixtures


async def test_compare_and_permutations_in_telegram(tg_settings: Settings, server: FakeTelegram) -> None:  # noqa: F811
    async with telegram_bot(tg_settings, server):
        asked = server.send("/compare a fox --x seed=1,2 --y cfg=3,5 --size 64x64")
        grid = await server.await_for(is_photo_reply(asked))
        await recorded(tg_settings, grid.chat_id, grid.message_id)
        assert "2×2 cells · Seed: 1, 2 · CFG: 3, 5" in grid.text
        assert grid.labels() == ["U1", "U2", "U3", "U4", "📄 PNG"]
        with Image.open(io.BytesIO(grid.uploaded or b"")) as picture:
            assert picture.width > 2 * 64 and picture.height > 2 * 64  # the labelled grid
        server.press(grid, "U4")
        single = await server.await_for(lambda m: m.reply_to == grid.message_id and "Cell 4 of job 1" in m.text)
        assert "CFG 5" in single.text and "seed 2" in single.text

        bad = server.send("/compare a fox --x steps=2,3 --steps 4")
        assert "both set steps" in (await server.await_for(is_text_reply(bad))).text

        two = server.send("/imagine a {red, blue} fox --size 64x64")
        await server.await_until(lambda: sum(is_photo_reply(two)(m) for m in server.sent) == 2)
        drawn = sorted(m.text.split("\n")[0] for m in server.sent if is_photo_reply(two)(m))
        assert drawn == ["🖼️ Job 2: a red fox", "🖼️ Job 3: a blue fox"]


async def test_compare_and_permutations_in_the_console(settings: Settings, tmp_path: Path) -> None:
    lines = [
        {"text": "/compare a fox --x steps=2,3 --y seed=1,2 --size 64x64"},  # u1
        {"text": "a {red, blue} fox --size 64x64 --steps 2"},  # u2: a plain sentence draws, permutations too
        {"text": "/compare a fox --x prompt=owl,cat"},  # u3: `owl` is not in the prompt
    ]
    out = io.StringIO()

    def make(service, _settings):  # type: ignore[no-untyped-def]
        feed = io.StringIO("\n".join(json.dumps(line) for line in lines) + "\n")
        return ConsoleChat(service, state_dir=tmp_path / "console", jsonl=True, input_stream=feed, output_stream=out, poll_seconds=0.1)

    async with running_chat(settings, make) as (_, task):
        assert await asyncio.wait_for(task, 120) == 0
    events = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    results = [e for e in events if e.get("kind") == "result"]
    [grid] = [e for e in results if e["reply_to"] == "u1"]
    assert "2×2 cells · Steps: 2, 3 · Seed: 1, 2" in grid["text"] and [a["label"] for a in grid["actions"]] == ["U1", "U2", "U3", "U4"]
    with Image.open(grid["images"][0]) as picture:
        assert picture.width > 2 * 64
    assert sorted(e["text"].split("\n")[0].split(": ", 1)[1] for e in results if e["reply_to"] == "u2") == ["a blue fox", "a red fox"]
    [error] = [e for e in events if e.get("reply_to") == "u3"]
    assert error["kind"] == "error" and "`owl` is not in the prompt" in error["text"]
