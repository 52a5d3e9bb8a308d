"""/edit with several pictures, /blend, moodboards and `--sref NAME` in Telegram, through
python-telegram-bot and the fake Bot API (tests/fakes/telegram.py), on the tiny model (its
Instruct Pix2Pix and IP-Adapter built in) with `tiny-flux2` (FLUX.2 Klein: edits with up to 4
pictures) and `tiny-sd3` (no reference method) beside it.

Several pictures come as an album (a media group: one message per photo, the command as the
caption of one); the original PNG of a result (📄 PNG) carries what was drawn. Bad input gets one
clear text answer and nothing is queued."""

from __future__ import annotations

import asyncio
import io
import re
import sqlite3
from typing import Any

import pytest
from PIL import Image

from config import ModelEntry, Settings
from generation.parameters import parse_infotext
from tests.fakes.telegram import BotMessage, FakeTelegram
from tests.support.running_chat import recorded
from tests.test_telegram import is_photo_reply, is_text_reply, png, server, telegram_bot, tg_settings  # noqa: F401 - fixtures

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

MODELS = ("tiny", "tiny-flux2", "tiny-sd3")
RED, GREEN, BLUE = (200, 40, 40), (40, 200, 40), (40, 40, 200)
HASH = re.compile(r"^[0-9a-f]{10}$")


@pytest.fixture
def ref_settings(tg_settings: Settings) -> Settings:  # noqa: F811
    return tg_settings.model_copy(
        update={"models": {name: ModelEntry(source=name) for name in MODELS}, "default_steps": 2, "telegram_album_seconds": 0.5}
    )


async def album(server: FakeTelegram, caption: str, colors: list[tuple[int, int, int]]) -> list[dict[str, Any]]:  # noqa: F811
    """An album of photos of `colors`, `caption` on its first; its messages."""
    items = [(caption if i == 0 else None, png(color=color)) for i, color in enumerate(colors)]
    return await asyncio.to_thread(server.send_album, items)


async def parameters(settings: Settings, server: FakeTelegram, result: BotMessage) -> dict[str, str]:  # noqa: F811
    """The parameters of a result's original PNG, which 📄 PNG sends as a file."""
    await recorded(settings, result.chat_id, result.message_id)
    server.press(result, "📄 PNG")
    document = await server.await_for(lambda m: m.kind == "document" and m.reply_to == result.message_id)
    with Image.open(io.BytesIO(document.uploaded or b"")) as original:
        return parse_infotext(original.info["parameters"])


def jobs(settings: Settings) -> int:
    with sqlite3.connect(settings.data_dir / "sdbot.db") as db:
        return int(db.execute("select count(*) from jobs").fetchone()[0])


async def test_edit_blend_and_moodboards_in_telegram(ref_settings: Settings, server: FakeTelegram) -> None:  # noqa: F811
    settings = ref_settings
    async with telegram_bot(settings, server):
        # /edit as a reply to a person's photo: the tiny model's own Instruct Pix2Pix
        own = server.send(photo=png(color=RED))  # no caption: the bot asks for one, and queues nothing
        await server.await_for(is_text_reply(own, "caption"))
        edit = server.send("/edit make it snowy", reply_to=own["message_id"])
        edited = await server.await_for(is_photo_reply(edit))
        assert "Edit: make it snowy" in edited.text and "Edit again" in edited.labels()

        # /edit with two pictures (an album) on FLUX.2 Klein: picture 1 edited, picture 2 beside it
        two = await album(server, "/edit put the cat from picture 2 on the sofa --model tiny-flux2", [RED, GREEN])
        klein = await server.await_for(is_photo_reply(two[0]))
        assert "Edit: put the cat from picture 2 on the sofa" in klein.text and "tiny-flux2" in klein.text
        fields = await parameters(settings, server, klein)
        assert fields["Model"] == "tiny-flux2" and fields["Operation"] == "Edit"
        pictures = fields["Edit pictures"].strip('"').split(", ")
        assert len(pictures) == 2 and all(HASH.match(p) for p in pictures) and pictures[0] != pictures[1], pictures
        assert not any(m.reply_to == two[1]["message_id"] for m in server.sent)  # one answer, to the album's first

        # /blend with three pictures: one subject reference, the mean of their embeddings, at --ow 150
        three = await album(server, "/blend", [RED, GREEN, BLUE])
        blended = await server.await_for(is_photo_reply(three[0]))
        assert "Blend" in blended.text and "oref 150" in blended.text
        fields = await parameters(settings, server, blended)
        reference = fields["IP-Adapter 0"]
        assert reference.startswith("Type: subject, Model: tiny, Weight: 150, Scale: 0.9, Image hash: "), reference
        hashes = reference.split("Image hash: ")[1].split(", ")[0].split()
        assert len(set(hashes)) == 3 and all(HASH.match(h) for h in hashes), reference
        assert fields["Operation"] == "Blend" and fields["Model"] == "tiny"

        # a moodboard from an album, drawn with (--sref NAME), listed and shown
        board = await album(server, "/moodboard save foxy", [GREEN, BLUE])
        saved = await server.await_for(is_text_reply(board[0]))
        assert "Saved the moodboard foxy: 2 pictures" in saved.text and "--sref foxy" in saved.text
        asked = server.send("/imagine a fox --sref foxy")
        fox = await server.await_for(is_photo_reply(asked))
        assert "sref 100" in fox.text
        style = (await parameters(settings, server, fox))["IP-Adapter 0"]
        assert style.startswith("Type: style, Model: tiny, Weight: 100") and style.endswith("Moodboard: foxy"), style
        assert len(style.split("Image hash: ")[1].split(", ")[0].split()) == 2  # both of the board's pictures
        listed = server.send("/moodboards")
        assert "• foxy — 2 pictures · private" in (await server.await_for(is_text_reply(listed))).text
        show = server.send("/moodboard show foxy")
        sheet = await server.await_for(is_photo_reply(show))
        assert "Moodboard foxy (yours, 2 pictures" in sheet.text and "📄 PNG" not in sheet.labels()  # no job output
        with Image.open(io.BytesIO(sheet.uploaded or b"")) as picture:
            assert picture.size == (512, 256)  # two 256 px cells side by side
            assert picture.convert("RGB").getpixel((128, 128))[1] > 150  # the green one first
            assert picture.convert("RGB").getpixel((384, 128))[2] > 150  # then the blue one
    assert jobs(settings) == 4  # the two edits, the blend and the fox: no more


async def test_bad_picture_input_in_telegram_queues_nothing(ref_settings: Settings, server: FakeTelegram) -> None:  # noqa: F811
    settings = ref_settings
    async with telegram_bot(settings, server, draw=False):
        board = await album(server, "/moodboard save foxy", [GREEN, BLUE])
        await server.await_for(is_text_reply(board[0], "Saved the moodboard foxy"))

        one = server.send("/blend", photo=png())
        six = await album(server, "/blend", [RED, GREEN, BLUE, RED, GREEN, BLUE])
        nothing = server.send("/edit make it snowy")
        text_file = server.send("/edit make it snowy", document=("notes.txt", b"hello, not a picture", "text/plain"))
        heavy = server.send("/imagine a fox --sref foxy --sw 5000")
        sd3 = server.send("/imagine a fox --sref foxy --model tiny-sd3")
        sd3_blend = await album(server, "/blend --model tiny-sd3", [RED, GREEN])
        answers = {
            "one": await server.await_for(is_text_reply(one)),
            "six": await server.await_for(is_text_reply(six[0])),
            "nothing": await server.await_for(is_text_reply(nothing)),
            "text_file": await server.await_for(is_text_reply(text_file)),
            "heavy": await server.await_for(is_text_reply(heavy)),
            "sd3": await server.await_for(is_text_reply(sd3)),
            "sd3_blend": await server.await_for(is_text_reply(sd3_blend[0])),
        }
        texts = {name: message.text for name, message in answers.items()}
        assert "/blend makes 2 to 5 pictures into one; you gave 1" in texts["one"]
        assert "/blend on tiny takes at most 5 pictures; you gave 6" in texts["six"]
        assert "/edit changes a picture: reply to one" in texts["nothing"]
        assert "I can't read notes.txt as an image" in texts["text_file"]
        assert "--sw 5000 is out of bounds: use 0 to 1000" in texts["heavy"]
        assert "can't be used with tiny-sd3" in texts["sd3"] and "SD 3.5 has no IP-Adapter here" in texts["sd3"]
        assert "tiny-sd3 (SD 3.5) can't blend pictures" in texts["sd3_blend"] and "tiny, tiny-flux2" in texts["sd3_blend"]
        assert all("queued" not in text and "Job" not in text for text in texts.values()), texts
        assert all(not message.labels() for message in answers.values())  # a plain text: no buttons
        await asyncio.sleep(1.0)  # an album's late answer, a second one, would be here by now
    assert not [m for m in server.sent if m.kind != "text"]  # no picture came
    assert len(server.sent) == 1 + len(answers)  # the board's line and one answer each
    assert jobs(settings) == 0
