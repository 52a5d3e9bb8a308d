"""Moodboards, /blend, `--iw` and the repeat of a reference picture's settings, in the console on
the tiny model and its built-in tiny IP-Adapter: a reference of several pictures is drawn from the
mean of their embeddings (bare diffusers given that mean), a board is saved, grown, shown, shared,
used by `--sref NAME` and as the default of /settings; /blend draws its pictures as one subject
reference (or edits with them, on a model that takes several); bad input is refused and nothing
is queued."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from commands.pictures.metadata import read_metadata
from generation.control.tiny_ip_adapter import ENCODER_FOLDER, WEIGHT_NAME, ensure_tiny_ip_adapter
from generation.engine import Engine
from generation.jobs import run_job
from generation.models.tiny import TINY_VERSION
from generation.spec import GenerationSpec, ReferenceRef
from tests.test_references import attachment, engine, picture, pixels, spec  # noqa: F401 - fixture

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def png(color: tuple[int, int, int], size: tuple[int, int] = (80, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def second_picture() -> Image.Image:
    return Image.new("RGB", (64, 64), (250, 240, 20))


def put(engine: Engine, image: Image.Image) -> str:  # noqa: F811
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return engine.blobs.put(buffer.getvalue(), "png")


def subject(*keys: str, weight: int = 100) -> ReferenceRef:
    return ReferenceRef(kind="subject", images=keys, weight=weight, adapter="tiny")


def test_several_pictures_are_drawn_from_their_mean_embedding(engine: Engine, models_dir: Path) -> None:  # noqa: F811
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    first, second = put(engine, picture()), put(engine, second_picture())
    both = pixels(run_job(engine, spec(references=(subject(first, second),)))[0].png)
    twice = pixels(run_job(engine, spec(references=(subject(first, first),)))[0].png)
    once = pixels(run_job(engine, spec(references=(subject(first),)))[0].png)
    assert np.array_equal(twice, once)  # the mean of one picture twice is that picture
    assert np.abs(both - once).mean() > 1  # the second picture counts

    folder = ensure_tiny_ip_adapter(models_dir)
    pipe = StableDiffusionPipeline.from_pretrained(str(models_dir / TINY_VERSION), safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_ip_adapter(str(folder), subfolder="", weight_name=WEIGHT_NAME, image_encoder_folder=str(folder / ENCODER_FOLDER))
    pipe.set_ip_adapter_scale(0.6)
    embeds = [
        pipe.prepare_ip_adapter_image_embeds([[image]], None, torch.device("cpu"), 1, True)[0] for image in (picture(), second_picture())
    ]
    mean = (embeds[0] + embeds[1]) / 2  # (negative, positive) each the pictures' mean
    result = pipe(
        "a fox", num_inference_steps=4, guidance_scale=7.0, generator=torch.Generator().manual_seed(3), width=64, height=64,
        ip_adapter_image_embeds=[mean],
    )  # fmt: skip
    assert np.abs(both - np.asarray(result.images[0]).astype(int)).max() <= 2


def test_old_jobs_with_one_image_still_read() -> None:
    """A job queued before references took several pictures stored `image`: it still validates."""
    old = spec().model_dump(mode="json") | {"references": [{"kind": "style", "image": "abc.png", "weight": 100, "adapter": "tiny"}]}
    assert GenerationSpec.model_validate(old).references[0].images == ("abc.png",)


# --- the chat flow ---------------------------------------------------------------------------


@pytest.fixture
async def bot(tmp_path, models_dir):  # type: ignore[no-untyped-def]
    from tests.test_service import running_bot, tiny_settings

    async with running_bot(tiny_settings(tmp_path, models_dir, "tiny", ("tiny", "tiny-sd3", "tiny-flux2"))) as made:
        yield made


def parameters(outgoing) -> str:  # type: ignore[no-untyped-def]
    return Image.open(outgoing.reply.images[0].path).text["parameters"]  # type: ignore[no-any-return]


async def test_a_moodboard_is_saved_grown_shown_and_drawn_with(bot) -> None:  # type: ignore[no-untyped-def]
    await bot.send("/imagine a lighthouse --seed 5")
    [(picture_id, _)] = await bot.finish()
    [(_, saved)] = await bot.send("/moodboard save Autumn", attachments=(attachment(png((200, 100, 20))), attachment(png((150, 60, 10)))))
    assert "2 pictures" in saved.text and "--sref autumn" in saved.text, saved.text
    [(_, added)] = await bot.send(f"/moodboard add autumn --images {picture_id}")
    assert "3 pictures" in added.text, added.text
    [(_, shown)] = await bot.send("/moodboard show autumn")
    assert shown.kind == "sample" and Image.open(shown.images[0].path).size == (3 * 256, 256)
    [(_, listed)] = await bot.send("/moodboards")
    assert "autumn — 3 pictures · private" in listed.text, listed.text

    [(_, queued)] = await bot.send("/imagine a fox --sref autumn --sw 200 --seed 3")
    assert queued.kind == "status" and "sref 200" in queued.text, queued.text
    [(result_id, result)] = await bot.finish()
    drawn = parameters(result)
    assert 'IP-Adapter 0: "Type: style, Model: tiny, Weight: 200, Scale: 2' in drawn and "Moodboard: autumn" in drawn, drawn
    assert len(drawn.split("Image hash: ")[1].split(",")[0].split()) == 3  # the board's three pictures
    await bot.press(result_id, "Reroll")
    [(_, rerolled)] = await bot.finish()
    assert "Moodboard: autumn" in parameters(rerolled)

    # the default moodboard: every drawing that names no style, until `--sref none` or reset
    [(_, set_reply)] = await bot.send("/settings --moodboard autumn")
    assert "moodboard: autumn" in set_reply.text, set_reply.text
    [(_, queued)] = await bot.send("/imagine a cat --seed 3")
    assert "sref 100" in queued.text, queued.text
    [(_, queued)] = await bot.send("/imagine a cat --seed 3 --sref none")
    assert "sref" not in queued.text, queued.text
    await bot.finish()

    # sharing: bob can't see alice's private board; once shared he can draw with it, not delete it
    [(_, refused)] = await bot.send("/imagine a cat --sref autumn", user="bob")
    assert refused.kind != "status" and "no moodboard `autumn`" in refused.text, refused.text
    await bot.send("/moodboard share autumn")
    [(_, queued)] = await bot.send("/imagine a cat --sref autumn", user="bob")
    assert queued.kind == "status", queued.text
    [(_, refused)] = await bot.send("/moodboard delete autumn", user="bob")
    assert "You have no moodboard" in refused.text
    await bot.finish()

    # a deleted default is left out (the drawing still runs); a removed picture shrinks the board
    [(_, removed)] = await bot.send("/moodboard remove autumn 1")
    assert "it has 2 now" in removed.text, removed.text
    await bot.send("/moodboard delete autumn")
    [(_, queued)] = await bot.send("/imagine a cat")
    assert queued.kind == "status" and "sref" not in queued.text, queued.text
    await bot.finish()


async def test_bad_moodboard_input_is_refused(bot) -> None:  # type: ignore[no-untyped-def]
    await bot.send("/moodboard save one", attachments=(attachment(png((1, 2, 3))),))
    cases = {
        "/moodboard save two": "needs pictures",
        "/moodboard save one --images m1": "already have a moodboard `one`",
        "/moodboard add nothing --images m1": "no moodboard `nothing`",
        "/moodboard save bad/name --images m1": "can't be a name",
        "/moodboard show nowhere": "no moodboard `nowhere`",
        "/moodboard remove one 1": "last picture",
        "/moodboard frobnicate one": "Use `/moodboard save NAME`",
        "/settings --moodboard nowhere": "no moodboard `nowhere`",
        "/imagine a fox --sref nowhere": "no moodboard `nowhere`",
    }
    for text, expected in cases.items():
        [(_, reply)] = await bot.send(text)
        assert reply.kind != "status" and expected in reply.text, (text, reply.text)
    [(_, reply)] = await bot.send("/moodboard add one", attachments=tuple(attachment(png((i, 0, 0))) for i in range(12)))
    assert "at most 11 pictures" in reply.text, reply.text
    [(_, reply)] = await bot.send("/moodboard add one", attachments=(attachment(b"hello", "notes.txt", "text/plain"),))
    assert "notes.txt" in reply.text, reply.text
    assert await bot.finish() == []


async def test_blend_draws_the_pictures_as_one_reference_or_edits_with_them(bot) -> None:  # type: ignore[no-untyped-def]
    three = tuple(attachment(png(color)) for color in ((250, 20, 20), (20, 250, 20), (20, 20, 250)))
    [(_, queued)] = await bot.send("/blend --ar 3:2 --seed 4", attachments=three)
    assert queued.kind == "status" and "oref 150" in queued.text, queued.text
    [(result_id, result)] = await bot.finish()
    drawn = parameters(result)
    assert 'IP-Adapter 0: "Type: subject, Model: tiny, Weight: 150, Scale: 0.9' in drawn and "Operation: Blend" in drawn, drawn
    assert result.reply.images[0].width > result.reply.images[0].height
    [(_, pressed)] = await bot.press(result_id, "Reroll")
    assert pressed.kind == "status", pressed.text
    [(_, rerolled)] = await bot.finish()
    assert "Weight: 150" in parameters(rerolled)

    # on a model that edits with several pictures: an edit of picture 1 with the others beside it
    [(_, queued)] = await bot.send("/blend in autumn --model tiny-flux2", attachments=three)
    assert queued.kind == "status" and "Blend these 3 pictures" in queued.text, queued.text
    [(_, edited)] = await bot.finish()
    assert "Edit pictures:" in parameters(edited) and "combines their subjects and styles. in autumn" in parameters(edited)

    refusals = {
        "one": ((attachment(png((1, 2, 3))),), "", "you gave 1"),
        "six": (tuple(attachment(png((i, 2, 3))) for i in range(6)), "", "at most 5 pictures"),
        "weight": (three[:2], " --ow 5000", "0 to 1000"),
        "family": (three[:2], " --model tiny-sd3", "can't blend pictures"),
        "no image": ((attachment(png((1, 2, 3))), attachment(b"hello", "notes.txt", "text/plain")), "", "notes.txt"),
    }
    for name, (files, flags, expected) in refusals.items():
        [(_, reply)] = await bot.send(f"/blend{flags}", attachments=files)
        assert reply.kind != "status" and expected in reply.text, (name, reply.text)
    assert await bot.finish() == []


async def test_image_weight_is_strength_said_midjourneys_way(bot) -> None:  # type: ignore[no-untyped-def]
    [(_, queued)] = await bot.send("/imagine a fox --iw 2 --seed 1", attachments=(attachment(png((90, 120, 200))),))
    assert queued.kind == "status", queued.text
    [(_, result)] = await bot.finish()
    assert "Denoising strength: 0.5," in parameters(result)  # 1 - (1 - 0.75) * 2
    for text, expected in {
        "/imagine a fox --iw 2": "`--iw` needs an image",
        "/imagine a fox --iw 4": "0 to 3",
        "/imagine a fox --iw 2 --strength 0.3": "either `--iw` or `--strength`",
    }.items():
        [(_, reply)] = await bot.send(text)
        assert reply.kind != "status" and expected in reply.text, (text, reply.text)
    assert await bot.finish() == []


async def test_describe_repeats_a_picture_drawn_with_references(bot) -> None:  # type: ignore[no-untyped-def]
    await bot.send("/moodboard save dusk", attachments=(attachment(png((60, 20, 90))),))
    await bot.send("/imagine a heron --sref dusk --sw 300 --seed 8")
    [(_, result)] = await bot.finish()
    original = result.reply.images[0].path.read_bytes()
    [(describe_id, described)] = await bot.send("/describe", attachments=(attachment(original, "heron.png"),))
    assert "draws it again" in described.text, described.text
    await bot.press(described_id := describe_id, "Imagine this")
    [(_, again)] = await bot.finish()
    assert np.array_equal(np.asarray(Image.open(again.reply.images[0].path)), np.asarray(Image.open(io.BytesIO(original))))
    assert described_id

    # read elsewhere (another bot's database): the settings say how to repeat it
    metadata = read_metadata(original)
    assert metadata is not None
    assert any("`--sref dusk --sw 300`" in note for note in metadata.notes), metadata.notes


async def test_a_model_that_reads_reference_pictures_gets_them_beside_the_prompt(bot) -> None:  # type: ignore[no-untyped-def]
    """FLUX.2 Klein has no IP-Adapter: its own pipeline reads the pictures (an edit job at the asked size)."""
    await bot.send("/moodboard save pair", attachments=(attachment(png((200, 100, 20))), attachment(png((20, 100, 200)))))
    [(_, queued)] = await bot.send("/imagine a fox --sref pair --model tiny-flux2 --seed 3")
    assert queued.kind == "status" and "References: a fox" in queued.text and "no style/subject split" in queued.text, queued.text
    [(result_id, result)] = await bot.finish()
    drawn = parameters(result)
    assert "Operation: References" in drawn and len(drawn.split('Edit pictures: "')[1].split('"')[0].split(", ")) == 2, drawn
    assert (result.reply.images[0].width, result.reply.images[0].height) == (64, 64)  # the asked size, not the pictures'
    [(_, pressed)] = await bot.press(result_id, "Reroll")
    assert pressed.kind == "status" and "References: a fox" in pressed.text and "strength" not in pressed.text, pressed.text
    await bot.finish()

    await bot.send("/moodboard save five", attachments=tuple(attachment(png((i * 40, 0, 0))) for i in range(5)))
    for text, expected in {
        "/imagine a fox --sref pair --sw 200 --model tiny-flux2": "without a weight",
        "/imagine a fox --sref five --model tiny-flux2": "up to 4 reference pictures",
    }.items():
        [(_, reply)] = await bot.send(text)
        assert reply.kind != "status" and expected in reply.text, (text, reply.text)
    [(_, reply)] = await bot.send("/imagine a fox --sref pair --model tiny-flux2", attachments=(attachment(png((9, 9, 9))),))
    assert reply.kind != "status" and "a remix can't have them too" in reply.text, reply.text
    # the default moodboard is an IP-Adapter's style: a model that reads pictures draws from the prompt alone
    await bot.send("/settings --moodboard pair")
    [(_, queued)] = await bot.send("/imagine a fox --model tiny-flux2")
    assert queued.kind == "status" and "References" not in queued.text, queued.text
    await bot.finish()
