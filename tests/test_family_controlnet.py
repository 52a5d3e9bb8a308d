"""ControlNet on SD 3.5, Qwen-Image and Z-Image, on their tiny models and the built-in tiny
ControlNets of each family (random weights, the real architectures, loaded from the folders they
are saved in): a control job through the engine equals the family's own diffusers ControlNet
pipeline built by hand for the same seed; the map steers the picture; SD 3.5 takes several
ControlNets and draws each picture of a batch as its own seed does; in chat, a /control job on each
family is queued and completed; and what a family's ControlNet can't do is refused before queueing,
naming the family (and both families, for a ControlNet made for another)."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageOps

from commands.frame.types import Attachment
from config import ModelEntry, ModelRegistry
from config.models import ControlNetEntry
from generation.control.tiny import ensure_tiny_controlnet
from generation.engine import Engine
from generation.jobs import render_job, run_job
from generation.models import tiny_qwen, tiny_sd3, tiny_zimage
from generation.models.loader import ModelCache
from generation.spec import ControlRef, GenerationSpec
from storage.blobs import LocalBlobStore
from tests.test_service import Bot, running_bot, tiny_settings

# model -> its folder, its ControlNet pipeline and ControlNet class (written out here, not read from
# the family layer: the test checks what the layer says), and how its --cfg 3.5 reaches diffusers.
FAMILIES = {
    "tiny-sd3": (tiny_sd3.ensure, "StableDiffusion3ControlNetPipeline", "SD3ControlNetModel", {"guidance_scale": 3.5}),
    "tiny-qwen": (
        tiny_qwen.ensure,
        "QwenImageControlNetPipeline",
        "QwenImageControlNetModel",
        {"true_cfg_scale": 3.5, "negative_prompt": " "},
    ),
    "tiny-zimage": (tiny_zimage.ensure, "ZImageControlNetPipeline", "ZImageControlNetModel", {"guidance_scale": 3.5}),
}
# How much two maps (a picture's left half white, or its right half) change the picture, on average
# in 255ths: SD 3.5's and Qwen-Image's tiny VAEs sample the map's latents with a spread far larger
# than the maps' difference (generation.control.tiny_families). Measured 10, 3.7 and 11.6.
MAP_EFFECT = {"tiny-sd3": 5, "tiny-qwen": 2, "tiny-zimage": 5}


@pytest.fixture(scope="module")
def engine(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    registry = ModelRegistry([ModelEntry(source=model) for model in FAMILIES])
    cache = ModelCache(registry, models_dir, torch.device("cpu"), torch.float32, max_loaded=3)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("family-control-blobs")))


def photo() -> Image.Image:
    """Shapes with edges worth finding, 64x48."""
    image = Image.new("RGB", (64, 48), (200, 180, 150))
    draw = ImageDraw.Draw(image)
    draw.ellipse((6, 6, 34, 42), fill=(40, 60, 90))
    draw.rectangle((38, 10, 60, 34), fill=(230, 230, 240), outline=(10, 10, 10), width=2)
    return image


def half(side: str) -> Image.Image:
    image = Image.new("RGB", (64, 48), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 32, 48) if side == "left" else (32, 0, 64, 48))
    return image


def put(engine: Engine, image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return engine.blobs.put(buffer.getvalue(), "png")


def spec(model: str, **changes) -> GenerationSpec:  # type: ignore[no-untyped-def]
    base = dict(
        kind="txt2img", prompt="a red fox in the snow", model=model, family=model.removeprefix("tiny-"), width=64, height=48,
        steps=4, cfg=3.5, sampler="Euler", seed=11, n=1,
    )  # fmt: skip
    base.update(changes)
    return GenerationSpec(**base)


def unit(key: str, type_: str = "canny", preprocessor: str = "canny", **changes) -> ControlRef:  # type: ignore[no-untyped-def]
    return ControlRef(type=type_, model=f"tiny-{type_}", preprocessor=preprocessor, image=key, **changes)  # type: ignore[arg-type]


def pixels(image: bytes | Image.Image) -> np.ndarray:
    picture = Image.open(io.BytesIO(image)) if isinstance(image, bytes) else image
    return np.asarray(picture.convert("RGB")).astype(int)


def canny(image: Image.Image) -> Image.Image:
    return Image.fromarray(cv2.Canny(np.asarray(image), 100, 200)).convert("RGB")


def tiny_nets(models_dir: Path, model: str, types: list[str]) -> list[Path]:
    return [ensure_tiny_controlnet(models_dir, t, model.removeprefix("tiny-")) for t in types]


def bare(models_dir: Path, model: str, nets_from: list[Path], seed: int, **call) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    """What bare diffusers draws: the family's ControlNet pipeline, loaded from the tiny model's folder
    with the ControlNets loaded from theirs, as diffusers' docs show it. SD 3.5's samples the map's
    latents from torch's global RNG: seeded with the seed, as a script would."""
    import diffusers

    folder, pipeline_class, net_class, guidance = FAMILIES[model]
    nets = [getattr(diffusers, net_class).from_pretrained(net) for net in nets_from]
    pipe = getattr(diffusers, pipeline_class).from_pretrained(folder(models_dir), controlnet=nets[0] if len(nets) == 1 else nets)
    pipe.set_progress_bar_config(disable=True)
    torch.manual_seed(seed)
    generator = torch.Generator("cpu").manual_seed(seed)
    drawn = pipe("a red fox in the snow", width=64, height=48, num_inference_steps=4, generator=generator, **guidance, **call)
    return [pixels(image) for image in drawn.images]


@pytest.mark.parametrize("model", list(FAMILIES))
def test_a_control_job_equals_the_familys_own_controlnet_pipeline(engine: Engine, models_dir: Path, model: str) -> None:
    key = put(engine, photo())
    rendered = render_job(engine, spec(model, controls=(unit(key),)))
    [ours] = rendered.images
    expected_map = canny(photo())
    assert np.array_equal(pixels(rendered.maps[0]), pixels(expected_map))  # the map shown is canny's
    scale = {"controlnet_conditioning_scale": 1.0}  # Z-Image's pipeline defaults to 0.75; a control's weight is 1
    [theirs] = bare(models_dir, model, tiny_nets(models_dir, model, ["canny"]), 11, control_image=expected_map, **scale)
    assert np.abs(pixels(ours.png) - theirs).max() <= 2
    assert 'ControlNet 0: "Module: canny, Model: tiny-canny, Weight: 1' in ours.parameters
    [plain] = run_job(engine, spec(model))
    assert np.abs(pixels(ours.png) - pixels(plain.png)).mean() > 10  # the ControlNet steers (measured 23–50)


@pytest.mark.parametrize("model", list(FAMILIES))
def test_the_map_changes_the_picture(engine: Engine, model: str) -> None:
    drawn = {
        side: run_job(engine, spec(model, controls=(unit(put(engine, half(side)), preprocessor="none"),)))[0] for side in ("left", "right")
    }
    difference = np.abs(pixels(drawn["left"].png) - pixels(drawn["right"].png)).mean()
    assert difference > MAP_EFFECT[model], difference


def test_sd3_takes_two_controlnets_and_a_batch_draws_each_seeds_picture(engine: Engine, models_dir: Path) -> None:
    """SD 3.5's multi-ControlNet equals bare diffusers' with both; and its pipeline samples the maps'
    latents from the global RNG, so the engine draws a batch's pictures one by one, each from its seed."""
    key = put(engine, photo())
    units = (unit(key, weight=0.8), unit(key, "depth", "none", weight=0.5, end=0.75))
    [ours] = run_job(engine, spec("tiny-sd3", controls=units))
    [theirs] = bare(
        models_dir, "tiny-sd3", tiny_nets(models_dir, "tiny-sd3", ["canny", "depth"]), 11, control_image=[canny(photo()), photo()],
        controlnet_conditioning_scale=[0.8, 0.5], control_guidance_end=[1.0, 0.75],
    )  # fmt: skip
    assert np.abs(pixels(ours.png) - theirs).max() <= 2
    batch = run_job(engine, spec("tiny-sd3", controls=units[:1], n=2, seed=20))
    [second] = run_job(engine, spec("tiny-sd3", controls=units[:1], seed=21))
    assert batch[1].seed == 21 and np.abs(pixels(batch[1].png) - pixels(second.png)).max() <= 2


def test_a_configured_z_image_union_2_controlnet_equals_bare_diffusers(models_dir: Path, tmp_path: Path) -> None:
    """A ControlNet from the config (SDBOT_CONTROLNETS) in Z-Image's 2.x union form (33 channels: the
    map's latents, a mask and the masked picture's, which the txt2img pipeline fills with zeros),
    loaded as the class its config.json names."""
    from generation.control import tiny_families
    from generation.control.nets import ControlNets

    torch.manual_seed(5)
    tiny_families.build_zimage(tiny_families.tiny_transformer("zimage", models_dir), control_in_dim=33).save_pretrained(tmp_path / "union")
    cpu = torch.device("cpu")
    nets = ControlNets({"union": ControlNetEntry(type="canny", source=str(tmp_path / "union"))}, models_dir, cpu, torch.float32)
    cache = ModelCache(ModelRegistry([ModelEntry(source="tiny-zimage")]), models_dir, cpu, torch.float32)
    engine = Engine(cache, LocalBlobStore(tmp_path / "blobs"), controlnets=nets)
    control = ControlRef(type="canny", model="union", preprocessor="canny", image=put(engine, photo()))
    [ours] = run_job(engine, spec("tiny-zimage", controls=(control,)))
    [theirs] = bare(models_dir, "tiny-zimage", [tmp_path / "union"], 11, control_image=canny(photo()), controlnet_conditioning_scale=1.0)
    assert np.abs(pixels(ours.png) - theirs).max() <= 2
    assert type(nets.get("union", "zimage")).__name__ == "ZImageControlNetModel" and nets.loads == 1


# --- in chat ------------------------------------------------------------------------------------------


@pytest.fixture
async def bot(tmp_path: Path, models_dir: Path):  # type: ignore[no-untyped-def]
    sd15 = tmp_path / "controlnet-sd15-canny"  # an SD 1.5 ControlNet's config (its weights are never read here)
    sd15.mkdir()
    (sd15 / "config.json").write_text('{"_class_name": "ControlNetModel", "cross_attention_dim": 768}')
    controlnets = {"sd15-canny": ControlNetEntry(type="canny", source=str(sd15))}
    settings = tiny_settings(tmp_path, models_dir, "tiny-sd3", ("tiny-qwen", "tiny-zimage", "tiny-flux"), controlnets=controlnets)
    async with running_bot(settings) as made:
        yield made


def drawing() -> Attachment:
    buffer = io.BytesIO()
    ImageOps.pad(photo(), (96, 64), color=(200, 180, 150)).save(buffer, format="PNG")
    return Attachment("drawing.png", buffer.getvalue(), "image/png")


@pytest.mark.parametrize(
    ("model", "label", "refused"),
    [
        ("tiny-sd3", "SD 3.5", "diffusers has no SD 3.5 ControlNet pipeline that starts from a picture"),
        ("tiny-qwen", "Qwen-Image", "diffusers has no Qwen-Image ControlNet pipeline that starts from a picture"),
        ("tiny-zimage", "Z-Image", "diffusers has no Z-Image ControlNet pipeline that starts from a picture"),
    ],
)
async def test_a_control_job_on_each_family_in_chat(bot: Bot, model: str, label: str, refused: str) -> None:
    [(_, queued)] = await bot.send(f"/control canny a red fox --model {model} --seed 3", attachments=(drawing(),))
    assert queued.kind == "status" and "ControlNet canny 1" in queued.text, queued.text
    [(result_id, done)] = await bot.finish()
    assert done.reply.kind == "result"
    with Image.open(done.reply.images[0].path) as picture:
        parameters = picture.text["parameters"]
        assert picture.size == (80, 64)  # the picture's 3:2 near the model's 64x64 area, in the family's multiples of 16
    assert 'ControlNet 0: "Module: canny, Model: tiny-canny' in parameters and f"Model family: {label}" in parameters
    [(_, canny_map)] = bot.followups[result_id]
    assert canny_map.kind == "map"

    [(_, rerolled)] = await bot.press(result_id, "Reroll")  # drawn from the prompt again: steered as it was
    assert rerolled.kind == "status", rerolled.text
    [(single_id, _)] = await bot.press(result_id, "U1")
    [(_, vary)] = await bot.press(single_id, "Vary (Subtle)")  # img2img: the family has no ControlNet pipeline for it
    assert (
        vary.kind == "error"
        and f"A remix, Vary or hires upscale steered by ControlNet can't be used with `{model}`: {refused}" in vary.text
    )
    [(_, zoom)] = await bot.press(single_id, "Zoom Out 1.5x")
    assert (
        zoom.kind == "error"
        and f"Inpainting or outpainting (/inpaint, Zoom Out, Pan) steered by ControlNet can't be used with `{model}`" in zoom.text
    )
    [(_, rerun)] = await bot.finish()
    assert rerun.reply.kind == "result" and 'ControlNet 0: "Module: canny' in Image.open(rerun.reply.images[0].path).text["parameters"]


async def test_what_a_familys_controlnet_cant_do_is_refused_before_queueing(bot: Bot) -> None:
    cases = {
        "/control canny a fox --control-model sd15-canny": (
            "The ControlNet `sd15-canny` doesn't fit the model `tiny-sd3`: it is for SD 1.x; `tiny-sd3` is SD 3.5"
        ),
        "/control canny a fox --model tiny-flux": (
            "ControlNet can't be used with `tiny-flux`: ControlNet on FLUX.1 isn't supported here yet. Pick a model of SD 1.x, SD 2.x, "
            "SDXL, SD 3.5, Qwen-Image or Z-Image with `--model`."
        ),
        "/control canny a fox --model tiny-qwen --control scribble:0.5": (
            "Several controls can't be used with `tiny-qwen`: Qwen-Image's ControlNet pipeline runs several maps only through one "
            "union ControlNet"
        ),
        "/control canny a fox --model tiny-zimage --control scribble": "Several controls can't be used with `tiny-zimage`",
        "/control canny a fox --model tiny-zimage --end 0.5": (
            "`--start` and `--end` can't be used with `tiny-zimage`: diffusers' Z-Image ControlNet pipeline steers every step"
        ),
        "/control canny a fox --control-mode prompt": (
            "`--control-mode prompt` can't be used with `tiny-sd3`: A1111's control modes weigh a UNet ControlNet's residuals"
        ),
    }
    for line, words in cases.items():
        [(_, reply)] = await bot.send(line, attachments=(drawing(),))
        assert reply.kind == "error" and words in reply.text, (line, reply.text)
    assert await bot.finish() == []
    # SD 3.5 takes several ControlNets, each of its own type
    [(_, queued)] = await bot.send("/control canny a fox --control scribble:0.5 --end 0.8 --seed 1", attachments=(drawing(),))
    assert queued.kind == "status" and "ControlNet canny 1 (0–0.8), scribble 0.5 (0–0.8)" in queued.text, queued.text
    [(result_id, done)] = await bot.finish()
    assert "ControlNet 1: " in Image.open(done.reply.images[0].path).text["parameters"]
    # a remix of it on a family without ControlNets: refused naming that family, not "no canny ControlNet here"
    [(_, remix)] = await bot.send("at dawn --model tiny-flux", reply_to=result_id)
    assert remix.kind == "error" and "ControlNet can't be used with `tiny-flux`: ControlNet on FLUX.1 isn't supported" in remix.text
    assert await bot.finish() == []
