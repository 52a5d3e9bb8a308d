"""The edit commands through the command layer, in one process with a real worker and SQLite:
what gets queued (kind, parent, sizes, notes), what is refused with which words, and that a
refused request queues nothing."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from commands.frame.types import Attachment
from config import Settings
from generation.spec import GenerationSpec
from storage import queue
from tests.test_service import Bot, make_bot, pixels, png


async def job_spec(bot: Bot, job_id: int) -> tuple[GenerationSpec, int | None, int | None]:
    async with bot.core.db.transaction() as session:
        job = await queue.get(session, job_id)
        assert job is not None
        return GenerationSpec.model_validate(job.params), job.parent_id, job.parent_output_index


async def jobs_count(bot: Bot) -> int:
    [(_, reply)] = await bot.send("/history 25")
    return reply.text.count("Job ")


async def a_result(bot: Bot, command: str = "/imagine a red fox --seed 9 --size 64x64") -> tuple[str, int]:
    await bot.send(command)
    [(message_id, item)] = await bot.finish()
    assert item.reply.job_id is not None
    return message_id, item.reply.job_id


def size(item) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with Image.open(item.reply.images[0].path) as image:
        return image.size


async def test_each_edit_command_as_a_reply_queues_its_kind_with_the_parent(bot: Bot) -> None:
    message_id, parent = await a_result(bot)
    cases = {
        "/upscale": ("upscale", (128, 128)),  # lanczos: no upscaler configured
        "/upscale 4 --method lanczos": ("upscale", (256, 256)),
        "/vary subtle": ("img2img", (64, 64)),
        "/vary strong a blue fox": ("img2img", (64, 64)),
        "/zoom 1.5": ("outpaint", (96, 96)),
        "/pan up": ("outpaint", (64, 96)),
        "/inpaint a hat --box 0,0,32,32": ("inpaint", (64, 64)),
    }
    for command, (kind, expected) in cases.items():
        [(_, queued)] = await bot.send(command, reply_to=message_id)
        assert queued.kind == "status", (command, queued.text)
        spec, parent_id, parent_index = await job_spec(bot, queued.job_id)  # type: ignore[arg-type]
        assert (spec.kind, parent_id, parent_index) == (kind, parent, 0), command
        [(_, done)] = await bot.finish()
        assert size(done) == expected, command
        if command == "/vary strong a blue fox":
            assert spec.prompt == "a blue fox" and spec.strength == 0.7
        elif command == "/vary subtle":
            assert spec.prompt == "a red fox" and spec.strength == 0.35 and spec.seed != 9


async def test_an_edit_of_a_persons_photo_keeps_its_size(bot: Bot) -> None:
    photo = Attachment("photo.png", png((200, 30, 30), (100, 60)), "image/png")
    await bot.send("/upscale 2", attachments=(photo,))
    [(_, done)] = await bot.finish()
    assert size(done) == (200, 120)
    with Image.open(done.reply.images[0].path) as image:
        assert np.asarray(image.convert("RGB"))[60, 100].tolist() == [200, 30, 30]
        assert "Postprocess upscale by: 2" in image.text["parameters"]


async def test_refusals_are_clear_and_queue_nothing(bot: Bot, settings: Settings) -> None:
    message_id, _ = await a_result(bot)
    before = await jobs_count(bot)
    refusals = {
        "/upscale 3": "2 or 4",
        "/upscale 2 --method esrgan": "SDBOT_UPSCALERS",
        "/upscale 2 --method magic": "lanczos, esrgan, hires, latent",
        "/facefix": "SDBOT_FACE_RESTORERS",
        "/zoom 3": "1.1 to 2",
        "/pan sideways": "/pan left",
        "/inpaint a hat": "one way",
        "/inpaint --box 0,0,10,10": "what to paint",
        "/inpaint a hat --box 100,100,10,10": "covers no part",
        "/inpaint a hat --box 1,2,3": "four numbers",
        "/inpaint a hat --select hat": "SDBOT_SEGMENTER",
        "/inpaint a hat --box 0,0,9,9 --blur 99": "--blur 99",
        "/vary subtle --steps 500": "out of bounds",
    }
    for command, words in refusals.items():
        [(_, reply)] = await bot.send(command, reply_to=message_id)
        assert reply.kind == "error" and words in reply.text, (command, reply.text)
    [(_, reply)] = await bot.send("/upscale 4")  # no picture at all
    assert reply.kind == "error" and "works on a picture" in reply.text
    assert await jobs_count(bot) == before


async def test_upscale_past_the_limit_is_refused_and_zoom_is_scaled_to_fit(settings: Settings) -> None:
    bot = await make_bot(settings.model_copy(update={"max_upscale_pixels": 200 * 200, "max_pixels": 96 * 96}))
    try:
        message_id, _ = await a_result(bot)
        [(_, reply)] = await bot.send("/upscale 4", reply_to=message_id)
        assert reply.kind == "error" and "256x256" in reply.text and "40,000" in reply.text
        [(_, queued)] = await bot.send("/zoom 2", reply_to=message_id)
        assert "would pass this bot's limit" in queued.text
        spec, _, _ = await job_spec(bot, queued.job_id)  # type: ignore[arg-type]
        assert spec.width * spec.height <= 96 * 96 and spec.placement is not None
        [(_, done)] = await bot.finish()
        assert size(done) == (spec.width, spec.height)
    finally:
        bot.worker.executor.shutdown()
        await bot.core.db.close()


async def test_inpaint_with_an_attached_mask(bot: Bot) -> None:
    message_id, _ = await a_result(bot)
    mask = Image.new("L", (32, 32), 0)  # another size than the picture: scaled to it
    mask.paste(255, (0, 0, 16, 16))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    attached = Attachment("mask.png", buffer.getvalue(), "image/png")
    [(_, queued)] = await bot.send("/inpaint a hat --blur 0", reply_to=message_id, attachments=(attached,))
    spec, _, _ = await job_spec(bot, queued.job_id)  # type: ignore[arg-type]
    with Image.open(bot.core.ctx.blobs.path(spec.mask)) as stored:  # type: ignore[arg-type]
        assert stored.size == (64, 64) and stored.getbbox() == (0, 0, 32, 32)
    [(_, done)] = await bot.finish()
    assert "Inpaint" in done.reply.text


async def test_buttons_reroll_of_an_edit_and_steps_raised_for_few_step_pictures(bot: Bot) -> None:
    message_id, _ = await a_result(bot, "/imagine a red fox --seed 9 --size 64x64 --steps 2")
    [(_, queued)] = await bot.press(message_id, "Vary (Subtle)")
    assert "runs 3 steps" in queued.text  # 2 steps x 0.35 would denoise nothing
    [(varied_id, varied)] = await bot.finish()
    [(_, again)] = await bot.press(varied_id, "Reroll")
    first, _, _ = await job_spec(bot, varied.reply.job_id)  # type: ignore[arg-type]
    second, parent, _ = await job_spec(bot, again.job_id)  # type: ignore[arg-type]
    assert parent == varied.reply.job_id and second.kind == first.kind == "img2img"
    assert second.operation == "Vary (Subtle)" and second.seed != first.seed and second.init_image == first.init_image
    [(_, rerolled)] = await bot.finish()
    assert "Vary (Subtle)" in rerolled.reply.text


async def test_tile_and_vae_options(bot: Bot, settings: Settings) -> None:
    [(_, queued)] = await bot.send("/imagine a brick wall --tile --size 64x64")
    spec, _, _ = await job_spec(bot, queued.job_id)  # type: ignore[arg-type]
    assert spec.tile and "seamless tile" in queued.text
    [(_, done)] = await bot.finish()
    assert done.reply.preview is not None and (done.reply.preview.width, done.reply.preview.height) == (128, 128)
    [(_, bad)] = await bot.send("/imagine a wall --vae nope")
    assert bad.kind == "error" and "Unknown VAE `nope`" in bad.text


async def test_a_vae_in_settings_is_used_by_new_jobs(settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bot = await make_bot(settings.model_copy(update={"vaes": {"mse": str(tmp_path / "no-such-vae")}}))
    try:
        [(_, saved)] = await bot.send("/settings --vae mse")
        assert "• VAE: mse" in saved.text
        [(_, queued)] = await bot.send("/imagine a fox --size 64x64")
        spec, _, _ = await job_spec(bot, queued.job_id)  # type: ignore[arg-type]
        assert spec.vae == "mse" and "VAE mse" in queued.text
        [(_, failed)] = await bot.finish()  # the configured folder does not exist: a clear failure
        assert failed.reply.kind == "failure" and "I could not load the VAE" in failed.reply.text
        [(_, default)] = await bot.send("/imagine a fox --size 64x64 --vae default")
        assert (await job_spec(bot, default.job_id))[0].vae is None  # type: ignore[arg-type]
    finally:
        bot.worker.executor.shutdown()
        await bot.core.db.close()


def _reach_map(box: tuple[int, int, int, int], size: int = 64) -> np.ndarray:
    """Per pixel of a size x size picture: how far it is from the box (x0, y0, x1, y1; right and
    bottom exclusive) in x or y, the way a separable feather reaches (0 inside the box)."""
    ys, xs = np.mgrid[0:size, 0:size]
    dx = np.maximum(np.maximum(box[0] - xs, xs - (box[2] - 1)), 0)
    dy = np.maximum(np.maximum(box[1] - ys, ys - (box[3] - 1)), 0)
    return np.maximum(dx, dy)


async def test_inpaint_keeps_every_pixel_beyond_the_documented_feather(bot: Bot) -> None:
    """docs/guide.md: "--blur N: the blend reaches exactly N px on each side of the mask's edge ...
    Pixels farther than N px from the mask are the picture's own, bit for bit, in every mode."
    For a box, an attached mask and --only-masked, at the default (10) and at 4 and 0: nothing
    farther than N changes, and the change does reach out near N (the width is not overstated)."""
    message_id, parent = await a_result(bot, "/imagine a red fox --seed 9 --size 64x64 --steps 3")
    async with bot.core.db.transaction() as session:
        job = await queue.get(session, parent)
        assert job is not None
        original = np.asarray(Image.open(bot.core.ctx.blobs.path(job.outputs[0].blob_key)).convert("RGB")).astype(int)
    box = (6, 0, 38, 26)  # --box 10%,0%,50%,40% of 64x64: x 6.4 -> 6, w 32, h 25.6 -> 26
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, box)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    attached = (Attachment("mask.png", buffer.getvalue(), "image/png"),)
    distance = _reach_map(box)
    cases = [
        ("--box 10%,0%,50%,40%", (), 10),
        ("--box 10%,0%,50%,40% --blur 4", (), 4),
        ("--box 10%,0%,50%,40% --blur 0", (), 0),
        ("", attached, 10),
        ("--blur 4", attached, 4),
        ("--box 10%,0%,50%,40% --only-masked", (), 10),
        ("--only-masked --blur 4", attached, 4),
    ]
    for flags, attachments, reach in cases:
        [(_, queued)] = await bot.send(f"/inpaint a red hat {flags} --seed 3", reply_to=message_id, attachments=attachments)
        assert queued.kind == "status", (flags, queued.text)
        [(_, done)] = await bot.finish()
        changed = np.abs(pixels(done.reply) - original).max(axis=2) > 0
        assert not changed[distance > reach].any(), (flags, int(distance[changed].max()))
        assert changed[distance == 0].mean() > 0.5, flags  # the box itself is repainted
        if reach:
            assert distance[changed].max() >= reach - 4, (flags, int(distance[changed].max()))  # the feather reaches out
