"""The engine on tiny models: equal to bare diffusers, reproducible per image, every sampler."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from config import ModelEntry, ModelRegistry
from generation.engine import Engine, build_scheduler
from generation.errors import JobCancelled, ModelLoadError
from generation.jobs import run_job
from generation.models.loader import ModelCache
from generation.models.samplers import SAMPLERS
from generation.models.tiny import build_tiny_pipeline
from generation.parameters import parse_infotext
from generation.spec import GenerationSpec
from storage.blobs import LocalBlobStore


@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder written by plain `StableDiffusionPipeline.save_pretrained`, as anyone would."""
    folder = tmp_path_factory.mktemp("someones-model") / "my-sd"
    build_tiny_pipeline().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def engine(saved_folder: Path, models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    registry = ModelRegistry([ModelEntry(source="tiny"), ModelEntry(source=str(saved_folder), name="mine")])
    cache = ModelCache(registry, models_dir, torch.device("cpu"), torch.float32, max_loaded=2)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("blobs")))


def spec(**changes) -> GenerationSpec:  # type: ignore[no-untyped-def]
    base = dict(kind="txt2img", prompt="a red fox", model="mine", width=64, height=64, steps=4, cfg=7.0, sampler="Euler", seed=42, n=1)
    base.update(changes)
    return GenerationSpec(**base)


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def bare_diffusers(folder: Path, prompt: str, seed: int, **kwargs) -> np.ndarray:  # type: ignore[no-untyped-def]
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    image = pipe(prompt, generator=torch.Generator("cpu").manual_seed(seed), **kwargs).images[0]
    return np.asarray(image).astype(int)


def test_same_pixels_as_bare_diffusers(engine: Engine, saved_folder: Path) -> None:
    [ours] = run_job(engine, spec())
    theirs = bare_diffusers(saved_folder, "a red fox", 42, num_inference_steps=4, guidance_scale=7.0, height=64, width=64)
    assert np.abs(pixels(ours.png) - theirs).max() <= 2


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M SDE Karras", "DPM++ SDE Karras"])
def test_batch_image_i_equals_single_image_with_seed_plus_i(engine: Engine, sampler: str) -> None:
    """Ancestral and SDE samplers draw noise at every step: it too must come from image i's seed."""
    batch = run_job(engine, spec(seed=10, n=4, sampler=sampler))
    assert [image.seed for image in batch] == [10, 11, 12, 13]
    for i, image in enumerate(batch):
        [alone] = run_job(engine, spec(seed=10 + i, sampler=sampler))
        assert np.abs(pixels(image.png) - pixels(alone.png)).max() <= 2
    assert np.abs(pixels(batch[0].png) - pixels(batch[1].png)).mean() > 5  # different seeds differ


def test_png_carries_a1111_parameters(engine: Engine) -> None:
    [image] = run_job(engine, spec(negative_prompt="blurry"), job_id=7)
    text = Image.open(io.BytesIO(image.png)).text["parameters"]
    info = parse_infotext(text)
    assert info["Prompt"] == "a red fox" and info["Negative prompt"] == "blurry"
    assert (info["Steps"], info["Sampler"], info["CFG scale"], info["Seed"], info["Size"]) == ("4", "Euler", "7", "42", "64x64")
    assert info["Model"] == "mine" and info["Job"] == "7"


def test_prompt_changes_the_picture(engine: Engine) -> None:
    """Guards the tiny model's text sensitivity: without it prompt tests prove nothing."""
    [cat] = run_job(engine, spec(prompt="a cat"))
    [dog] = run_job(engine, spec(prompt="a dog"))
    assert np.abs(pixels(cat.png) - pixels(dog.png)).mean() > 10


@pytest.mark.parametrize("sampler", [s.name for s in SAMPLERS])
def test_every_sampler_runs(engine: Engine, sampler: str) -> None:
    steps = []
    [image] = run_job(engine, spec(sampler=sampler, steps=3, model="tiny"), on_progress=lambda step, total: steps.append((step, total)))
    assert pixels(image.png).shape == (64, 64, 3)
    assert steps and steps[-1][0] == steps[-1][1]  # progress reaches its total


def test_scheduler_options_reach_diffusers() -> None:
    config = dict(build_tiny_pipeline().scheduler.config)
    karras = build_scheduler("DPM++ 2M Karras", config)
    sde = build_scheduler("dpmpp_2m_sde", config)
    assert type(karras).__name__ == "DPMSolverMultistepScheduler" and karras.config.use_karras_sigmas
    assert sde.config.algorithm_type == "sde-dpmsolver++" and not sde.config.use_karras_sigmas
    assert build_scheduler("Euler a", config) is not build_scheduler("Euler a", config)


def test_img2img_keeps_size_and_follows_strength(engine: Engine) -> None:
    [source] = run_job(engine, spec(seed=1))
    key = engine.blobs.put(source.png, "png")
    light = run_job(engine, spec(kind="img2img", init_image=key, strength=0.25, steps=8, seed=5))[0]
    heavy = run_job(engine, spec(kind="img2img", init_image=key, strength=1.0, steps=8, seed=5))[0]
    original = pixels(source.png)
    assert pixels(light.png).shape == original.shape
    assert np.abs(pixels(light.png) - original).mean() < np.abs(pixels(heavy.png) - original).mean()
    assert "Denoising strength: 0.25" in light.parameters


def test_stop_between_steps(engine: Engine) -> None:
    seen = []
    with pytest.raises(JobCancelled):
        run_job(engine, spec(steps=20), on_progress=lambda step, total: seen.append(step), should_stop=lambda: len(seen) >= 2)
    assert seen == [1, 2]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("/nonexistent/model-folder", "does not exist"),
        ("/tmp", "not a diffusers folder"),
        ("/models/dreamshaper.ckpt", "only loads .safetensors"),
        ("/models/missing.safetensors", "does not exist"),
        ("someorg/some-model", "HF_HUB_OFFLINE is set"),
    ],
)
def test_model_load_errors_say_how_to_fix(source: str, expected: str, models_dir: Path) -> None:
    cache = ModelCache(ModelRegistry([ModelEntry(source=source)]), models_dir, torch.device("cpu"), torch.float32)
    with pytest.raises(ModelLoadError) as caught:
        cache.get(ModelEntry(source=source).display_name)
    assert expected in caught.value.message and "SDBOT_MODEL=tiny" in caught.value.message


@pytest.fixture(scope="module")
def single_file(saved_folder: Path) -> Path:
    """The same weights as `saved_folder`, as one original-layout checkpoint (as on Civitai)."""
    from diffusers import StableDiffusionPipeline

    from tests.support.ldm_checkpoint import save_ldm_checkpoint

    path = saved_folder.parent / "civitai-style.safetensors"
    save_ldm_checkpoint(StableDiffusionPipeline.from_pretrained(saved_folder), path)
    return path


def test_single_file_checkpoint_with_local_config(single_file: Path, saved_folder: Path, engine: Engine, models_dir: Path) -> None:
    entry = ModelEntry(source=str(single_file), config=str(saved_folder))
    cache = ModelCache(ModelRegistry([entry]), models_dir, torch.device("cpu"), torch.float32)
    single = Engine(cache, engine.blobs)
    [from_file] = run_job(single, spec(model="civitai-style"))
    [from_folder] = run_job(engine, spec())
    assert np.abs(pixels(from_file.png) - pixels(from_folder.png)).max() <= 2


def test_single_file_without_config_offline_says_what_to_set(single_file: Path, models_dir: Path) -> None:
    cache = ModelCache(ModelRegistry([ModelEntry(source=str(single_file))]), models_dir, torch.device("cpu"), torch.float32)
    with pytest.raises(ModelLoadError) as caught:
        cache.get("civitai-style")
    assert "set `config`" in caught.value.message and "HF_HUB_OFFLINE" in caught.value.message
