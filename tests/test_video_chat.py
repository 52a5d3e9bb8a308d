"""/video and the video buttons through the command layer, as the console and every adapter use it
(a real worker, SQLite, the built-in tiny video models `tiny-wan` (text-to-video), `tiny-wan-i2v`
(image-to-video and first-last-frame) and `tiny-ltx` beside `tiny`, 2 steps): what is queued, the
clip that comes back (an MP4 and its poster) with its buttons, Animate under a still picture,
`--loop`, Extend (the clip so far, then the new frames drawn from its last one), and every
refusal in its words with nothing queued."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from commands.frame.types import Attachment, Reply
from config import ModelEntry, Settings
from generation.spec import GenerationSpec
from tests.test_service import Bot, make_bot, png

VIDEO_MODELS = ("tiny-wan", "tiny-wan-i2v", "tiny-ltx")
VIDEO_BUTTONS = ["Extend", "Reroll", "Loop", "Upscale 2x"]


@pytest.fixture
def video_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"models": {name: ModelEntry(source=name) for name in VIDEO_MODELS}, "default_steps": 2})


@pytest.fixture
async def vbot(video_settings: Settings):  # type: ignore[no-untyped-def]
    made = await make_bot(video_settings)
    yield made
    made.worker.executor.shutdown()
    await made.core.db.close()


async def spec_of(bot: Bot, job_id: int | None) -> GenerationSpec:
    from storage import queue

    assert job_id is not None
    async with bot.core.db.transaction() as session:
        job = await queue.get(session, job_id)
        assert job is not None
        return GenerationSpec.model_validate(job.params)


def jobs(bot: Bot) -> int:
    with sqlite3.connect(Path(bot.core.ctx.settings.data_dir) / "sdbot.db") as db:
        return int(db.execute("select count(*) from jobs").fetchone()[0])


def frames_of(reply: Reply) -> list[np.ndarray]:
    assert reply.video is not None, reply.text
    return [np.asarray(Image.open(path).convert("RGB")).astype(int) for path in reply.video.frames]


def mp4_frames(reply: Reply) -> int:
    assert reply.video is not None
    with av.open(str(reply.video.mp4)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


async def queued(bot: Bot, command: str, **fields) -> tuple[Reply, GenerationSpec]:  # type: ignore[no-untyped-def]
    [(_, status)] = await bot.send(command, **fields)
    assert status.kind == "status", (command, status.text)
    return status, await spec_of(bot, status.job_id)


async def refused(bot: Bot, command: str | None, **fields) -> str:  # type: ignore[no-untyped-def]
    replies = await bot.send(command, **fields)
    assert [reply.kind for _, reply in replies] == ["error"], (command, [reply.text for _, reply in replies])
    return replies[0][1].text


async def a_picture(bot: Bot) -> tuple[str, Reply]:
    """A still picture of `tiny` (its result message id and reply)."""
    await bot.send("/imagine a red fox in the snow --seed 9")
    [(message_id, item)] = await bot.finish()
    return message_id, item.reply


async def test_text_to_video_comes_back_as_a_clip_with_its_buttons(vbot: Bot) -> None:
    status, spec = await queued(vbot, "/video a fox running through snow --seed 3 --motion high")
    assert (spec.kind, spec.model, spec.init_image, spec.family) == ("video", "tiny-wan", None, "wan")  # the first video model
    assert spec.clip is not None and (spec.clip.frames, spec.clip.fps, spec.clip.motion_amount) == (9, 16, "high")
    assert (spec.width, spec.height, spec.seed, spec.steps) == (64, 64, 3, 2)
    assert "9 frames · 16 fps" in status.text and "motion high" in status.text
    [(_, item)] = await vbot.finish()
    reply = item.reply
    assert reply.kind == "result" and reply.video is not None, reply.text
    assert mp4_frames(reply) == 9 and len(reply.video.frames) == 9 and reply.video.fps == 16
    assert reply.images[0].path == reply.video.frames[0]  # the poster: the first frame
    assert [action.label for action in reply.actions] == VIDEO_BUTTONS
    assert "🎞️" in reply.text and "--extend" in reply.text and "/frames" in reply.text

    status, spec = await queued(vbot, "/video a fox --seconds 1 --fps 8 --model tiny-ltx")
    assert spec.clip is not None and (spec.model, spec.clip.fps, spec.clip.frames) == ("tiny-ltx", 8, 9)  # 8 frames: LTX takes 8k+1
    assert "LTX-Video draws 8k+1 frames" in status.text and "8 frames became 9" in status.text


async def test_a_reply_to_a_picture_and_the_animate_button_draw_from_it(vbot: Bot) -> None:
    picture_id, picture = await a_picture(vbot)
    assert "Animate" in [action.label for action in picture.actions]  # the registry has an image-to-video model
    output = picture.images[0]

    status, spec = await queued(vbot, "/video the fox turns its head", reply_to=picture_id)
    assert (spec.kind, spec.model, spec.prompt, spec.operation) == ("video", "tiny-wan-i2v", "the fox turns its head", "Animate")
    assert spec.init_image is not None and spec.clip is not None and spec.clip.end_image is None
    assert vbot.core.ctx.blobs.path(spec.init_image) == output.path  # the picture itself is the first frame

    [(_, pressed)] = await vbot.press(picture_id, "Animate")
    assert pressed.kind == "status", pressed.text
    animated = await spec_of(vbot, pressed.job_id)
    assert (animated.model, animated.init_image, animated.prompt) == ("tiny-wan-i2v", spec.init_image, "a red fox in the snow")
    assert "reply to the picture with `/video <what moves>`" in pressed.text  # the manual form, said where the button is

    photo = Attachment("mine.png", png((20, 120, 200), size=(128, 64)), "image/png")  # a person's picture, 2:1
    _, uploaded = await queued(vbot, "/video the sea moves --model tiny-ltx", attachments=(photo,))
    assert uploaded.init_image is not None and uploaded.model == "tiny-ltx" and (uploaded.width, uploaded.height) == (128, 64)

    delivered = await vbot.finish()
    assert len(delivered) == 3 and all(item.reply.video is not None for _, item in delivered)
    for _, item in delivered[:2]:
        assert len(item.reply.video.frames) == 9 and [a.label for a in item.reply.actions] == VIDEO_BUTTONS  # type: ignore[union-attr]


async def test_loop_ends_on_the_first_frame_or_plays_back_and_forth(vbot: Bot) -> None:
    picture_id, _ = await a_picture(vbot)
    status, closed = await queued(vbot, "/video the fox breathes --loop", reply_to=picture_id)
    assert closed.clip is not None and closed.clip.end_image == closed.init_image and not closed.clip.loop
    assert "ends on its first frame, so it loops" in status.text and "loop (ends on its first frame)" in status.text
    status, bounced = await queued(vbot, "/video a candle flickers --loop")  # no first frame: forward, then back
    assert bounced.clip is not None and bounced.clip.loop and bounced.clip.end_image is None
    assert "forward, then back (there is no first frame to end on)" in status.text

    await vbot.send("/video a candle flickers --seed 4")
    delivered = {item.reply.job_id: (message_id, item.reply) for message_id, item in await vbot.finish()}
    assert len(delivered) == 3
    closed_reply = delivered[sorted(delivered)[0]][1]
    assert "Loop" not in [a.label for a in closed_reply.actions]  # it loops already
    bounced_id, bounced_reply = delivered[sorted(delivered)[1]]
    assert mp4_frames(bounced_reply) == 2 * 9 - 2  # played forward, then back
    plain_id, plain = delivered[sorted(delivered)[2]]
    [(_, looping)] = await vbot.press(plain_id, "Loop")  # Midjourney's Loop: the same clip, made to loop
    again = await spec_of(vbot, looping.job_id)
    assert again.clip is not None and again.clip.loop and again.seed == 4 and "forward, then back" in looping.text
    closed_id = delivered[sorted(delivered)[0]][0]
    [(_, upscaling)] = await vbot.press(closed_id, "Upscale 2x")  # every frame; the first and last frame were the drawing's
    upscale = await spec_of(vbot, upscaling.job_id)
    assert upscale.kind == "upscale" and upscale.clip is not None and upscale.clip.end_image is None
    finished = {item.reply.job_id: item.reply for _, item in await vbot.finish()}
    bigger = finished[upscaling.job_id]
    assert bigger.video is not None and (bigger.video.width, bigger.video.height) == (128, 128) and len(bigger.video.frames) == 9


async def test_extend_continues_a_clip_from_its_last_frame(vbot: Bot) -> None:
    await vbot.send("/video a fox running --seed 5")
    [(clip_id, first)] = await vbot.finish()
    old = frames_of(first.reply)
    assert len(old) == 9

    [(_, pressed)] = await vbot.press(clip_id, "Extend")
    assert pressed.kind == "status", pressed.text
    spec = await spec_of(vbot, pressed.job_id)
    assert spec.clip is not None and spec.clip.extend and len(spec.clip.source) == 9 and spec.clip.frames == 9  # one call: 1 + 8 new
    assert spec.model == "tiny-wan-i2v" and spec.prompt == "a fox running" and spec.operation == "Extend"
    assert "Continued with `tiny-wan-i2v`" in pressed.text  # tiny-wan draws from text only
    assert vbot.core.ctx.blobs.path(spec.init_image or "") == first.reply.video.frames[-1]  # type: ignore[union-attr]
    [(grown_id, grown)] = await vbot.finish()
    new = frames_of(grown.reply)
    assert len(new) == 17 and mp4_frames(grown.reply) == 17  # the 9 frames so far, then 8 new ones
    for before, after in zip(old, new[:9], strict=True):
        assert np.array_equal(before, after)
    assert "17 frames" in grown.reply.text and [a.label for a in grown.reply.actions] == VIDEO_BUTTONS

    status, steered = await queued(vbot, "/video the fox jumps over a log --extend --frames 4", reply_to=grown_id)
    assert steered.clip is not None and steered.clip.frames == 5 and len(steered.clip.source) == 17  # 4 new frames
    assert steered.prompt == "the fox jumps over a log" and steered.model == "tiny-wan-i2v"
    [(_, longest)] = await vbot.finish()
    assert len(frames_of(longest.reply)) == 21

    await vbot.send("/animate a fox in the rain --frames 8 --fps 8")  # an AnimateDiff clip goes on with a video model
    [(animation_id, _)] = await vbot.finish()
    status, onwards = await queued(vbot, "/video --extend", reply_to=animation_id)
    assert (onwards.model, onwards.prompt, onwards.clip.fps, len(onwards.clip.source)) == ("tiny-wan-i2v", "a fox in the rain", 8, 8)  # type: ignore[union-attr]
    assert "Continued with `tiny-wan-i2v`, which can start from a frame (`tiny` can't)" in status.text


async def test_every_bad_video_request_is_refused_clearly_and_queues_nothing(vbot: Bot) -> None:
    picture_id, _ = await a_picture(vbot)
    await vbot.send("/video a fox --seed 1")
    [(clip_id, _)] = await vbot.finish()
    before = jobs(vbot)
    cases = {
        "/video a fox --frames 500": "`--frames 500` is out of bounds: use 1 to 128",
        "/video a fox --frames 121 --model tiny-wan": "Wan T2V draws at most 81 frames; you asked for 121",
        "/video a fox --frames 120 --model tiny-wan": "120 is not one. Try `--frames 81`",
        "/video a fox --size 72x72": "draws sizes in multiples of 16; 72x72 is not",
        "/video a fox --size 1024x1024 --frames 33 --model tiny-ltx": "a clip may have 33,554,432 here",
        "/video a fox --frames 9 --seconds 1": "Use `--frames` or `--seconds`, not both",
        f"/video a fox --end {picture_id}": "`--end` sets the clip's last frame, and needs a first frame too",
        f"/video a fox --loop --end {picture_id}": "Use `--loop` or `--end`, not both",
        "/video a fox --model tiny": "`tiny` (SD 1.x) is a picture model: `/video` draws with a video model. Video models here:",
        "/video a fox --model tiny-wan-i2v": "Wan 2.2 I2V A14B starts from a picture",
        "/video a fox --motion wild": "`--motion` is one of low, high",
        "/video a fox --extend": "`--extend` continues one of my clips: reply to it",
        "/imagine a fox --model tiny-wan": "Pictures can't be drawn with `tiny-wan`: Wan is a video model",
        "/animate a fox --model tiny-ltx": "can't be drawn with `tiny-ltx`",
    }
    for command, expected in cases.items():
        text = await refused(vbot, command)
        assert expected in text, (command, text)
    replies = {
        "/video the fox turns --model tiny-wan": (picture_id, "Wan T2V draws text-to-video; it can't start from a picture"),
        "/video more of it": (clip_id, "That is one of my clips: add `--extend`"),
    }
    for command, (reply_to, expected) in replies.items():
        text = await refused(vbot, command, reply_to=reply_to)
        assert expected in text, (command, text)
    assert "/video <what moves>" in (await vbot.send("/help video"))[0][1].text
    assert jobs(vbot) == before


async def test_a_clip_estimated_past_the_gpu_seconds_limit_is_refused_before_queueing(video_settings: Settings) -> None:
    """SDBOT_MAX_CLIP_GPU_SECONDS: the first clip of a model runs (nothing to judge by yet); the next
    ones are estimated from it (seconds per frame x pixel x step), and one far bigger is refused."""
    bot = await make_bot(video_settings.model_copy(update={"max_clip_gpu_seconds": 60.0}))
    try:
        await bot.send("/video a fox --model tiny-wan --frames 5 --steps 1 --size 64x64")
        [(_, first)] = await bot.finish()
        assert first.reply.video is not None, first.reply.text
        before = jobs(bot)
        text = await refused(bot, "/video a fox --model tiny-wan --frames 81 --steps 50 --size 512x512")
        assert "This clip would take about" in text and "GPU-seconds (judging by the last clips of `tiny-wan`); a clip may take 60" in text
        assert jobs(bot) == before
        _, spec = await queued(bot, "/video a fox --model tiny-wan --frames 5 --steps 1 --size 64x64")
        assert spec.clip is not None and spec.clip.max_seconds == 60.0  # the engine's limit travels with the clip
        await bot.finish()
    finally:
        bot.worker.executor.shutdown()
        await bot.core.db.close()


@pytest.fixture
async def still_bot(settings: Settings):  # type: ignore[no-untyped-def]
    """Only `tiny-wan` (text-to-video) beside `tiny`: no model animates a picture."""
    made = await make_bot(settings.model_copy(update={"models": {"tiny-wan": ModelEntry(source="tiny-wan")}, "default_steps": 2}))
    yield made
    made.worker.executor.shutdown()
    await made.core.db.close()


async def test_no_animate_button_without_an_image_to_video_model(still_bot: Bot) -> None:
    picture_id, picture = await a_picture(still_bot)
    assert "Animate" not in [action.label for action in picture.actions]
    text = await refused(still_bot, "/video the fox turns its head", reply_to=picture_id)
    assert "No video model here draws image-to-video. Video models here: `tiny-wan` (text-to-video)." in text, text


def test_video_and_extend_in_the_console(tmp_path: Path, models_dir: Path) -> None:
    """`run_bot.py console --jsonl` in a real process: /video arrives as a playable MP4 with the
    video buttons, and its Extend (pressed as a console press) as the longer clip."""
    from generation.animation import video
    from tests.conftest import bot_env
    from tests.support.console_process import ConsoleProcess

    models = '{"tiny-wan": {"source": "tiny-wan"}, "tiny-wan-i2v": {"source": "tiny-wan-i2v"}}'
    bot = ConsoleProcess(bot_env(tmp_path / "data", models_dir, SDBOT_MODELS=models, SDBOT_DEFAULT_STEPS="2"), tmp_path / "bot.log")
    bot.send(text="/video a fox running --seed 2")
    done = bot.message("result", reply_to="u1", timeout=300)
    info = video.probe(Path(done["video"]).read_bytes())
    assert (info.format, info.frames, info.fps) == ("mp4", 9, 16)
    assert [action["label"] for action in done["actions"]] == VIDEO_BUTTONS
    bot.send(press={"message": done["id"], "action": "Extend"})
    longer = bot.message("result", timeout=60, job=2)
    assert video.probe(Path(longer["video"]).read_bytes()).frames == 17 and "Extend" in longer["text"]
    assert bot.finish() == 0
