"""/video in Discord, through discord.py and the fake Discord API and gateway
(tests/fakes/discord.py), with the built-in tiny video models beside `tiny`: Animate under a still
picture, `/video loop:True` and an Extend arrive as `.mp4` files with the video buttons; bad input
gets one answer only its author sees, and nothing is queued."""

from __future__ import annotations

import io
import sqlite3

import av
import pytest

from config import ModelEntry, Settings
from tests.fakes.discord import FakeDiscord, Sent
from tests.test_discord import answer_to, dc_settings, discord_bot, png, seen, server  # noqa: F401 - fixtures

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

MODELS = ("tiny-wan", "tiny-wan-i2v", "tiny-ltx")
VIDEO_BUTTONS = ["Extend", "Reroll", "Loop", "Upscale 2x"]


@pytest.fixture
def video_settings(dc_settings: Settings) -> Settings:  # noqa: F811
    return dc_settings.model_copy(update={"models": {name: ModelEntry(source=name) for name in MODELS}, "default_steps": 2})


def jobs(settings: Settings) -> int:
    with sqlite3.connect(settings.data_dir / "sdbot.db") as db:
        return int(db.execute("select count(*) from jobs").fetchone()[0])


def clip_frames(message: Sent) -> int:
    [(name, data)] = message.files.items()
    assert name.endswith(".mp4"), name
    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


async def test_animate_loop_and_extend_in_discord(video_settings: Settings, server: FakeDiscord) -> None:  # noqa: F811
    settings = video_settings
    async with discord_bot(settings, server):
        declared = {c["name"]: [o["name"] for o in c["options"]] for c in server.commands["global"]}
        assert {"prompt", "image", "image2", "frames", "seconds", "motion", "loop", "end", "extend", "model"} <= set(declared["video"])

        asked = server.slash("imagine", {"prompt": "a red fox in the snow"})
        picture = await seen(settings, await server.await_for(answer_to(asked, files=True)))
        assert "Animate" in picture.labels()
        pressed = server.press(picture, "Animate")
        animated = await seen(settings, await server.await_for(answer_to(pressed, files=True)))
        assert "Animate: a red fox in the snow" in animated.content and animated.labels() == VIDEO_BUTTONS
        assert clip_frames(animated) == 9

        looped = server.slash("video", {"prompt": "a candle flickers", "loop": True})
        bounced = await server.await_for(answer_to(looped, files=True))
        assert clip_frames(bounced) == 2 * 9 - 2 and bounced.labels() == ["Extend", "Reroll", "Upscale 2x"]

        extend = server.press(animated, "Extend")
        extended = await server.await_for(answer_to(extend, files=True))
        assert clip_frames(extended) == 17 and "Extend" in extended.content and extended.labels() == VIDEO_BUTTONS

        # The manual form of Animate: Apps → Remix on the picture, with `/video <what moves>`
        menu = server.context_menu("Remix", picture)
        await server.await_until(lambda: menu.callbacks)
        [field] = server.modal_fields(menu)
        manual = await server.await_for(answer_to(server.submit_modal(menu, {field: "/video the fox turns its head"}), files=True))
        assert "Animate: the fox turns its head" in manual.content and clip_frames(manual) == 9
    assert jobs(settings) == 5  # the picture, Animate, the loop, the Extend and the manual Animate


async def test_bad_video_input_in_discord_queues_nothing(video_settings: Settings, server: FakeDiscord) -> None:  # noqa: F811
    settings = video_settings
    async with discord_bot(settings, server):
        asked = server.slash("imagine", {"prompt": "a red fox"})
        picture = await seen(settings, await server.await_for(answer_to(asked, files=True)))
        before = jobs(settings)
        picture_file = {"image": ("fox.png", png(), "image/png")}
        cases = [
            (("video", {"prompt": "a fox", "frames": 500}), {}, "`frames: 500` is out of bounds: use 1 to 128"),
            (("video", {"prompt": "a fox", "model": "tiny"}), {}, "`tiny` (SD 1.x) is a picture model"),
            (("imagine", {"prompt": "a fox", "model": "tiny-wan"}), {}, "Pictures can't be drawn with `tiny-wan`"),
            (("video", {"prompt": "a fox", "loop": True, "end": picture.id}), {}, "Use `--loop` or `--end`, not both"),
            (("video", {"prompt": "a fox", "end": picture.id}), {}, "needs a first frame too"),
            (("video", {"prompt": "the fox turns", "model": "tiny-wan"}), picture_file, "can't start from a picture"),
            (("video", {"prompt": "a fox", "size": "72x72"}), {}, "multiples of 16"),
        ]
        for (name, options), files, expected in cases:
            interaction = server.slash(name, options, attachments=files or None)
            answer = await server.await_for(answer_to(interaction, ephemeral=True))
            assert expected in answer.content and not answer.labels(), (name, options, answer.content)
    assert not [m for m in server.sent if any(name.endswith(".mp4") for name in m.files)]
    assert jobs(settings) == before
