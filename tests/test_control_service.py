"""/control and /edit through the command layer, with a real worker on the tiny model and SQLite:
what is queued, the maps sent after the result (and replies to them), remix, vary and reroll
keeping the controls, Edit again, /describe giving a unit back, and every bad input refused with
its reason and nothing queued."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from commands.frame.types import Attachment
from config import ModelEntry
from config.models import ControlNetEntry
from generation.parameters import parse_infotext
from tests.test_edits_service import job_spec
from tests.test_service import Bot, make_bot


def drawing(size: tuple[int, int] = (96, 64)) -> Attachment:
    image = Image.new("RGB", size, (210, 200, 180))
    ImageDraw.Draw(image).ellipse((10, 6, 50, 58), outline=(20, 20, 20), width=3)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return Attachment("drawing.png", buffer.getvalue(), "image/png")


@pytest.fixture
async def xl_bot(settings, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The bot with a second model of another architecture (the tiny SDXL): no ControlNet fits it."""
    from tests.support.tiny_xl import build_tiny_xl

    build_tiny_xl().save_pretrained(tmp_path / "tiny-xl")
    sd15 = tmp_path / "controlnet-sd15-canny"  # an SD 1.5 ControlNet's config (its weights are never read here)
    sd15.mkdir()
    (sd15 / "config.json").write_text('{"_class_name": "ControlNetModel", "cross_attention_dim": 768}')
    made = await make_bot(
        settings.model_copy(
            update={
                "models": {"xl": ModelEntry(source=str(tmp_path / "tiny-xl"), size=64)},
                "controlnets": {"sd15-canny": ControlNetEntry(type="canny", source=str(sd15))},
            }
        )
    )
    yield made
    made.worker.executor.shutdown()
    await made.core.db.close()


async def test_a_control_job_its_maps_and_what_keeps_its_controls(bot: Bot) -> None:
    [(_, queued)] = await bot.send("/control canny a fox --seed 3 --steps 4 --control depth:0.5 --pre canny", attachments=(drawing(),))
    assert queued.kind == "error" and "SDBOT_DEPTH_MODEL" in queued.text  # depth's model is not configured here
    [(_, queued)] = await bot.send("/control canny a fox --seed 3 --steps 4 --control scribble:0.5 --end 0.8", attachments=(drawing(),))
    assert queued.kind == "status" and "ControlNet canny 1 (0–0.8), scribble 0.5 (0–0.8)" in queued.text
    spec, _, _ = await job_spec(bot, queued.job_id)  # type: ignore[arg-type]
    assert spec.kind == "txt2img" and [r.model for r in spec.controls] == ["tiny-canny", "tiny-scribble"]
    assert (spec.width, spec.height) == (88, 64)  # the picture's 3:2 near the tiny model's 64x64 area (sides at least 64)
    [(result_id, done)] = await bot.finish()
    assert done.reply.kind == "result" and 'ControlNet 0: "Module: canny' in Image.open(done.reply.images[0].path).text["parameters"]
    [(map_id, first), (_, second)] = bot.followups[result_id]
    assert first.kind == "map" and "canny" in first.text and "scribble_xdog" in second.text
    assert Image.open(first.images[0].path).size == (88, 64)  # the map is at the job's size

    # A reply to a map: the map is the picture, used as it is.
    [(_, again)] = await bot.send("/control canny a cat --pre none --steps 3", reply_to=map_id)
    reused, _, _ = await job_spec(bot, again.job_id)  # type: ignore[arg-type]
    [unit] = reused.controls
    assert unit.preprocessor == "none" and bot.core.ctx.blobs.path(unit.image) == first.images[0].path  # type: ignore[arg-type]
    await bot.finish()

    # Vary, Reroll and a remix of the result are steered as it was; an upscale draws nothing to steer.
    for press in ("Vary (Subtle)", "Reroll"):
        [(_, queued)] = await bot.press(result_id, press)
        kept, _, _ = await job_spec(bot, queued.job_id)  # type: ignore[arg-type]
        assert kept.controls == spec.controls, press
    [(_, remixed)] = await bot.send("a wolf", reply_to=result_id)
    kept, _, _ = await job_spec(bot, remixed.job_id)  # type: ignore[arg-type]
    assert kept.kind == "img2img" and kept.controls == spec.controls
    [(_, upscaled)] = await bot.press(result_id, "Upscale 2x")
    assert (await job_spec(bot, upscaled.job_id))[0].controls == ()  # type: ignore[arg-type]
    results = await bot.finish()
    assert all(item.reply.kind == "result" for _, item in results)


async def test_each_map_says_in_its_png_what_made_it(bot: Bot) -> None:
    picture = drawing()
    [(_, queued)] = await bot.send(
        "/control canny a fox --seed 3 --steps 2 --control scribble:0.5 --low 50 --high 150", attachments=(picture,)
    )
    [(result_id, _)] = await bot.finish()
    [(_, canny), (_, scribble)] = bot.followups[result_id]
    spec, _, _ = await job_spec(bot, queued.job_id)  # type: ignore[arg-type]
    source = spec.controls[0].image[:10]  # type: ignore[index]  # the stored picture's key: its sha256, cut as hashes are
    read = [parse_infotext(Image.open(reply.images[0].path).text.get("parameters", "")) for reply in (canny, scribble)]
    job = queued.job_id
    assert read[0]["Control map"] == f"canny of the picture {source} for the canny ControlNet (job {job}, unit 0)", read[0]
    assert read[1]["Control map"] == f"scribble_xdog of the picture {source} for the scribble ControlNet (job {job}, unit 1)"
    assert (read[0]["Module"], read[0]["Model"], read[0]["Threshold A"], read[0]["Threshold B"]) == ("canny", "tiny-canny", "50", "150")
    assert all((r["Size"], r["Job"], r["Prompt"]) == ("88x64", str(job), "") for r in read), read  # no prompt: nothing to imagine


async def test_qr_and_describe_gives_a_unit_back(bot: Bot) -> None:
    [(_, queued)] = await bot.send("/control qr https://example.com a mountain village --steps 2 --size 128x128")
    spec, _, _ = await job_spec(bot, queued.job_id)  # type: ignore[arg-type]
    assert spec.controls[0].text == "https://example.com" and spec.prompt == "a mountain village"
    [(result_id, done)] = await bot.finish()
    [(_, qr_map)] = bot.followups[result_id]
    import cv2
    import numpy as np

    decoded, _, _ = cv2.QRCodeDetector().detectAndDecode(np.asarray(Image.open(qr_map.images[0].path).convert("RGB")))
    assert decoded == "https://example.com"

    infotext = (
        "a castle\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512, Model: sd15, "
        'ControlNet 0: "Module: depth_midas, Model: control_v11f1p_sd15_depth [cfd03158], Weight: 0.6, '
        'Guidance Start: 0.1, Guidance End: 0.9, Control Mode: My prompt is more important"'
    )
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", infotext)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, format="PNG", pnginfo=info)
    [(_, described)] = await bot.send("/describe", attachments=(Attachment("a1111.png", buffer.getvalue(), "image/png"),))
    assert ("`/control depth <prompt> --control-weight 0.6 --start 0.1 --end 0.9 --control-mode prompt`") in described.text


async def test_edit_and_edit_again(bot: Bot) -> None:
    [(_, queued)] = await bot.send("/edit make it snowy <lora:fox> --steps 3 --image-cfg 2", attachments=(drawing(),))
    assert queued.kind == "status" and "image CFG 2" in queued.text and "LoRAs don't apply to /edit" in queued.text
    spec, _, _ = await job_spec(bot, queued.job_id)  # type: ignore[arg-type]
    assert (spec.kind, spec.model, spec.image_cfg, spec.width, spec.height) == ("instruct", "tiny-pix2pix", 2.0, 96, 64)
    [(result_id, done)] = await bot.finish()
    labels = [action.label for action in done.reply.actions]
    assert "Edit again" in labels and "Reroll" in labels
    [(_, again)] = await bot.press(result_id, "Edit again")
    second, parent, _ = await job_spec(bot, again.job_id)  # type: ignore[arg-type]
    assert second.kind == "instruct" and second.prompt == spec.prompt and second.seed != spec.seed and parent == done.reply.job_id
    assert second.init_image != spec.init_image  # it edits the edited picture
    [(_, finished)] = await bot.finish()
    assert finished.reply.kind == "result"


async def test_every_bad_input_is_refused_with_its_reason_and_nothing_queued(xl_bot: Bot) -> None:
    bot = xl_bot
    before = await bot.history()
    picture = (drawing(),)
    cases = {
        "/control canny a fox": ((), "needs a picture"),
        "/control sparkles a fox": (picture, "no control type I know"),
        "/control a fox": (picture, "no control type"),
        "/control qr " + "https://example.com/" + "x" * 120 + " a village": ((), "too long for a QR code"),
        "/control canny a fox --control-weight 3": (picture, "`--control-weight 3` is out of bounds"),
        "/control canny a fox --start 0.8 --end 0.2": (picture, "must come before"),
        "/control canny a fox --control-mode loud": (picture, "--control-mode loud"),
        "/control canny a fox --pre hed": (picture, "no preprocessor for canny"),
        "/control depth a fox": (picture, "SDBOT_DEPTH_MODEL"),
        "/control openpose a dancer": (picture, "SDBOT_ANNOTATORS"),
        "/control canny a fox --low 200 --high 100": (picture, "must be below"),
        "/control depth a fox --low 20 --pre none": (picture, "Canny's thresholds"),
        "/control canny a fox --control depth:0.5 --control scribble --control tile": (picture, "at most 3 controls"),
        "/control canny a fox --control glitter:0.5": (picture, "TYPE:WEIGHT"),
        "/control canny a fox --model xl": (
            picture,
            "No canny ControlNet fits the model `xl`: `sd15-canny` is for another model (it reads 768-wide text features; `xl` gives 64)",
        ),
        "/control canny a fox --control-model sd15-canny": (picture, "doesn't fit the model `tiny`"),
        "/control tile a fox --model xl": (picture, "There is no tile ControlNet here"),
        "/control canny a fox --control-model nope": (picture, "no ControlNet named `nope`"),
        "/control canny a fox --control-model tiny-depth": (picture, "is for depth maps"),
        "/control canny a fox --regions cols": (picture, "don't work together"),
        "/control canny": (picture, "Say what to draw"),
        "/control canny a fox --tile": (picture, "--tile"),
        "/edit": (picture, "Say what to change"),
        "/edit make it snowy": ((), "changes a picture"),
        "/edit make it snowy --image-cfg 11": (picture, "`--image-cfg 11` is out of bounds"),
    }
    for text, (attachments, words) in cases.items():
        [(_, reply)] = await bot.send(text, attachments=attachments)
        assert reply.kind == "error" and words in reply.text, (text, reply.text)
    not_an_image = Attachment("drawing.png", b"GIF89a not really", "image/png")
    [(_, reply)] = await bot.send("/control canny a fox", attachments=(not_an_image,))
    assert reply.kind == "error" and "image" in reply.text.lower()
    huge = drawing((4096, 4096))
    bot.core.ctx.settings.max_upload_pixels = 1_000_000  # type: ignore[misc]
    [(_, reply)] = await bot.send("/control canny a fox", attachments=(huge,))
    assert reply.kind == "error" and "pixels" in reply.text, reply.text
    assert await bot.history() == before
