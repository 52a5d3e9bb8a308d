"""/animate, /video2video, /deforum and /frames through the command layer, with SQLite and a real
worker on the tiny model: what is queued, every refusal in its words (and nothing queued), and
the clips that come back with their buttons."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
from PIL import Image

from commands.frame.types import Attachment
from config import Settings
from tests.test_edits_service import job_spec, jobs_count
from tests.test_service import Bot, make_bot


def video(frames: int = 12, fps: int = 8, size: tuple[int, int] = (96, 64), container: str = "mp4") -> bytes:
    """A small real video: a bright square moving right."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as output:
        stream = output.add_stream("libx264" if container == "mp4" else "libvpx", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            picture = np.zeros((size[1], size[0], 3), np.uint8)
            picture[16:32, 4 * i : 4 * i + 16] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return buffer.getvalue()


async def refused(bot: Bot, command: str, **fields) -> str:  # type: ignore[no-untyped-def]
    replies = await bot.send(command, **fields)
    assert [reply.kind for _, reply in replies] == ["error"], (command, [reply.text for _, reply in replies])
    return replies[0][1].text


async def test_animate_queues_a_clip_job_with_its_settings(bot: Bot) -> None:
    [(_, queued)] = await bot.send("/animate a fox running --frames 8 --seed 2 --steps 4 --fps 12 --loop")
    assert queued.kind == "status", queued.text
    spec, _, _ = await job_spec(bot, queued.job_id)  # type: ignore[arg-type]
    assert spec.kind == "animate" and spec.clip is not None
    assert (spec.clip.frames, spec.clip.fps, spec.clip.motion, spec.clip.loop) == (8, 12, "tiny", True)
    assert (spec.seed, spec.steps, spec.n, spec.prompt) == (2, 4, 1, "a fox running")
    assert "8 frames · 12 fps" in queued.text and "motion tiny" in queued.text


async def test_long_clips_go_in_context_windows_and_say_so(bot: Bot, settings: Settings) -> None:
    [(_, queued)] = await bot.send(f"/animate a fox --frames {settings.max_frames}")
    spec, _, _ = await job_spec(bot, queued.job_id)  # type: ignore[arg-type]
    assert spec.clip is not None and spec.clip.context == settings.animate_context_frames < spec.clip.frames
    assert "overlapping windows of 16 frames" in queued.text


async def test_deforum_keeps_its_schedules_and_prompt_schedule(bot: Bot) -> None:
    [(_, queued)] = await bot.send('/deforum "0: a forest, 4: a city" --frames 8 --zoom "0:(1.1)" --angle 2 --strength 0.5')
    assert queued.kind == "status", queued.text
    spec, _, _ = await job_spec(bot, queued.job_id)  # type: ignore[arg-type]
    assert spec.kind == "deforum" and spec.clip is not None
    assert spec.prompt == "0: a forest, 4: a city"
    assert (spec.clip.zoom, spec.clip.angle, spec.clip.tx, spec.strength, spec.clip.strength_schedule) == (
        "0:(1.1)",
        "0:(2)",
        "0:(0)",
        0.5,
        None,
    )
    [(_, scheduled)] = await bot.send('/deforum a sea --frames 10 --strength "0:(0.6), 9:(0.3)" --steps 10')
    spec, _, _ = await job_spec(bot, scheduled.job_id)  # type: ignore[arg-type]
    assert spec.clip is not None and spec.clip.strength_schedule == "0:(0.6), 9:(0.3)" and spec.strength == 0.6


async def test_every_bad_clip_request_is_refused_clearly_and_queues_nothing(bot: Bot, settings: Settings) -> None:
    before = await jobs_count(bot)
    cases = {
        "/animate a fox --frames 100": "`--frames 100` is out of bounds: use 8 to 32",
        "/animate a fox --frames 4": "use 8 to 32",
        "/animate a fox --fps 0": "`--fps 0` is out of bounds",
        "/animate --frames 8": "Say what to animate",
        "/animate a fox --motion v3": "only the built-in `tiny` motion adapter works",
        "/animate a fox --camera dolly": "I don't know the camera move `dolly`. Camera moves: `tiny-zoom`",
        "/animate a fox --size 1024x1024": "A clip's frames may be 262,144 pixels at most",
        "/animate a fox --loop maybe": "`--loop` is on or off",
        "/animate a fox --n 4": "I don't know the option `--n`",
        '/deforum "0: a forest, 4:" --frames 8': "The prompt schedule: frame 4 has no prompt after its colon (at character",
        '/deforum "0: a forest, 40: a city" --frames 8': "The prompt for frame 40 comes after the clip's last frame (7)",
        "/deforum a forest --zoom \"0:(1.1), 4:(__import__('os'))\"": "`--zoom 0:(1.1), 4:(__import__('os'))`:",
        '/deforum a forest --zoom "0:(1.1"': "`--zoom 0:(1.1`:",
        "/deforum a forest --zoom 3": "`--zoom` is 3 at frame 0; per frame it must lie from 0.5 to 2",
        "/deforum a forest --angle 90": "`--angle` is 90 at frame 0",
        "/deforum a forest --tx 500 --size 64x64": "`--tx` is 500 at frame 0; per frame it must lie from -64 to 64",
        "/deforum a forest --frames 500": "`--frames 500` is out of bounds: use 2 to 120",
        "/deforum a forest --strength 0.1 --steps 4": "With strength 0.1 and 4 steps no denoising step would run",
        "/deforum a forest --style cinematic": "I don't know the option `--style`",
        "/video2video a watercolor fox": "`/video2video` restyles a clip: reply to a video, a GIF or one of my clips",
        "/frames": "Which clip?",
        "/frames 999": "I can't find job 999 among yours",
        "/frames 1 webp": "`/frames` takes a job number and one of png, gif, mp4",
    }
    for command, expected in cases.items():
        text = await refused(bot, command)
        assert expected in text, (command, text)
    not_video = Attachment("notes.mp4", b"this is no video at all" * 10, "video/mp4")
    text = await refused(bot, "/video2video a fox", attachments=(not_video,))
    assert "`notes.mp4`:" in text and "MP4" in text, text
    assert await jobs_count(bot) == before


@pytest.fixture
async def long_videos_bot(settings: Settings):  # type: ignore[no-untyped-def]
    made = await make_bot(settings.model_copy(update={"max_video_seconds": 1.0, "max_video_bytes": 40_000}))
    yield made
    made.worker.executor.shutdown()
    await made.core.db.close()


async def test_a_video_over_the_length_or_size_limit_is_refused(long_videos_bot: Bot) -> None:
    bot = long_videos_bot
    too_long = Attachment("long.mp4", video(frames=24, fps=8), "video/mp4")  # 3 s
    text = await refused(bot, "/video2video a fox", attachments=(too_long,))
    assert "`long.mp4` is 3.0 s long; I read videos up to 1 s" in text, text
    too_big = Attachment("big.mp4", b"\0" * 50_000, "video/mp4")
    text = await refused(bot, "/video2video a fox", attachments=(too_big,))
    assert "big.mp4" in text and ("40" in text or "MiB" in text or "MB" in text), text


async def test_video2video_reads_an_uploaded_video_within_the_limits(bot: Bot, settings: Settings) -> None:
    clip = Attachment("run.mp4", video(frames=12, fps=8, size=(96, 64)), "video/mp4")
    [(_, queued)] = await bot.send("/video2video a watercolor fox --frames 8 --steps 4", attachments=(clip,))
    assert queued.kind == "status", queued.text
    spec, _, _ = await job_spec(bot, queued.job_id)  # type: ignore[arg-type]
    assert spec.kind == "video2video" and spec.clip is not None
    assert len(spec.clip.source) == 8 and spec.clip.fps == 8 and spec.strength == settings.video2video_strength
    assert (spec.width, spec.height) == (72, 48)  # the video's proportions at the tiny model's 64x64 area, sides of 8
    first = Image.open(bot.core.ctx.blobs.path(spec.clip.source[0]))
    assert first.size == (96, 64)
    assert "I used the first 8" in queued.text, queued.text


@pytest.fixture
async def real_models_bot(settings: Settings):  # type: ignore[no-untyped-def]
    """Real model entries beside tiny (never loaded here: refusals come before anything is queued)."""
    from config.models import ModelEntry, MotionAdapterEntry

    models = {"xl": ModelEntry(source="stabilityai/stable-diffusion-xl-base-1.0"), "sd15": ModelEntry(source="org/sd15-model")}
    adapters = {"v3": MotionAdapterEntry(source="guoyww/animatediff-motion-adapter-v1-5-3")}
    made = await make_bot(settings.model_copy(update={"models": models, "motion_adapters": adapters}))
    yield made
    made.worker.executor.shutdown()
    await made.core.db.close()


async def test_a_motion_adapter_for_another_architecture_is_refused(real_models_bot: Bot) -> None:
    bot = real_models_bot
    before = await jobs_count(bot)
    text = await refused(bot, "/animate a fox --model xl --motion v3")
    assert "The motion adapter `v3` is made for SD 1.x, and the model `xl` is SDXL" in text, text
    text = await refused(bot, "/animate a fox --model xl")
    assert "Clips need an AnimateDiff motion adapter for SDXL" in text and "SDBOT_MOTION_ADAPTERS" in text, text
    text = await refused(bot, "/animate a fox --model sd15 --motion tiny")
    assert "I don't know the motion adapter `tiny`. Motion adapters: `v3`." in text, text
    text = await refused(bot, "/animate a fox --model xl --motion v3 --camera zoom")
    assert "made for SD 1.x" in text, text
    assert await jobs_count(bot) == before
    [(_, queued)] = await bot.send("/animate a fox --model sd15 --frames 8")  # the first adapter that fits
    assert queued.kind == "status", queued.text
    spec, _, _ = await job_spec(bot, queued.job_id)  # type: ignore[arg-type]
    assert spec.clip is not None and spec.clip.motion == "v3" and (spec.width, spec.height) == (512, 512)


def decoded_frames(path) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for _ in container.decode(stream)), float(stream.average_rate)


async def test_an_animation_comes_back_as_a_video_with_its_buttons(bot: Bot) -> None:
    await bot.send("/animate a fox running --frames 8 --seed 2 --steps 4")
    [(result_id, item)] = await bot.finish()
    reply = item.reply
    assert reply.video is not None and reply.kind == "result", reply.text
    assert decoded_frames(reply.video.mp4) == (8, 8.0)
    assert len(reply.video.frames) == 8 and reply.images[0].path == reply.video.frames[0]  # the poster: frame 1
    assert [a.label for a in reply.actions] == ["Reroll", "Longer", "Upscale 2x", "Remix"]
    assert "🎞️" in reply.text and "8 frames · 8 fps (1.0 s)" in reply.text
    with Image.open(reply.video.frames[3]) as frame:
        parameters = frame.text["parameters"]
    assert "Seed: 2," in parameters and "Frames: 8" in parameters, parameters
    job_id = reply.job_id

    [(_, longer)] = await bot.press(result_id, "Longer")
    assert longer.kind == "status", longer.text
    [(_, grown)] = await bot.finish()
    assert grown.reply.video is not None and len(grown.reply.video.frames) == 16
    for old, new in zip(reply.video.frames, grown.reply.video.frames[:8], strict=True):  # the clip so far, then 8 new frames
        assert np.array_equal(np.asarray(Image.open(old)), np.asarray(Image.open(new)))

    [(_, up)] = await bot.press(result_id, "Upscale 2x")
    assert up.kind == "status", up.text
    [(_, upscaled)] = await bot.finish()
    assert upscaled.reply.video is not None and (upscaled.reply.video.width, upscaled.reply.video.height) == (128, 128)
    assert len(upscaled.reply.video.frames) == 8 and upscaled.reply.actions == ()

    for press in ("Reroll", "Remix"):
        [(_, queued)] = await bot.press(result_id, press)
        assert queued.kind == "status", (press, queued.text)
        [(_, again)] = await bot.finish()
        assert again.reply.video is not None and len(again.reply.video.frames) == 8, press

    [(_, restyled_status)] = await bot.send("a fox made of paper", reply_to=result_id)  # a plain reply restyles the clip
    assert restyled_status.kind == "status" and "Video to video" in restyled_status.text, restyled_status.text
    [(_, restyled)] = await bot.finish()
    assert restyled.reply.video is not None

    [(_, frames)] = await bot.send(f"/frames {job_id}")
    [document] = frames.documents
    import zipfile

    with zipfile.ZipFile(document.path) as archive:
        names = archive.namelist()
    assert len(names) == 8 and names[0] == f"sdbot-{job_id}-frame001.png"
    [(_, gif)] = await bot.send("/frames gif", reply_to=result_id)
    assert gif.documents[0].filename == f"sdbot-{job_id}.gif"
    info = (await bot.send(f"/info {job_id}"))[0][1].text
    assert "Clip: 8 frames at 8 fps, 64x64" in info and "Frame 1 of 8:" in info, info


async def test_deforum_returns_its_frames_as_a_clip(bot: Bot) -> None:
    [(_, queued)] = await bot.send('/deforum "0: a forest, 4: a city" --frames 8 --zoom "0:(1.1)" --steps 4 --seed 5')
    assert queued.kind == "status", queued.text
    [(result_id, item)] = await bot.finish()
    video = item.reply.video
    assert video is not None and len(video.frames) == 8 and decoded_frames(video.mp4)[0] == 8
    seeds = []
    for path in video.frames:
        with Image.open(path) as frame:
            parameters = frame.text["parameters"]
        seeds.append(int(parameters.split("Seed: ")[1].split(",")[0]))
    assert seeds == list(range(5, 13))  # Deforum's "iter" seeds: frame k uses seed + k
    [(_, longer)] = await bot.press(result_id, "Longer")
    [(_, grown)] = await bot.finish()
    assert grown.reply.video is not None and len(grown.reply.video.frames) == 16
