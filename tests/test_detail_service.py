"""`--detail`, /detail and the Detail button through the command layer, with a real worker on the
tiny model and SQLite (commands/pictures/detail.py, commands/jobs/options.py).

- test_bad_detail_input_is_answered_before_queueing: every new option's bad values (an unknown
  target, hand without a detector, strengths out of bounds, a detail prompt without targets,
  empty values) get their reply, naming the option, and nothing is queued.
- test_detail_is_queued_recorded_and_said_when_nothing_is_found: `/imagine --detail face` keeps
  its targets, prompt and strength in the job; the result (noise: no face) says so plainly;
  Reroll and Vary draw it again with the same pass.
- test_detail_button_details_the_picture_with_its_own_settings: the Detail button under a
  picture queues a `detail` job of it (parent, model, prompt, the picture's own detail prompt and
  strength), which, on noise, fails with the plain sentence.
- test_detail_command_on_a_drawn_face: `/detail face <prompt>` with a photo of a drawn face
  attached: the delivered picture changed inside the face's box and nowhere beyond its feather.
- test_a_family_that_cannot_inpaint_refuses_detail: the refusal names the model and the reason.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from commands.frame.types import Attachment
from commands.jobs import model_fit
from config import Settings
from generation.imaging.faces import FaceDetector
from generation.models.families import family
from tests.support.face_models import face_image
from tests.test_edits_service import a_result, job_spec, jobs_count
from tests.test_service import Bot


async def test_bad_detail_input_is_answered_before_queueing(bot: Bot) -> None:
    message_id, _ = await a_result(bot)
    before = await jobs_count(bot)
    refusals = {
        "/imagine a fox --detail elbow": "takes face, hand or person",
        "/imagine a fox --detail face,elbow": "you wrote `elbow`",
        "/imagine a fox --detail hand": "SDBOT_HAND_DETECTOR",
        "/imagine a fox --detail": "`--detail` needs a value",
        "/imagine a fox --detail face --detail-strength 0": "--detail-strength",
        "/imagine a fox --detail face --detail-strength 1.5": "--detail-strength",
        "/imagine a fox --detail face --detail-strength lots": "--detail-strength",
        "/imagine a fox --detail face --detail-prompt": "`--detail-prompt` needs a value",
        "/imagine a fox --detail-prompt a smile": "tune `--detail`",
        "/imagine a fox --detail-strength 0.5": "tune `--detail`",
        f"/imagine a fox --detail face --detail-prompt {'x' * 1501}": "detail prompt is 1501 characters",
        "/detail hand": "SDBOT_HAND_DETECTOR",
        "/detail --detail-strength 2": "--detail-strength",
        "/detail a smile --detail-prompt a grin": "once",
    }
    for command, words in refusals.items():
        [(_, reply)] = await bot.send(command, reply_to=message_id if command.startswith("/detail") else None)
        assert reply.kind == "error" and words in reply.text, (command, reply.text)
    [(_, reply)] = await bot.send("/detail face")  # no picture
    assert reply.kind == "error" and "Detail works on a picture" in reply.text
    assert await jobs_count(bot) == before


async def test_detail_is_queued_recorded_and_said_when_nothing_is_found(bot: Bot) -> None:
    [(_, queued)] = await bot.send("/imagine a fox --size 64x64 --detail faces,people --detail-prompt a smiling face --detail-strength 0.5")
    spec, _, _ = await job_spec(bot, queued.job_id)  # type: ignore[arg-type]
    assert spec.detail is not None and spec.detail.targets == ("face", "person")
    assert (spec.detail.prompt, spec.detail.strength) == ("a smiling face", 0.5) and spec.batch_key() == ""
    [(result_id, done)] = await bot.finish()
    assert "I found no face or person in this picture, so there was nothing to detail. It is as drawn." in done.reply.text
    with Image.open(done.reply.images[0].path) as image:
        assert "ADetailer model 2nd: person" in image.text["parameters"]
    for button in ("Reroll", "Vary (Subtle)"):  # drawn again: with the same pass
        [(_, again)] = await bot.press(result_id, button)
        redrawn, _, _ = await job_spec(bot, again.job_id)  # type: ignore[arg-type]
        assert redrawn.detail == spec.detail, button
    [(_, off)] = await bot.send("/imagine a fox --size 64x64 --detail off")
    assert (await job_spec(bot, off.job_id))[0].detail is None  # type: ignore[arg-type]


async def test_detail_button_details_the_picture_with_its_own_settings(bot: Bot) -> None:
    message_id, parent = await a_result(bot, "/imagine a red fox --seed 9 --size 64x64 --detail face --detail-prompt sharp eyes")
    [(_, queued)] = await bot.press(message_id, "Detail", user="bob")
    assert queued.kind == "status", queued.text
    spec, parent_id, index = await job_spec(bot, queued.job_id)  # type: ignore[arg-type]
    assert (spec.kind, parent_id, index, spec.prompt, spec.model) == ("detail", parent, 0, "a red fox", "tiny")
    assert spec.detail is not None and (spec.detail.targets, spec.detail.prompt, spec.detail.strength) == (("face",), "sharp eyes", 0.4)
    assert spec.operation == "Detail" and spec.init_image is not None and (spec.width, spec.height) == (64, 64)
    [(_, failed)] = await bot.finish()
    assert "I found no face in this picture, so there was nothing to detail" in failed.reply.text


async def test_detail_command_on_a_drawn_face(bot: Bot) -> None:
    picture = face_image((128, 128), [(40, 44, 36)])
    [box] = FaceDetector().detect(picture)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    photo = Attachment("me.png", buffer.getvalue(), "image/png")
    [(_, queued)] = await bot.send("/detail face a smiling face --detail-strength 0.6 --steps 4", attachments=(photo,))
    spec, _, _ = await job_spec(bot, queued.job_id)  # type: ignore[arg-type]
    assert spec.kind == "detail" and spec.detail is not None and spec.detail.prompt == "a smiling face"
    [(_, done)] = await bot.finish()
    with Image.open(done.reply.images[0].path) as image:
        after = np.asarray(image.convert("RGB")).astype(int)
        assert "ADetailer prompt: a smiling face" in image.text["parameters"]
    before = np.asarray(picture.convert("RGB")).astype(int)
    reach = 4 + 10  # dilate and feather
    near = np.zeros((128, 128), bool)
    near[max(0, box.y - reach) : box.y + box.height + reach, max(0, box.x - reach) : box.x + box.width + reach] = True
    assert np.array_equal(after[~near], before[~near])
    face = after[box.y : box.y + box.height, box.x : box.x + box.width] - before[box.y : box.y + box.height, box.x : box.x + box.width]
    assert np.abs(face).mean() > 10


async def test_a_family_that_cannot_inpaint_refuses_detail(bot: Bot, monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    sd1 = family("sd1")
    no_inpaint = dataclasses.replace(sd1, unsupported={**sd1.unsupported, "inpaint": "it has no inpaint pipeline"})
    monkeypatch.setattr(model_fit, "family", lambda name: no_inpaint)
    before = await jobs_count(bot)
    [(_, reply)] = await bot.send("/imagine a fox --detail face")
    assert (
        reply.kind == "error" and "`--detail` (and the Detail button) can't be used with `tiny`: it has no inpaint pipeline" in reply.text
    )
    assert await jobs_count(bot) == before
