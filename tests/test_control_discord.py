"""/control and /edit in Discord, through discord.py and the fake Discord API, on the tiny model:
the /control and /edit slash commands with an image, the map as a channel message replying to the
result, Apps → Control with its modal, and /control qr."""

from __future__ import annotations

import io

from PIL import Image

from config import Settings
from tests.fakes.discord import FakeDiscord
from tests.test_discord import answer_to, dc_settings, discord_bot, seen, server  # noqa: F401 - fixtures


async def test_control_and_edit_in_discord(dc_settings: Settings, server: FakeDiscord) -> None:  # noqa: F811
    async with discord_bot(dc_settings, server):
        names = [c["name"] for c in server.commands["global"]]
        assert {"control", "edit", "Control"} <= set(names)
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), (200, 190, 170)).save(buffer, format="PNG")
        image = ("photo.png", buffer.getvalue(), "image/png")
        asked = server.slash("control", {"type": "canny", "prompt": "a fox --steps 2"}, attachments={"image": image})
        result = await server.await_for(answer_to(asked, files=True))
        control_map = await server.await_for(lambda m: m.reference == result.id and bool(m.files))
        assert "Control map 1" in control_map.content
        edit = server.slash("edit", {"instruction": "make it snowy --steps 2"}, attachments={"image": image})
        edited = await server.await_for(answer_to(edit, files=True))
        assert "Edit: make it snowy" in edited.content and "Edit again" in edited.labels()
        opened = server.context_menu("Control", await seen(dc_settings, result))
        await server.await_until(lambda: opened.callbacks)
        [field] = server.modal_fields(opened)
        submitted = server.submit_modal(opened, {field: "scribble a wolf --steps 2"})
        steered = await server.await_for(answer_to(submitted, files=True))
        assert "ControlNet scribble" in steered.content
        qr = server.slash("control", {"type": "qr", "text": "https://example.com", "prompt": "a village --steps 2"})
        assert "ControlNet qr" in (await server.await_for(answer_to(qr, files=True))).content
