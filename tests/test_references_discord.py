"""/edit with several pictures, /blend, moodboards and `--sref NAME` in Discord, through discord.py
and the fake Discord API and gateway (tests/fakes/discord.py), on the tiny model (its Instruct
Pix2Pix and IP-Adapter built in) with `tiny-flux2` (FLUX.2 Klein: edits with up to 4 pictures)
and `tiny-sd3` (no reference method) beside it.

Several pictures come as the slash commands' file options (`image`, `image2`, ...), or attached to
a message that mentions the bot; a result's file is its original PNG, parameters and all. Bad
input gets one clear answer only its author sees (or a reply, to a message) and nothing is queued."""

from __future__ import annotations

import asyncio
import io
import re
import sqlite3

import pytest
from PIL import Image

from config import ModelEntry, Settings
from generation.parameters import parse_infotext
from tests.fakes.discord import APP_ID, BOB, FakeDiscord, Interaction, Sent
from tests.test_discord import answer_to, dc_settings, discord_bot, seen, server  # noqa: F401 - fixtures

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

MODELS = ("tiny", "tiny-flux2", "tiny-sd3")
RED, GREEN, BLUE = (200, 40, 40), (40, 200, 40), (40, 40, 200)
HASH = re.compile(r"^[0-9a-f]{10}$")
FILE_OPTIONS = ("image", "image2", "image3", "image4", "image5")


@pytest.fixture
def ref_settings(dc_settings: Settings) -> Settings:  # noqa: F811
    return dc_settings.model_copy(update={"models": {name: ModelEntry(source=name) for name in MODELS}, "default_steps": 2})


def png(color: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def pictures(*colors: tuple[int, int, int]) -> dict[str, tuple[str, bytes, str]]:
    """The file options `image`, `image2`, ... with a picture of each color."""
    return {option: (f"p{i}.png", png(color), "image/png") for i, (option, color) in enumerate(zip(FILE_OPTIONS, colors, strict=False), 1)}


def parameters(result: Sent) -> dict[str, str]:
    [(name, data)] = result.files.items()
    assert name.endswith(".png"), name
    with Image.open(io.BytesIO(data)) as original:
        return parse_infotext(original.info["parameters"])


def image_hashes(reference: str) -> list[str]:
    return reference.split("Image hash: ")[1].split(", ")[0].split()


def text_of(interaction: Interaction):  # type: ignore[no-untyped-def]
    """A text answer to `interaction` (not the "thinking…" message it starts as)."""
    return lambda m: answer_to(interaction)(m) and bool(m.content)


def jobs(settings: Settings) -> int:
    with sqlite3.connect(settings.data_dir / "sdbot.db") as db:
        return int(db.execute("select count(*) from jobs").fetchone()[0])


async def test_edit_blend_and_moodboards_in_discord(ref_settings: Settings, server: FakeDiscord) -> None:  # noqa: F811
    settings = ref_settings
    async with discord_bot(settings, server):
        declared = {c["name"]: [o["name"] for o in c["options"]] for c in server.commands["global"]}
        assert {"image", "image2", "image3", "image4", "mask"} <= set(declared["edit"])
        assert set(FILE_OPTIONS) <= set(declared["blend"]) and {"image", "image2"} <= set(declared["moodboard"])

        # /blend with three pictures: one subject reference, the mean of their embeddings, at --ow 150
        blend = server.slash("blend", {}, attachments=pictures(RED, GREEN, BLUE))
        blended = await seen(settings, await server.await_for(answer_to(blend, files=True)))
        assert "Blend" in blended.content and "oref 150" in blended.content
        fields = parameters(blended)
        reference = fields["IP-Adapter 0"]
        assert reference.startswith("Type: subject, Model: tiny, Weight: 150, Scale: 0.9, Image hash: "), reference
        assert len(set(image_hashes(reference))) == 3 and all(HASH.match(h) for h in image_hashes(reference)), reference
        assert fields["Operation"] == "Blend" and fields["Model"] == "tiny"

        # /edit as a reply to a picture (the blend's result), mentioning the bot: Instruct Pix2Pix
        asked = server.post(f"<@{APP_ID}> /edit make it snowy", reply_to=blended.id)
        edited = await server.await_for(lambda m: m.reference == asked["id"] and bool(m.files))
        assert "Edit: make it snowy" in edited.content and "Edit again" in edited.labels()
        assert f"<@{asked['author']['id']}>" in edited.content  # no interaction: posted in the channel, naming its asker
        assert parameters(edited)["Operation"] == "Edit"

        # /edit with two pictures on FLUX.2 Klein: picture 1 edited, picture 2 beside it
        edit = server.slash(
            "edit", {"instruction": "put the cat from picture 2 on the sofa", "model": "tiny-flux2"}, attachments=pictures(RED, GREEN)
        )
        klein = await server.await_for(answer_to(edit, files=True))
        assert "Edit: put the cat from picture 2 on the sofa" in klein.content and "tiny-flux2" in klein.content
        fields = parameters(klein)
        assert fields["Model"] == "tiny-flux2" and fields["Operation"] == "Edit"
        edit_pictures = fields["Edit pictures"].strip('"').split(", ")
        assert len(edit_pictures) == 2 and edit_pictures[0] != edit_pictures[1] and all(HASH.match(p) for p in edit_pictures)

        # a moodboard from the slash command's pictures, drawn with (`sref:` typed), listed and shown
        save = server.slash("moodboard", {"action": "save", "name": "foxy"}, attachments=pictures(GREEN, BLUE))
        saved = await server.await_for(text_of(save))
        assert "Saved the moodboard `foxy`: 2 pictures" in saved.content and not saved.ephemeral
        fox = await server.await_for(answer_to(server.slash("imagine", {"prompt": "a fox", "sref": "foxy"}), files=True))
        style = parameters(fox)["IP-Adapter 0"]
        assert style.startswith("Type: style, Model: tiny, Weight: 100") and style.endswith("Moodboard: foxy"), style
        assert len(image_hashes(style)) == 2  # both of the board's pictures
        listed = await server.await_for(text_of(server.slash("moodboards")))
        assert "• foxy — 2 pictures · private" in listed.content
        sheet = await server.await_for(answer_to(server.slash("moodboard", {"action": "show", "name": "foxy"}), files=True))
        assert "Moodboard `foxy` (yours, 2 pictures" in sheet.content and sheet.labels() == []
        [(_, data)] = sheet.files.items()
        with Image.open(io.BytesIO(data)) as picture:
            assert picture.size == (512, 256)  # two 256 px cells side by side
            assert picture.convert("RGB").getpixel((128, 128))[1] > 150  # the green one first
            assert picture.convert("RGB").getpixel((384, 128))[2] > 150  # then the blue one
    assert jobs(settings) == 4  # the blend, the two edits and the fox: no more


async def test_bad_picture_input_in_discord_queues_nothing(ref_settings: Settings, server: FakeDiscord) -> None:  # noqa: F811
    settings = ref_settings
    async with discord_bot(settings, server, draw=False):
        save = server.slash("moodboard", {"action": "save", "name": "foxy"}, attachments=pictures(GREEN, BLUE))
        assert "Saved the moodboard `foxy`" in (await server.await_for(text_of(save))).content

        text_file = {"image": ("notes.txt", b"hello, not a picture", "text/plain")}
        asked = {
            "one": server.slash("blend", {}, attachments=pictures(RED)),
            "nothing": server.slash("edit", {"instruction": "make it snowy"}),
            "text_file": server.slash("edit", {"instruction": "make it snowy"}, attachments=text_file),
            "heavy": server.slash("imagine", {"prompt": "a fox --sref foxy --sw 5000"}),
            "heavy_typed": server.slash("imagine", {"prompt": "a fox", "sref": "foxy", "sw": 5000}),
            "sd3": server.slash("imagine", {"prompt": "a fox", "sref": "foxy", "model": "tiny-sd3"}),
            "sd3_blend": server.slash("blend", {"model": "tiny-sd3"}, attachments=pictures(RED, GREEN)),
        }
        answers = {name: await server.await_for(answer_to(interaction, ephemeral=True)) for name, interaction in asked.items()}
        # six pictures: more than the slash command has options for, so attached to a message mentioning the bot
        six = [(f"p{i}.png", png(color), "image/png") for i, color in enumerate([RED, GREEN, BLUE] * 2, 1)]
        posted = server.post(f"<@{APP_ID}> /blend", attachments=six)
        answers["six"] = await server.await_for(lambda m: m.reference == posted["id"])
        # and a picture that isn't one, replied to: /edit reads the reply's image (a text file is none)
        theirs = server.post("my notes", user=BOB, attachments=[("notes.txt", b"hello", "text/plain")])
        replied = server.post(f"<@{APP_ID}> /edit make it snowy", reply_to=theirs["id"])
        answers["reply_no_picture"] = await server.await_for(lambda m: m.reference == replied["id"])

        texts = {name: message.content for name, message in answers.items()}
        assert "`/blend` makes 2 to 5 pictures into one; you gave 1" in texts["one"]
        assert "`/blend` on `tiny` takes at most 5 pictures; you gave 6" in texts["six"]
        assert "`/edit` changes a picture: reply to one" in texts["nothing"]
        assert "`/edit` changes a picture: reply to one" in texts["reply_no_picture"]
        assert "I can't read `notes.txt` as an image" in texts["text_file"]
        assert "`--sw 5000` is out of bounds: use 0 to 1000" in texts["heavy"]
        assert "`sw: 5000` is out of bounds: use 0 to 1000" in texts["heavy_typed"]
        assert "can't be used with `tiny-sd3`" in texts["sd3"] and "SD 3.5 has no IP-Adapter here" in texts["sd3"]
        assert "`tiny-sd3` (SD 3.5) can't blend pictures" in texts["sd3_blend"] and "`tiny`, `tiny-flux2`" in texts["sd3_blend"]
        assert all("queued" not in text and "Job" not in text for text in texts.values()), texts
        assert all(not message.files and not message.labels() for message in answers.values())
        await asyncio.sleep(0.5)  # a late second answer would be here by now
        for interaction in asked.values():  # the "thinking…" message went; one answer, only for its author
            assert [m.ephemeral for m in server.sent if m.interaction_id == interaction.id and not m.deleted] == [True]
    assert not [m for m in server.sent if m.files]  # no picture came
    assert jobs(settings) == 0
