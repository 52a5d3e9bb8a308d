"""The model-family layer on the tiny FLUX.1 and Chroma models: every path a still takes equals
bare diffusers' own pipeline for the same seed (txt2img, img2img, inpaint, a batch); the files
people download (a diffusers folder, a single transformer file, a GGUF file) are recognised
without a hint and load; quantized weights draw close to the float model; and what a family
can't do is refused before queueing, naming the family."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from config import ModelEntry, ModelRegistry
from generation.engine import Engine
from generation.jobs import run_job
from generation.models import families, tiny_flux2, tiny_qwen, tiny_sd3, tiny_zimage
from generation.models.files import ModelSourceError, UnsupportedModel, inspect_model_source
from generation.models.loader import ModelCache
from generation.models.tiny_dit import ensure_tiny_chroma, ensure_tiny_flux
from generation.spec import GenerationSpec
from storage.blobs import LocalBlobStore
from tests.support.gguf_files import tiny_bfl_widths, to_bfl_keys, write_gguf

FOLDERS = {
    "tiny-flux": ensure_tiny_flux,
    "tiny-chroma": ensure_tiny_chroma,
    "tiny-sd3": tiny_sd3.ensure,
    "tiny-qwen": tiny_qwen.ensure,
    "tiny-zimage": tiny_zimage.ensure,
    "tiny-flux2": tiny_flux2.ensure,
}
PIPELINES: dict[str, tuple[str, str, str]] = {
    "tiny-flux": ("FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline"),
    "tiny-chroma": ("ChromaPipeline", "ChromaImg2ImgPipeline", "ChromaInpaintPipeline"),
    "tiny-sd3": ("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline", "StableDiffusion3InpaintPipeline"),
    "tiny-qwen": ("QwenImagePipeline", "QwenImageImg2ImgPipeline", "QwenImageInpaintPipeline"),
    "tiny-zimage": ("ZImagePipeline", "ZImageImg2ImgPipeline", "ZImageInpaintPipeline"),
    "tiny-flux2": ("Flux2KleinPipeline", "Flux2KleinInpaintPipeline", "Flux2KleinInpaintPipeline"),  # img2img: all masked
}
TINY_DITS = list(FOLDERS)


@pytest.fixture(scope="module")
def engine(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    registry = ModelRegistry([ModelEntry(source=model) for model in TINY_DITS])
    return Engine(
        ModelCache(registry, models_dir, torch.device("cpu"), torch.float32, max_loaded=3), LocalBlobStore(tmp_path_factory.mktemp("b"))
    )


def spec(model: str, **changes) -> GenerationSpec:  # type: ignore[no-untyped-def]
    base = dict(
        kind="txt2img", prompt="a red fox in the snow", model=model, family=model.removeprefix("tiny-"), width=64, height=48,
        steps=4, cfg=3.5, sampler="Euler", seed=11, n=1,
    )  # fmt: skip
    base.update(changes)
    return GenerationSpec(**base)


def pixels(image: bytes | Image.Image) -> np.ndarray:
    picture = Image.open(io.BytesIO(image)) if isinstance(image, bytes) else image
    return np.asarray(picture.convert("RGB")).astype(int)


def bare(models_dir: Path, model: str, kind: int, seed: int, **call) -> np.ndarray:  # type: ignore[no-untyped-def]
    """What bare diffusers draws: the family's own pipeline class, loaded from the same folder."""
    import diffusers

    pipe = getattr(diffusers, PIPELINES[model][kind]).from_pretrained(FOLDERS[model](models_dir))
    pipe.set_progress_bar_config(disable=True)
    if "guidance_embeds" not in pipe.transformer.config:  # ChromaInpaintPipeline reads it (generation.models.loader._mend_config)
        pipe.transformer.register_to_config(guidance_embeds=False)
    generator = torch.Generator("cpu").manual_seed(seed)
    family = families.family(model.removeprefix("tiny-"))
    if family.negative_as_embeds and "negative_prompt" in call:  # FLUX.2 Klein takes only embeddings
        with torch.no_grad():
            call["negative_prompt_embeds"] = pipe.encode_prompt(prompt=[call.pop("negative_prompt")], device="cpu")[0]
    if kind == 1 and family.img2img_by_inpaint:  # its img2img: the inpaint pipeline, the whole picture masked
        call["mask_image"] = Image.new("L", call["image"].size, 255)
    if model == "tiny-sd3" and kind == 2:  # its inpaint pipeline decodes without the VAE's shift (diffusers #13611)
        latents = pipe(generator=generator, output_type="latent", **call).images
        latents = latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
        with torch.no_grad():
            return pixels(pipe.image_processor.postprocess(pipe.vae.decode(latents).sample, output_type="pil")[0])
    return pixels(pipe(generator=generator, **call).images[0])


def guided(model: str, **call):  # type: ignore[no-untyped-def]
    """Bare diffusers' guidance arguments for the engine's --cfg 3.5 on this family: its own
    argument (Qwen-Image's true_cfg_scale), and its blank negative prompt where it needs one."""
    family = families.family(model.removeprefix("tiny-"))
    if family.blank_negative is not None:
        call.setdefault("negative_prompt", family.blank_negative)
    return {family.cfg_argument: 3.5, **call}


def test_the_families_module_and_the_config_name_the_same_families() -> None:
    from config.models import FamilyId

    assert set(FamilyId.__args__) == {f.id for f in families.FAMILIES}  # type: ignore[attr-defined]


@pytest.mark.parametrize("model", TINY_DITS)
def test_txt2img_equals_bare_diffusers(engine: Engine, models_dir: Path, model: str) -> None:
    negative = {"negative_prompt": "blurry"} if families.family(model[5:]).supports("negative") else {}
    [ours] = run_job(engine, spec(model, negative_prompt=negative.get("negative_prompt", "")))
    theirs = bare(
        models_dir, model, 0, 11, prompt="a red fox in the snow", width=64, height=48, num_inference_steps=4, **guided(model, **negative)
    )
    assert np.abs(pixels(ours.png) - theirs).max() <= 2
    other = run_job(engine, spec(model, prompt="a blue city at night"))[0]
    assert np.abs(pixels(other.png) - pixels(ours.png)).mean() > 10  # the prompt reaches the picture
    parameters = ours.parameters
    assert "Sampler: Euler, Schedule type: Simple" in parameters and f"Model family: {families.family(model[5:]).label}" in parameters
    if model == "tiny-flux":  # the distilled guidance, as Forge writes it
        assert "CFG scale: 1, Distilled CFG Scale: 3.5" in parameters


@pytest.mark.parametrize("model", TINY_DITS)
def test_img2img_and_inpaint_equal_bare_diffusers(engine: Engine, models_dir: Path, model: str) -> None:
    rng = np.random.default_rng(3)
    picture = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    key = engine.blobs.put(_png(picture), "png")
    [ours] = run_job(engine, spec(model, kind="img2img", init_image=key, strength=0.75, steps=8))
    theirs = bare(
        models_dir, model, 1, 11, prompt="a red fox in the snow", image=picture, width=64, height=48, strength=0.75,
        num_inference_steps=8, **guided(model),
    )  # fmt: skip
    assert Image.open(io.BytesIO(ours.png)).size == (64, 48)
    assert np.abs(pixels(ours.png) - theirs).max() <= 2

    mask = Image.new("L", (64, 48), 0)
    mask.paste(255, (16, 16, 48, 40))
    mask_key = engine.blobs.put(_png(mask), "png")
    job = spec(model, kind="inpaint", init_image=key, mask=mask_key, mask_blur=0, strength=0.9, steps=8)
    [ours] = run_job(engine, job)
    painted = bare(
        models_dir, model, 2, 11, prompt="a red fox in the snow", image=picture, mask_image=mask, width=64, height=48,
        strength=0.9, num_inference_steps=8, **guided(model),
    )  # fmt: skip
    inside = np.asarray(mask) > 0
    assert np.abs(pixels(ours.png)[inside] - painted[inside]).max() <= 2  # the model's pixels where the mask is
    assert np.array_equal(pixels(ours.png)[~inside], pixels(picture)[~inside])  # the picture's own everywhere else


def test_a_batch_of_several_peoples_jobs_equals_each_alone(engine: Engine) -> None:
    from generation.jobs.batched import render_batch

    jobs = [spec("tiny-flux", prompt="a red fox", seed=1), spec("tiny-flux", prompt="an owl on a branch at dusk", seed=5, n=2)]
    assert jobs[0].batch_key() == jobs[1].batch_key() != ""
    together = render_batch(engine, jobs, [1, 2])
    for job, rendered in zip(jobs, together, strict=True):
        alone = run_job(engine, job)
        assert [image.seed for image in rendered.images] == [image.seed for image in alone]
        for mine, single in zip(rendered.images, alone, strict=True):
            assert np.abs(pixels(mine.png) - pixels(single.png)).max() <= 2


def test_a_gguf_transformer_draws_close_to_the_float_model(engine: Engine, models_dir: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A Q8_0 GGUF of the tiny FLUX transformer, with BFL's key names as published files have,
    loads from a model entry (the rest of the pipeline from the folder) and draws within 2/255 on
    average (16 at most) of the float model: Q8_0 keeps the transformer's output within ~0.6%."""
    from diffusers import FluxTransformer2DModel

    tiny_bfl_widths(monkeypatch)
    folder = ensure_tiny_flux(models_dir)
    transformer = FluxTransformer2DModel.from_pretrained(folder, subfolder="transformer")
    gguf = tmp_path / "flux1-tiny-Q8_0.gguf"
    write_gguf(transformer.state_dict(), gguf, quant="Q8_0", key_layout="bfl")
    facts = inspect_model_source(str(gguf), str(folder))
    assert (facts.architecture, facts.variant) == ("flux", "dev")

    registry = ModelRegistry([ModelEntry(source=str(gguf), config=str(folder), name="q8"), ModelEntry(source="tiny-flux")])
    quantized = Engine(ModelCache(registry, models_dir, torch.device("cpu"), torch.float32), LocalBlobStore(tmp_path / "b"))
    [drawn] = run_job(quantized, spec("q8"))
    parameters = type(quantized.models.get("q8").txt2img.transformer.transformer_blocks[0].attn.to_q.weight).__name__
    assert parameters == "GGUFParameter"
    [exact] = run_job(engine, spec("tiny-flux"))
    difference = np.abs(pixels(drawn.png) - pixels(exact.png))
    assert difference.mean() < 2 and difference.max() < 16, (difference.mean(), difference.max())  # measured 0.6 and 4–6


def test_fp8_weights_draw_on_a_cpu(models_dir: Path, tmp_path: Path, engine: Engine) -> None:
    registry = ModelRegistry([ModelEntry(source="tiny-flux", name="fp8", quantization="fp8", vae_tiling=True)])
    stored = Engine(ModelCache(registry, models_dir, torch.device("cpu"), torch.float32), LocalBlobStore(tmp_path / "b"))
    [drawn] = run_job(stored, spec("fp8"))
    weight = stored.models.get("fp8").txt2img.transformer.transformer_blocks[0].attn.to_q.weight
    assert weight.dtype == torch.float8_e4m3fn and stored.models.get("fp8").txt2img.vae.use_tiling
    [exact] = run_job(engine, spec("tiny-flux"))
    assert np.abs(pixels(drawn.png) - pixels(exact.png)).mean() < 5  # measured 1.8–2.1 of 255


def test_folders_single_files_and_gguf_files_are_recognised_without_a_hint(models_dir: Path, tmp_path: Path) -> None:
    from diffusers import ChromaTransformer2DModel, FluxTransformer2DModel

    flux, chroma = ensure_tiny_flux(models_dir), ensure_tiny_chroma(models_dir)
    assert (inspect_model_source(str(flux)).architecture, inspect_model_source(str(flux)).variant) == ("flux", "dev")
    assert inspect_model_source(str(chroma)).architecture == "chroma"
    assert inspect_model_source("tiny-chroma").architecture == "chroma"

    flux_weights = FluxTransformer2DModel.from_pretrained(flux, subfolder="transformer").state_dict()
    single = tmp_path / "flux1-dev.safetensors"  # as BFL publish it: the transformer alone, original names
    save_file(to_bfl_keys(flux_weights), single)
    facts = inspect_model_source(str(single), str(flux))
    assert (facts.architecture, facts.variant, facts.size) == ("flux", "dev", 1024)
    schnell = {k: v for k, v in to_bfl_keys(flux_weights).items() if not k.startswith("guidance_in.")}
    save_file(schnell, tmp_path / "flux1-schnell.safetensors")
    assert inspect_model_source(str(tmp_path / "flux1-schnell.safetensors"), str(flux)).variant == "schnell"
    diffusers_named = write_gguf(flux_weights, tmp_path / "flux-diffusers-names.gguf", key_layout="diffusers")
    assert (
        inspect_model_source(str(diffusers_named), str(flux)).architecture,
        inspect_model_source(str(diffusers_named), str(flux)).variant,
    ) == (
        "flux",
        "dev",
    )
    chroma_file = tmp_path / "chroma.safetensors"
    save_file(to_bfl_keys(ChromaTransformer2DModel.from_pretrained(chroma, subfolder="transformer").state_dict()), chroma_file)
    assert inspect_model_source(str(chroma_file), str(chroma)).architecture == "chroma"
    with pytest.raises(ModelSourceError, match="holds only FLUX.1's transformer.*--config"):
        inspect_model_source(str(single))
    with pytest.raises(ModelSourceError, match="is a FLUX.1 model but the --config .* is a Chroma model"):
        inspect_model_source(str(single), str(chroma))

    with pytest.raises(ModelSourceError, match="pickle"):  # a pickle of any family, as before
        inspect_model_source(str(tmp_path / "flux1-dev.ckpt"), str(flux))
    unknown = tmp_path / "mystery.safetensors"
    save_file({"encoder.layer.0.weight": torch.zeros(2, 2)}, unknown)
    with pytest.raises(UnsupportedModel, match="not a model of any family sdbot knows"):
        inspect_model_source(str(unknown), str(flux))
    vace = tmp_path / "wan2.1_vace.safetensors"  # Wan is on the layer (tests/test_tiny_video.py); its VACE is not
    weights = {
        "head.modulation": torch.zeros(1, 2, 8),
        "blocks.0.self_attn.q.weight": torch.zeros(8, 8),
        "vace_blocks.0.after_proj.bias": torch.zeros(8),
    }
    save_file(weights, vace)
    with pytest.raises(UnsupportedModel, match=r"is a Wan VACE .* file; sdbot runs SD 1.x, SD 2.x, SDXL, SD 3.5, FLUX.1, Chroma"):
        inspect_model_source(str(vace), str(flux))
    (tmp_path / "ltx2").mkdir()
    (tmp_path / "ltx2" / "model_index.json").write_text(json.dumps({"_class_name": "LTX2Pipeline"}))
    with pytest.raises(UnsupportedModel, match="is a LTX-2 .* model"):
        inspect_model_source(str(tmp_path / "ltx2"))


def test_an_unsupported_pipeline_stops_the_start(tmp_path: Path, models_dir: Path) -> None:
    import run_bot
    from config import Settings

    (tmp_path / "vace").mkdir()
    (tmp_path / "vace" / "model_index.json").write_text(json.dumps({"_class_name": "WanVACEPipeline"}))
    settings = Settings(_env_file=None, model=str(tmp_path / "vace"), data_dir=tmp_path / "data", models_dir=models_dir)
    with pytest.raises(SystemExit, match="is a Wan VACE .* model \\(WanVACEPipeline\\); sdbot runs"):
        run_bot.model_registry(settings)
    settings = Settings(_env_file=None, model="tiny-flux", data_dir=tmp_path / "data", models_dir=models_dir)
    [entry] = list(run_bot.model_registry(settings))
    assert (entry.family, entry.variant, entry.native_size) == ("flux", "dev", 64)


def test_a_family_declares_what_it_lacks_with_a_reason() -> None:
    flux, chroma, sdxl = families.family("flux"), families.family("chroma"), families.family("sdxl")
    assert not flux.supports("negative") and chroma.supports("negative")
    assert flux.supports("cfg", "dev") and not flux.supports("cfg", "schnell")
    assert all(families.family(f).supports(feature) for f in ("sd1", "sd2") for feature in families.FEATURES if feature != "video")
    assert not families.family("sd1").supports("video")  # clips of their own: the video families (tests/test_tiny_video.py)
    assert not sdxl.supports("camera_moves") and sdxl.supports("controlnet")
    assert flux.size_multiple == 16 and flux.flow_matching and list(flux.samplers) == ["Euler"]
    assert families.from_keys(["model.diffusion_model.double_blocks.0.img_attn.qkv.weight"]) == (flux, "schnell")


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_nf4_on_a_worker_without_cuda_says_what_to_use_instead(models_dir: Path, tmp_path: Path) -> None:
    from generation.errors import ModelLoadError

    registry = ModelRegistry([ModelEntry(source="tiny-flux", name="nf4", quantization="nf4")])
    cache = ModelCache(registry, models_dir, torch.device("cpu"), torch.float32)
    with pytest.raises(ModelLoadError, match="nf4 \\(bitsandbytes 4-bit\\), which needs a CUDA GPU; this worker draws on cpu. Use"):
        cache.get("nf4")


def test_sd35_is_recognised_from_a_folder_sais_names_and_a_gguf_file(models_dir: Path, tmp_path: Path) -> None:
    from diffusers import SD3Transformer2DModel

    folder = tiny_sd3.ensure(models_dir)
    assert inspect_model_source(str(folder)).architecture == "sd3"
    sai = ["model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias", "model.diffusion_model.x_embedder.proj.weight"]
    assert families.from_keys(sai) == (families.family("sd3"), "medium")
    assert families.from_keys([*sai, "model.diffusion_model.joint_blocks.37.x_block.mlp.fc1.weight"])[1] == "large"
    weights = SD3Transformer2DModel.from_pretrained(folder, subfolder="transformer").state_dict()
    gguf = write_gguf(weights, tmp_path / "sd3.5_medium-Q8_0.gguf", key_layout="diffusers")
    facts = inspect_model_source(str(gguf), str(folder))
    assert (facts.architecture, facts.variant) == ("sd3", "medium")
    registry = ModelRegistry([ModelEntry(source=str(gguf), config=str(folder), name="q8")])
    quantized = Engine(ModelCache(registry, models_dir, torch.device("cpu"), torch.float32), LocalBlobStore(tmp_path / "b"))
    [drawn] = run_job(quantized, spec("q8", family="sd3", cfg=4.5))
    assert type(quantized.models.get("q8").txt2img.transformer.transformer_blocks[0].attn.to_q.weight).__name__ == "GGUFParameter"
    assert drawn.width == 64


def test_qwen_image_is_recognised_from_a_folder_and_a_gguf_file(models_dir: Path, tmp_path: Path) -> None:
    from diffusers import QwenImageTransformer2DModel

    folder = tiny_qwen.ensure(models_dir)
    assert inspect_model_source(str(folder)).architecture == "qwen"
    weights = QwenImageTransformer2DModel.from_pretrained(folder, subfolder="transformer").state_dict()
    gguf = write_gguf(weights, tmp_path / "qwen-image-Q8_0.gguf", key_layout="diffusers")
    assert inspect_model_source(str(gguf), str(folder)).architecture == "qwen"
    assert families.from_keys([f"model.diffusion_model.{key}" for key in weights])[0] is families.family("qwen")


def test_z_image_gguf_with_quantized_pad_tokens_draws(models_dir: Path, tmp_path: Path) -> None:
    """Community Z-Image GGUF files quantize `x_pad_token`/`cap_pad_token` too, which diffusers
    0.42.1 uses as plain tensors: the loader dequantizes them, and the file draws near the float model."""
    import gguf as gguf_package
    from diffusers import ZImageTransformer2DModel

    folder = tiny_zimage.ensure(models_dir)
    weights = ZImageTransformer2DModel.from_pretrained(folder, subfolder="transformer").state_dict()
    path = tmp_path / "z_image_turbo-Q8_0.gguf"
    writer = gguf_package.GGUFWriter(str(path), "lumina2")
    for name, tensor in weights.items():
        array = tensor.float().numpy()
        if array.ndim >= 2 and array.shape[-1] % 32 == 0:  # pad tokens too, as published files have them
            writer.add_tensor(
                name, gguf_package.quantize(array, gguf_package.GGMLQuantizationType.Q8_0), raw_dtype=gguf_package.GGMLQuantizationType.Q8_0
            )
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert inspect_model_source(str(path), str(folder)).architecture == "zimage"
    registry = ModelRegistry([ModelEntry(source=str(path), config=str(folder), name="q8"), ModelEntry(source="tiny-zimage")])
    engine = Engine(ModelCache(registry, models_dir, torch.device("cpu"), torch.float32, max_loaded=2), LocalBlobStore(tmp_path / "b"))
    [drawn] = run_job(engine, spec("q8", family="zimage", cfg=0.0))
    [exact] = run_job(engine, spec("tiny-zimage", family="zimage", cfg=0.0))
    assert np.abs(pixels(drawn.png) - pixels(exact.png)).mean() < 3
