"""Image references on FLUX.1 (generation.control.flux_references), on tiny-flux and its built-in
tiny IP-Adapter (XLabs' layout) and Redux (random weights, the real classes, loaded from the folders
they are saved in): pixels equal bare diffusers' (`load_ip_adapter`; `FluxPriorReduxPipeline` then
`FluxPipeline`); the weight matters; nothing is left on the pipeline for the next job; the chat
queues and draws `--oref` on tiny-flux; what a family or a method can't draw is refused before
queueing."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from commands.frame.errors import UserError
from commands.jobs.prompt_features import _adapter_for
from config import ModelEntry, ModelRegistry
from config.models import IPAdapterEntry
from generation.control.flux_references import TINY_IP_ADAPTER, TINY_REDUX
from generation.control.tiny_flux_references import ENCODER_FOLDER, WEIGHT_NAME, ensure_tiny_flux_ip_adapter, ensure_tiny_flux_redux
from generation.engine import Engine
from generation.jobs import run_job
from generation.models.loader import ModelCache
from generation.models.tiny_dit import ensure_tiny_flux
from generation.parameters import parse_infotext
from generation.spec import GenerationSpec, ReferenceRef
from storage.blobs import LocalBlobStore

PROMPT, SEED, STEPS, CFG = "a red fox in the snow", 3, 2, 3.5
METHODS = {"flux-ip-adapter": TINY_IP_ADAPTER, "redux": TINY_REDUX}


@pytest.fixture(scope="module")
def engine(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    cache = ModelCache(ModelRegistry([ModelEntry(source="tiny-flux")]), models_dir, torch.device("cpu"), torch.float32)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("flux-reference-blobs")))


def picture(fill: tuple[int, int, int] = (30, 140, 200)) -> Image.Image:
    image = Image.new("RGB", (96, 64), fill)
    draw = ImageDraw.Draw(image)
    draw.ellipse((10, 8, 50, 56), fill=(240, 200, 40))
    draw.rectangle((58, 12, 88, 40), fill=(200, 30, 60))
    return image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def keys(engine: Engine) -> tuple[str, str]:
    return engine.blobs.put(png_bytes(picture()), "png"), engine.blobs.put(png_bytes(picture((220, 90, 20))), "png")


def spec(**changes) -> GenerationSpec:  # type: ignore[no-untyped-def]
    base = dict(kind="txt2img", prompt=PROMPT, model="tiny-flux", family="flux", width=64, height=64, steps=STEPS, cfg=CFG, seed=SEED)
    base.update(changes)
    return GenerationSpec(sampler="Euler", **base)


def ref(images: tuple[str, ...], method: str = "flux-ip-adapter", kind: str = "subject", weight: int = 100) -> ReferenceRef:
    return ReferenceRef(kind=kind, images=images, weight=weight, adapter=METHODS[method], method=method)  # type: ignore[arg-type]


def drawn(engine: Engine, job: GenerationSpec) -> list[np.ndarray]:
    return [np.asarray(Image.open(io.BytesIO(image.png)).convert("RGB")).astype(int) for image in run_job(engine, job)]


def as_array(images: list[Image.Image]) -> list[np.ndarray]:
    return [np.asarray(image).astype(int) for image in images]


@pytest.fixture(scope="module")
def bare(models_dir: Path):  # type: ignore[no-untyped-def]
    """Bare diffusers' FLUX.1 pipeline on the same saved folder."""
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(str(ensure_tiny_flux(models_dir)))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def bare_call(pipe, **arguments) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    n = arguments.pop("n", 1)
    generators = [torch.Generator().manual_seed(SEED + i) for i in range(n)]
    common = dict(num_inference_steps=STEPS, guidance_scale=CFG, width=64, height=64, generator=generators, num_images_per_prompt=n)
    return as_array(pipe(**common, **arguments).images)


# --- IP-Adapter -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bare_ip(models_dir: Path):  # type: ignore[no-untyped-def]
    """Bare diffusers with the tiny IP-Adapter loaded twice from its folder, as its FLUX docs show it."""
    from diffusers import FluxPipeline

    folder = ensure_tiny_flux_ip_adapter(models_dir)
    pipe = FluxPipeline.from_pretrained(str(ensure_tiny_flux(models_dir)))
    pipe.set_progress_bar_config(disable=True)
    pipe.load_ip_adapter(
        str(folder),
        weight_name=[WEIGHT_NAME] * 2,
        image_encoder_pretrained_model_name_or_path=str(folder / ENCODER_FOLDER),
        image_encoder_dtype=torch.float32,
    )
    return pipe


def test_ip_adapter_style_and_subject_with_a_batch_equal_bare_diffusers(engine: Engine, keys: tuple[str, str], bare_ip) -> None:  # type: ignore[no-untyped-def]
    style, subject = ref(keys[:1], kind="style", weight=200), ref(keys[1:], weight=50)
    ours = drawn(engine, spec(references=(style, subject), n=2))
    bare_ip.set_ip_adapter_scale([0.35 * 2, 0.7 * 0.5])  # REFERENCE_SCALES, one per adapter
    expected = bare_call(bare_ip, prompt=PROMPT, ip_adapter_image=[picture(), picture((220, 90, 20))], n=2)
    for mine, theirs in zip(ours, expected, strict=True):
        assert np.abs(mine - theirs).max() <= 2


def test_ip_adapter_board_is_the_mean_embedding(engine: Engine, keys: tuple[str, str], bare_ip) -> None:  # type: ignore[no-untyped-def]
    """A board's pictures are one image prompt: the mean of their CLIP embeddings (as on SD)."""
    ours = drawn(engine, spec(references=(ref(keys),)))[0]
    with torch.no_grad():
        mean = bare_ip.encode_image([picture(), picture((220, 90, 20))], torch.device("cpu"), 1).mean(dim=0)[None, None]
    bare_ip.set_ip_adapter_scale([0.7, 0.0])  # the second adapter idle
    expected = bare_call(bare_ip, prompt=PROMPT, ip_adapter_image_embeds=[mean, mean])[0]
    assert np.abs(ours - expected).max() <= 2
    one = drawn(engine, spec(references=(ref(keys[:1]),)))[0]
    assert np.abs(ours - one).mean() > 1  # the second picture counts


# --- Redux ------------------------------------------------------------------------------------


def bare_redux(models_dir: Path, pipe, pictures: list[Image.Image]) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    """Bare diffusers' Redux as its docs show it (with the text encoders, so the prompt counts): the
    prior's output straight into FLUX.1; several pictures by the prior's weighted sum."""
    from diffusers import FluxPriorReduxPipeline

    encoders = {name: getattr(pipe, name) for name in ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")}
    prior = FluxPriorReduxPipeline.from_pretrained(str(ensure_tiny_flux_redux(models_dir)), **encoders)
    count = len(pictures)
    weights = {"prompt_embeds_scale": [1 / count] * count, "pooled_prompt_embeds_scale": [1 / count] * count} if count > 1 else {}
    output = prior(pictures if count > 1 else pictures[0], prompt=[PROMPT] * count if count > 1 else PROMPT, **weights)
    return bare_call(pipe, **output)


def test_redux_equals_bare_diffusers(engine: Engine, keys: tuple[str, str], bare, models_dir: Path) -> None:  # type: ignore[no-untyped-def]
    ours = drawn(engine, spec(references=(ref(keys[:1], "redux"),)))[0]
    expected = bare_redux(models_dir, bare, [picture()])[0]
    assert np.abs(ours - expected).max() <= 2


def test_redux_board_and_batch(engine: Engine, keys: tuple[str, str], bare, models_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """Two pictures: the prompt's tokens, then the mean of the pictures' (the prior's weighted sum);
    image i of a batch is the single image drawn with seed + i."""
    batch = drawn(engine, spec(references=(ref(keys, "redux"),), n=2))
    expected = bare_redux(models_dir, bare, [picture(), picture((220, 90, 20))])[0]
    assert np.abs(batch[0] - expected).max() <= 2
    second = drawn(engine, spec(references=(ref(keys, "redux"),), seed=SEED + 1))[0]
    assert np.abs(batch[1] - second).max() <= 2


# --- the weight, what is left behind, the parameters --------------------------------------------


@pytest.mark.parametrize("method", list(METHODS))
def test_weight_changes_the_picture_and_nothing_leaks(engine: Engine, keys: tuple[str, str], method: str) -> None:
    from diffusers.models.transformers.transformer_flux import FluxAttnProcessor

    [plain] = drawn(engine, spec())
    [at_zero] = drawn(engine, spec(references=(ref(keys[:1], method, weight=0),)))
    [at_100] = drawn(engine, spec(references=(ref(keys[:1], method, weight=100),)))
    [after] = drawn(engine, spec())
    assert np.abs(at_zero - plain).max() <= 2  # weight 0: the prompt alone
    assert np.abs(at_100 - plain).mean() > 4 * max(1.0, np.abs(at_zero - plain).mean())
    assert np.array_equal(after, plain)  # the next job is unaffected
    pipe = engine.models.get("tiny-flux").pipeline("txt2img")
    assert not hasattr(pipe.transformer, "encoder_hid_proj") and pipe.image_encoder is None and pipe.feature_extractor is None
    assert {type(p) for p in pipe.transformer.attn_processors.values()} == {FluxAttnProcessor}


def test_parameters_name_the_model_and_scale(engine: Engine, keys: tuple[str, str]) -> None:
    style = ref(keys[:1], kind="style", weight=250)
    [image] = run_job(engine, spec(references=(style,)))
    fields = parse_infotext(Image.open(io.BytesIO(image.png)).text["parameters"])
    hash_ = keys[0].partition(".")[0][:10]
    assert fields["IP-Adapter 0"] == f"Type: style, Model: {TINY_IP_ADAPTER}, Weight: 250, Scale: 0.875, Image hash: {hash_}"
    [image] = run_job(engine, spec(references=(ref(keys[:1], "redux", weight=50),)))
    fields = parse_infotext(Image.open(io.BytesIO(image.png)).text["parameters"])
    assert fields["IP-Adapter 0"] == f"Type: subject, Model: {TINY_REDUX}, Weight: 50, Scale: 0.5, Image hash: {hash_}"


# --- the choice of method, before queueing -------------------------------------------------------


def test_the_method_fits_the_kinds(tmp_path: Path) -> None:
    """The first entry made for FLUX.1 that draws the job's kinds: Redux draws a subject only."""
    from config import Settings

    redux = IPAdapterEntry(source=str(tmp_path), architecture="flux", kind="redux")
    ip = IPAdapterEntry(source=str(tmp_path), weight_name="ip_adapter.safetensors", image_encoder=str(tmp_path), architecture="flux")
    sd = IPAdapterEntry(source=str(tmp_path), image_encoder=str(tmp_path))
    flux = ModelEntry(source=str(tmp_path / "flux1-dev"), architecture="flux", name="flux")
    job = spec(model="flux")

    def context(adapters: dict[str, IPAdapterEntry]) -> SimpleNamespace:
        return SimpleNamespace(registry=ModelRegistry([flux]), settings=Settings(_env_file=None, ip_adapters=adapters))

    both = context({"sd15": sd, "redux": redux, "xlabs": ip})
    assert _adapter_for(both, job, {"subject"}) == ("redux", "redux")  # the first that fits
    assert _adapter_for(both, job, {"style", "subject"}) == ("xlabs", "flux-ip-adapter")
    with pytest.raises(UserError, match="Redux"):
        _adapter_for(context({"redux": redux}), job, {"style"})
    with pytest.raises(UserError, match="SDBOT_IP_ADAPTERS"):
        _adapter_for(context({"sd15": sd}), job, {"subject"})
    with pytest.raises(ValueError, match="architecture = flux"):
        IPAdapterEntry(source="x", kind="redux")
    with pytest.raises(ValueError, match="image_encoder"):
        IPAdapterEntry(source="x", architecture="flux")


# --- the chat flow ---------------------------------------------------------------------------


@pytest.fixture
async def bot(tmp_path, models_dir):  # type: ignore[no-untyped-def]
    from tests.test_service import running_bot, tiny_settings

    others = ("tiny-flux", "tiny-sd3", "tiny-qwen", "tiny-chroma")
    async with running_bot(tiny_settings(tmp_path, models_dir, "tiny-flux", others)) as made:
        yield made


def attachment(data: bytes):  # type: ignore[no-untyped-def]
    from commands.frame.types import Attachment

    return Attachment(filename="ref.png", content_type="image/png", data=data)


async def test_oref_on_tiny_flux_is_queued_and_drawn_and_bad_input_is_refused(bot) -> None:  # type: ignore[no-untyped-def]
    [(_, queued)] = await bot.send("/imagine a red fox --seed 5 --oref --ow 150", attachments=(attachment(png_bytes(picture())),))
    assert queued.kind == "status" and "oref" in queued.text, queued.text
    [(_, result)] = await bot.finish()
    assert len(result.reply.images) == 1
    parameters = Image.open(result.reply.images[0].path).text["parameters"]
    assert f'IP-Adapter 0: "Type: subject, Model: {TINY_IP_ADAPTER}, Weight: 150, Scale: 1.05' in parameters

    refusals = [
        await bot.send(f"/imagine a fox --oref --model {model}", attachments=(attachment(png_bytes(picture())),))
        for model in ("tiny-sd3", "tiny-qwen", "tiny-chroma")
    ]
    texts = [reply.text for [(_, reply)] in refusals]
    assert all(reply.kind != "status" for [(_, reply)] in refusals), texts
    for label, text in zip(("SD 3.5", "Qwen-Image", "Chroma"), texts, strict=True):
        assert label in text and "--oref" in text, text
    assert "trained on FLUX.1 [dev]" in texts[2]
    assert await bot.finish() == []
