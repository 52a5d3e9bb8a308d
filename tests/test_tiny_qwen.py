"""The tiny Qwen-Image model (generation/models/tiny_qwen.py): it builds once, loads like a real
model, draws reproducibly in well under a second, hears its prompt, and serves the img2img,
inpaint and ControlNet pipelines too, built from its components as the engine builds them."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 64
# "a red fox" vs "a blue city at night", mean |difference| of the uint8 pictures: ~41 as built,
# ~0.2 without `_make_text_sensitive`.
PROMPT_SENSITIVITY = 20


@pytest.fixture(scope="module")
def qwen_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("qwen-models")


@pytest.fixture(scope="module")
def pipe(qwen_models_dir: Path):  # type: ignore[no-untyped-def]
    import diffusers

    from generation.models.tiny_qwen import ensure

    loaded = diffusers.QwenImagePipeline.from_pretrained(ensure(qwen_models_dir), use_safetensors=True)
    loaded.set_progress_bar_config(disable=True)
    return loaded


def draw(pipe, prompt: str = "a red fox", height: int = SIZE, width: int = SIZE, **extra) -> np.ndarray:  # type: ignore[no-untyped-def]
    import torch

    extra.setdefault("true_cfg_scale", 1.0)  # Qwen's default is 4.0, with CFG on only when a negative prompt is given
    result = pipe(prompt, height=height, width=width, num_inference_steps=4, generator=torch.Generator("cpu").manual_seed(1), **extra)
    return np.asarray(result.images[0], dtype=np.int16)


def from_components(cls, pipe, **extra):  # type: ignore[no-untyped-def]
    """Another pipeline class over the same modules, as the engine builds it (no dtype cast)."""
    other = cls(**{k: v for k, v in pipe.components.items() if k in inspect.signature(cls.__init__).parameters}, **extra)
    other.set_progress_bar_config(disable=True)
    return other


def test_builds_a_diffusers_folder_once(pipe, qwen_models_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from generation.models.tiny_qwen import VERSION, ensure

    folder = qwen_models_dir / VERSION
    assert (folder / "model_index.json").exists()
    assert not folder.with_name(folder.name + ".building").exists()
    stamp = (folder / "model_index.json").stat().st_mtime_ns
    assert ensure(qwen_models_dir) == folder
    assert (folder / "model_index.json").stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_build_restores_the_rng_and_matches_the_saved_model(pipe) -> None:  # type: ignore[no-untyped-def]
    import torch

    from generation.models.tiny_qwen import build_pipeline

    state = torch.random.get_rng_state()
    built = build_pipeline()
    assert torch.equal(torch.random.get_rng_state(), state)
    built.set_progress_bar_config(disable=True)
    assert np.array_equal(draw(built), draw(pipe))


def test_tokenizer_matches_the_template_positions(pipe) -> None:  # type: ignore[no-untyped-def]
    from transformers import Qwen2Tokenizer

    from generation.models.tiny_qwen import QWEN_TEMPLATE

    tokenizer = pipe.tokenizer
    assert isinstance(tokenizer, Qwen2Tokenizer)
    assert pipe.prompt_template_encode == QWEN_TEMPLATE
    # the pipeline drops the template's leading tokens by position: exactly the prefix here
    prefix = QWEN_TEMPLATE.split("{}")[0]
    assert len(tokenizer(prefix).input_ids) == pipe.prompt_template_encode_start_idx == 34
    config = pipe.text_encoder.config
    assert tokenizer.convert_tokens_to_ids("<|image_pad|>") == config.image_token_id
    assert tokenizer.convert_tokens_to_ids("<|vision_start|>") == config.vision_start_token_id
    assert len(tokenizer) == config.text_config.vocab_size
    # what is kept: the prompt's tokens and the template's five closing ones (<|im_end|> \n <|im_start|> assistant \n)
    embeds, mask = pipe.encode_prompt("a red fox")
    assert embeds.shape == (1, len(tokenizer("a red fox").input_ids) + 5, pipe.transformer.config.joint_attention_dim)
    assert mask is None  # all ones: one prompt, no padding


def test_draws_reproducibly_at_64_and_64x48(pipe) -> None:  # type: ignore[no-untyped-def]
    assert pipe.vae_scale_factor == 8  # latents 1/8 of the image, sizes in multiples of 16 (2x2 packing)
    first, second = draw(pipe), draw(pipe)
    assert first.shape == (SIZE, SIZE, 3)
    assert np.array_equal(first, second)
    assert first.std() > 10  # a picture, not a flat colour
    assert draw(pipe, height=48).shape == (48, SIZE, 3)


def test_hears_its_prompt(pipe) -> None:  # type: ignore[no-untyped-def]
    difference = np.abs(draw(pipe, "a red fox") - draw(pipe, "a blue city at night")).mean()
    print(f"qwen-image: mean |red fox - blue city| = {difference:.1f}/255")
    assert difference > PROMPT_SENSITIVITY


def test_true_cfg_needs_a_negative_prompt(pipe) -> None:  # type: ignore[no-untyped-def]
    plain = draw(pipe)
    assert np.array_equal(plain, draw(pipe, true_cfg_scale=4.0))  # no negative prompt: no CFG
    assert np.array_equal(plain, draw(pipe, negative_prompt="blurry"))  # true_cfg_scale 1: no CFG
    assert np.abs(plain - draw(pipe, negative_prompt=" ", true_cfg_scale=4.0)).mean() > 5


def test_one_step_needs_no_terminal_shift(pipe) -> None:  # type: ignore[no-untyped-def]
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    # diffusers 0.42.1: with one step, Qwen-Image's shift_terminal (0.02) stretches [1.0] by 0/0
    with np.errstate(invalid="ignore"):
        pipe.scheduler.set_timesteps(sigmas=[1.0], mu=1.0)
    assert torch.isnan(pipe.scheduler.sigmas[0])
    one_step = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config, shift_terminal=None)
    one_step.set_timesteps(sigmas=[1.0], mu=1.0)
    assert one_step.sigmas.tolist() == [1.0, 0.0]


def test_img2img_inpaint_and_controlnet_share_the_weights(pipe) -> None:  # type: ignore[no-untyped-def]
    import diffusers

    image = Image.fromarray(draw(pipe).astype(np.uint8))
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (16, 16, 48, 48))

    img2img = from_components(diffusers.QwenImageImg2ImgPipeline, pipe)
    assert img2img.transformer is pipe.transformer
    changed = draw(img2img, image=image, strength=0.6)
    assert changed.shape == (SIZE, SIZE, 3)
    assert np.array_equal(changed, draw(img2img, image=image, strength=0.6))
    assert draw(img2img, image=image.resize((SIZE, 48)), height=48, strength=0.6).shape == (48, SIZE, 3)

    inpaint = from_components(diffusers.QwenImageInpaintPipeline, pipe)
    painted = draw(inpaint, image=image, mask_image=mask, strength=0.9)
    assert painted.shape == (SIZE, SIZE, 3)
    assert np.array_equal(painted, draw(inpaint, image=image, mask_image=mask, strength=0.9))

    # a tiny ControlNet from the transformer (zero-initialised outputs, as diffusers makes them)
    transformer = pipe.transformer.config
    controlnet = diffusers.QwenImageControlNetModel.from_transformer(
        pipe.transformer,
        num_layers=1,
        attention_head_dim=transformer.attention_head_dim,
        num_attention_heads=transformer.num_attention_heads,
    )
    controlled = from_components(diffusers.QwenImageControlNetPipeline, pipe, controlnet=controlnet)
    assert draw(controlled, control_image=image).shape == (SIZE, SIZE, 3)
