"""FLUX.1 and Chroma in chat, on their tiny models, as people use them: /imagine with --n 4, U1,
Vary, Reroll, a reply remix, /inpaint --box, Zoom Out, cancel; the family's defaults (Euler,
its guidance, sizes in 16s); and every option the family can't use refused before anything is
queued, with one line naming the family. /models and /help say per family what works."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from commands.frame.types import Attachment
from config import ModelEntry, Settings
from generation.models import tiny_flux2
from generation.models.tiny_dit import ensure_tiny_flux
from tests.conftest import bot_env
from tests.support.console_process import ConsoleProcess
from tests.support.labels import EDIT_LABELS
from tests.test_service import Bot, make_bot, png


@pytest.fixture
async def bot(tmp_path, models_dir):  # type: ignore[no-untyped-def]
    settings = Settings(
        _env_file=None,
        model="tiny-flux",
        models={
            "tiny-chroma": ModelEntry(source="tiny-chroma"),
            "tiny-sd3": ModelEntry(source="tiny-sd3"),
            "tiny-qwen": ModelEntry(source="tiny-qwen"),
            "tiny-zimage": ModelEntry(source="tiny-zimage"),
            "tiny-flux2": ModelEntry(source="tiny-flux2"),  # a Base model
            "klein": ModelEntry(source=str(tiny_flux2.ensure(models_dir)), variant="distilled", size=64),
            # the tiny FLUX.1 folder again, set up as schnell (a source listed twice would be one model)
            "schnell": ModelEntry(source=str(ensure_tiny_flux(models_dir)), variant="schnell", steps=2, size=64),
            "tiny": ModelEntry(source="tiny"),
        },
        vaes={"sd-vae": str(tmp_path / "sd-vae.safetensors")},  # never loaded: refused before
        data_dir=tmp_path / "data",
        models_dir=models_dir,
        default_steps=2,
        poll_seconds=0.2,
        progress_seconds=0.2,
    )
    made = await make_bot(settings)
    yield made
    made.worker.executor.shutdown()
    await made.core.db.close()


def size(reply, index: int = 0) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with Image.open(reply.images[index].path) as image:
        return image.size


@pytest.mark.parametrize(
    ("model", "settings", "parameters"),
    [
        ("tiny-flux", "Euler · guidance 3.5", ("Distilled CFG Scale: 3.5", "Model family: FLUX.1")),
        ("tiny-chroma", "Euler · CFG 4", ("CFG scale: 4,", "Model family: Chroma")),
        ("tiny-sd3", "Euler · CFG 3.5", ("CFG scale: 3.5,", "Model family: SD 3.5")),
        ("tiny-qwen", "Euler · CFG 4", ("CFG scale: 4,", "Model family: Qwen-Image")),
        ("tiny-zimage", "Euler · CFG 0", ("CFG scale: 0,", "Model family: Z-Image")),
    ],
)
async def test_a_picture_of_each_family_through_every_path(bot: Bot, model: str, settings: str, parameters: tuple[str, ...]) -> None:
    await bot.send(f"/model {model}")
    [(_, queued)] = await bot.send("/imagine a red fox in the snow --seed 3 --n 4")
    assert settings in queued.text and model in queued.text  # the family's sampler and guidance
    [(batch_id, batch)] = await bot.finish()
    assert [image.seed for image in batch.reply.images] == [3, 4, 5, 6] and size(batch.reply) == (64, 64)
    written = Image.open(batch.reply.images[0].path).text["parameters"]
    assert all(field in written for field in parameters), written

    [(single_id, single)] = await bot.press(batch_id, "U1")
    assert [action.label for action in single.actions] == EDIT_LABELS
    for label, expected in (("Vary (Subtle)", (64, 64)), ("Zoom Out 1.5x", (96, 96)), ("⬅", (96, 64))):
        [(_, status)] = await bot.press(single_id, label)
        assert status.kind == "status", (label, status.text)
        [(_, done)] = await bot.finish()
        assert size(done.reply) == expected and done.reply.kind == "result", label

    [(_, status)] = await bot.press(batch_id, "Reroll")
    [(_, rerolled)] = await bot.finish()
    assert len(rerolled.reply.images) == 4

    [(_, status)] = await bot.send("as a watercolor painting", reply_to=single_id)  # a reply remix
    assert status.kind == "status" and "strength" in status.text
    [(_, remixed)] = await bot.finish()
    assert size(remixed.reply) == (64, 64)

    [(_, status)] = await bot.send("/inpaint a red hat --box 10%,0%,50%,40%", reply_to=single_id)
    [(_, inpainted)] = await bot.finish()
    assert "Inpaint" in inpainted.reply.text and size(inpainted.reply) == (64, 64)

    [(_, status)] = await bot.send("/upscale 2 --method hires", reply_to=single_id)  # img2img in tiles of 16s
    [(_, upscaled)] = await bot.finish()
    assert size(upscaled.reply) == (128, 128) and "Upscale 2x (hires)" in upscaled.reply.text
    [(_, refused)] = await bot.send("/upscale 2 --method latent", reply_to=single_id)
    assert refused.kind == "error" and f"The latent upscale can't be used with `{model}`" in refused.text

    await bot.send("/imagine an owl --seed 9")
    [(_, cancelled)] = await bot.send("/cancel")
    assert "cancelled" in cancelled.text
    assert await bot.finish() == []


async def test_chroma_takes_a_negative_prompt_and_its_own_guidance(bot: Bot) -> None:
    [(_, queued)] = await bot.send("/imagine a castle --no blurry --model tiny-chroma --seed 2")
    assert "Euler · CFG 4" in queued.text
    [(_, done)] = await bot.finish()
    parameters = Image.open(done.reply.images[0].path).text["parameters"]
    assert "Negative prompt: blurry" in parameters and "CFG scale: 4," in parameters and "Model family: Chroma" in parameters


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("/imagine a fox --no blurry", "A negative prompt (--no) can't be used with `tiny-flux`: FLUX.1 is guidance-distilled"),
        ("/imagine a fox --clip-skip 2", "--clip-skip can't be used with `tiny-flux`: FLUX.1 doesn't use CLIP's hidden layers"),
        ("/imagine a fox --tile", "--tile can't be used with `tiny-flux`: seamless tiling works on UNet models"),
        ("/imagine a fox --vae sd-vae", "--vae can't be used with `tiny-flux`: FLUX.1 has its own 16-channel VAE"),
        ("/imagine a fox BREAK an owl --regions cols", "Regional prompts (--regions) can't be used with `tiny-flux`"),
        ("/imagine a fox --sampler dpmpp_2m_karras", "`DPM++ 2M Karras` can't be used with `tiny-flux`: FLUX.1 draws with flow matching"),
        ("/imagine a (fox:1.3) in the snow", "Prompt weights such as (word:1.3) can't be used with `tiny-flux`"),
        ("/imagine a [cat:dog:2]", "Prompt editing such as [cat:dog:10] can't be used with `tiny-flux`"),
        ("/imagine a fox BREAK an owl", "BREAK can't be used with `tiny-flux`"),
        ("/imagine a fox --size 72x72", "FLUX.1 draws sizes in multiples of 16; 72x72 is not. Try `--size 80x80`"),
        (
            "/imagine a fox --cfg 5 --model schnell",
            "--cfg can't be used with `schnell`: FLUX.1-schnell is distilled to draw without guidance",
        ),
        ("/animate a fox --frames 8", "Clips can't be drawn with `tiny-flux`: AnimateDiff's motion modules are for SD 1.x and SDXL"),
        ("/deforum a fox --frames 4", "Deforum clips can't be used with `tiny-flux`"),
    ],
)
async def test_what_flux_cannot_do_is_refused_before_queueing(bot: Bot, line: str, words: str) -> None:
    [(_, reply)] = await bot.send(line)
    assert reply.kind == "error" and words in reply.text, reply.text
    assert "queued" not in reply.text
    assert await bot.finish() == []


async def test_a_negative_prompt_without_guidance_is_refused(bot: Bot) -> None:
    [(_, refused)] = await bot.send("/imagine a fox --no blur --model tiny-zimage")
    assert refused.kind == "error" and "A negative prompt does nothing on Z-Image at --cfg 0: its guidance is off up to 0." in refused.text
    [(_, queued)] = await bot.send("/imagine a fox --no blur --model tiny-zimage --cfg 1.5")
    assert queued.kind == "status"
    await bot.finish()


async def test_flux2_klein_remixes_on_its_inpaint_pipeline_and_takes_a_negative_prompt(bot: Bot) -> None:
    await bot.send("/model tiny-flux2")
    [(_, queued)] = await bot.send("/imagine a red fox --seed 3 --n 2 --no blur --cfg 4")
    assert "Euler · CFG 4" in queued.text and queued.kind == "status", queued.text
    [(batch_id, batch)] = await bot.finish()
    assert "Negative prompt: blur" in Image.open(batch.reply.images[0].path).text["parameters"]
    [(single_id, _)] = await bot.press(batch_id, "U1")
    for label, expected in (("Vary (Subtle)", (64, 64)), ("Zoom Out 2x", (128, 128))):
        [(_, status)] = await bot.press(single_id, label)
        assert status.kind == "status", status.text
        [(_, done)] = await bot.finish()
        assert size(done.reply) == expected, label
    [(_, refused)] = await bot.send("/imagine a fox --cfg 3 --model klein")  # a distilled Klein
    assert refused.kind == "error" and "--cfg can't be used with `klein`: FLUX.2 Klein (distilled) draws without guidance" in refused.text


async def test_qwen_image_needs_two_steps(bot: Bot) -> None:
    [(_, refused)] = await bot.send("/imagine a sign that says hello --model tiny-qwen --steps 1")
    assert refused.kind == "error" and "Qwen-Image needs at least 2 steps; you asked for 1. Use `--steps 2` or more." in refused.text


async def test_control_and_training_name_the_family(bot: Bot) -> None:
    await bot.send("/imagine a red fox --seed 1")
    [(result_id, _)] = await bot.finish()
    [(_, refused)] = await bot.send("/control canny a fox", reply_to=result_id)
    assert refused.kind == "error" and "ControlNet can't be used with `tiny-flux`: ControlNet on FLUX.1 isn't supported" in refused.text
    pictures = tuple(Attachment(f"{i}.png", png((40 * i, 90, 200 - 40 * i)), "image/png") for i in range(3))
    [(_, refused)] = await bot.send("/train lora foxy", attachments=pictures)
    assert refused.kind == "error" and "Training can't use `tiny-flux`: training in chat is for SD 1.x/2.x and SDXL" in refused.text
    assert await bot.finish() == []


async def test_a_remix_on_another_family_takes_that_familys_defaults(bot: Bot) -> None:
    await bot.send("/imagine a lighthouse --model tiny --seed 4 --sampler dpmpp_2m_karras --cfg 6 --no fog")
    [(result_id, _)] = await bot.finish()
    [(single_id, _)] = await bot.press(result_id, "U1")
    [(_, status)] = await bot.send("at dawn --model tiny-flux", reply_to=single_id)
    assert status.kind == "status", status.text
    assert "Euler · guidance 3.5" in status.text and "negative prompt isn't used" in status.text
    [(_, remixed)] = await bot.finish()
    assert "Model family: FLUX.1" in Image.open(remixed.reply.images[0].path).text["parameters"]


async def test_models_and_help_say_what_each_family_serves(bot: Bot) -> None:
    [(_, listing)] = await bot.send("/models")
    assert "• tiny-flux — FLUX.1-dev, random weights, 64px native" in listing.text
    assert "• schnell — FLUX.1-schnell, 64px native, 11 MB of weights" in listing.text
    assert "not with this model: --no, embeddings, /control" in listing.text  # FLUX.1's line (LoRAs work)
    assert "• tiny-chroma — Chroma, random weights" in listing.text
    chroma_line = listing.text.split("• tiny-chroma")[1].split("•")[0]
    assert "--no" not in chroma_line and "/control" in chroma_line
    [(_, helped)] = await bot.send("/help")
    assert "• FLUX.1 (tiny-flux, schnell): samplers Euler; --cfg is its distilled guidance; sizes in multiples of 16" in helped.text
    assert (
        "• Chroma (tiny-chroma): samplers Euler; sizes in multiples of 16, 1024px native; not with it: embeddings, /control" in helped.text
    )
    assert "• SD 1.x (tiny): every sampler; sizes in multiples of 8, 512px native" in helped.text


@pytest.mark.parametrize("model", ["tiny-flux", "tiny-chroma"])
def test_each_tiny_family_in_the_console(tmp_path, models_dir, model: str) -> None:  # type: ignore[no-untyped-def]
    """As a newcomer tries it: `SDBOT_MODEL=tiny-flux run_bot.py console`, a batch, U1, Vary, Zoom Out."""
    bot = ConsoleProcess(bot_env(tmp_path / "data", models_dir, SDBOT_MODEL=model, SDBOT_DEFAULT_STEPS="2"), tmp_path / "bot.log")
    asked = bot.say(text="/imagine a red fox --seed 5 --n 4")
    batch = bot.message("result", reply_to=asked)
    assert len(batch["images"]) == 4 and "Euler" in batch["text"]
    single = bot.message("single", reply_to=bot.say(press={"message": batch["id"], "action": "U1"}))
    for label, expected in (("Vary (Subtle)", (64, 64)), ("Zoom Out 2x", (128, 128))):
        result = bot.message("result", reply_to=bot.say(press={"message": single["id"], "action": label}))
        with Image.open(result["images"][0]) as picture:
            assert picture.size == expected, label


async def test_imagine_this_of_an_sd_picture_on_flux_keeps_what_flux_can_use(bot: Bot) -> None:
    """ "Imagine this" under /describe of an A1111 picture: its prompt, size and seed as they were;
    its SD sampler, CFG, clip skip and negative prompt give way to FLUX.1's, each with a note."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(
        "parameters",
        "a red fox in the snow\nNegative prompt: blurry\nSteps: 3, Sampler: Euler a, CFG scale: 6.5, Seed: 1234, "
        "Size: 96x64, Model: v1-5-pruned-emaonly, Clip skip: 2, Version: v1.10.1",
    )
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), (90, 120, 200)).save(buffer, format="PNG", pnginfo=info)
    [(answer_id, _)] = await bot.send("/describe", attachments=(Attachment("fox.png", buffer.getvalue(), "image/png"),))
    [(_, queued)] = await bot.press(answer_id, "Imagine this")
    assert queued.kind == "status", queued.text
    for note in ("FLUX.1 draws with flow matching (Euler), so the picture's sampler isn't used", "the picture's --cfg isn't used"):
        assert note in queued.text, queued.text
    assert "clip skip isn't used" in queued.text and "negative prompt isn't used" in queued.text
    [(_, done)] = await bot.finish()
    parameters = Image.open(done.reply.images[0].path).text["parameters"]
    for field in ("Steps: 3", "Sampler: Euler,", "Distilled CFG Scale: 3.5", "Seed: 1234", "Size: 96x64"):
        assert field in parameters, field


async def test_a_flux_remix_keeps_its_guidance_and_settings_cfg_gives_way(bot: Bot) -> None:
    await bot.send("/settings --cfg 9 --sampler euler_a")  # SD-minded defaults
    [(_, queued)] = await bot.send("/imagine a fox --seed 1")
    assert "guidance 3.5" in queued.text and "your /settings --cfg isn't used" in queued.text
    assert "so your /settings sampler isn't used" in queued.text
    await bot.finish()
    await bot.send("/imagine a fox --seed 1 --cfg 2.5")
    [(result_id, _)] = await bot.finish()
    [(single_id, _)] = await bot.press(result_id, "U1")
    [(_, status)] = await bot.press(single_id, "Vary (Strong)")
    assert "guidance 2.5" in status.text and "isn't used" not in status.text, status.text  # the picture's own
    await bot.finish()


async def test_a_schnell_picture_rerolls_without_guidance_and_without_a_note(bot: Bot) -> None:
    [(_, queued)] = await bot.send("/imagine a fox --model schnell --seed 3")
    assert "2 steps" in queued.text and "no guidance" in queued.text
    [(result_id, _)] = await bot.finish()
    [(_, rerolled)] = await bot.press(result_id, "Reroll")
    assert "no guidance" in rerolled.text and "isn't used" not in rerolled.text, rerolled.text
    await bot.finish()
