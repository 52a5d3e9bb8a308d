"""/control and /edit in Telegram, through python-telegram-bot and the fake Bot API, on the tiny
model: a photo with the command as caption, the map sent as a reply to the result (without a PNG
button: it is no output), the original PNG equal to bare diffusers given that map, a reply to the
map with `--pre none`, and /edit with its Edit again button."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from config import Settings
from tests.fakes.telegram import FakeTelegram
from tests.support.running_chat import recorded
from tests.test_control_chats import rgb
from tests.test_control_engine import bare
from tests.test_telegram import is_photo_reply, server, telegram_bot, tg_settings  # noqa: F401 - fixtures


async def test_control_and_edit_in_telegram(tg_settings: Settings, server: FakeTelegram, models_dir: Path) -> None:  # noqa: F811
    settings = tg_settings.model_copy(update={"default_steps": 4})
    async with telegram_bot(settings, server):
        photo = io.BytesIO()
        Image.new("RGB", (64, 64), (200, 190, 170)).save(photo, format="PNG")
        asked = server.send("/control canny a fox --seed 3 --sampler euler", photo=photo.getvalue())
        result = await server.await_for(is_photo_reply(asked))
        control_map = await server.await_for(lambda m: m.kind == "photo" and m.reply_to == result.message_id)
        assert "Control map 1" in control_map.text and "📄 PNG" not in control_map.labels()
        await recorded(settings, result.chat_id, result.message_id)
        server.press(result, "📄 PNG")  # Telegram recompresses photos: compare the original
        document = await server.await_for(lambda m: m.kind == "document" and m.reply_to == result.message_id)
        reference = bare(models_dir, ["canny"], image=Image.open(io.BytesIO(control_map.uploaded or b"")), width=64, height=64)
        assert np.abs(rgb(document.uploaded or b"") - reference).max() <= 2

        await recorded(settings, control_map.chat_id, control_map.message_id)
        again = server.send("/control canny a cat --pre none", reply_to=control_map.message_id)  # a reply to the map
        assert "ControlNet canny" in (await server.await_for(is_photo_reply(again))).text
        edit = server.send("/edit make it snowy", reply_to=result.message_id)
        edited = await server.await_for(is_photo_reply(edit))
        assert "Edit: make it snowy" in edited.text and "Edit again" in edited.labels()
