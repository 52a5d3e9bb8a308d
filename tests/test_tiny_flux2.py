"""The tiny FLUX.2 Klein model (generation/models/tiny_flux2.py): it builds once and the same every
time, loads like a real model, draws reproducibly in well under a second, hears its prompt, and
serves the reference-image and inpaint pipelines (img2img: inpaint with a full mask) too."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 64
# "a red fox" vs "a blue city at night", mean |difference| of the uint8 pictures: ~37 (guidance 4,
# the pipeline's CFG) and ~32 (guidance 1, no CFG) as built; ~0.7 and ~0.2 without
# `_make_text_sensitive`.
PROMPT_SENSITIVITY = 20
# What Qwen3's own chat template renders for the pipeline's call.
QWEN3_RENDERED = "<|im_start|>user\na red fox<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


@pytest.fixture(scope="module")
def flux2_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("flux2-models")


@pytest.fixture(scope="module")
def folder(flux2_models_dir: Path) -> Path:
    from generation.models.tiny_flux2 import ensure

    return ensure(flux2_models_dir)


@pytest.fixture(scope="module")
def pipe(folder: Path):  # type: ignore[no-untyped-def]
    from diffusers import Flux2KleinPipeline

    pipe = Flux2KleinPipeline.from_pretrained(folder, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def draw(pipe, prompt: str = "a red fox", height: int = SIZE, width: int = SIZE, **extra) -> np.ndarray:  # type: ignore[no-untyped-def]
    import torch

    # prompt= by keyword: Flux2KleinPipeline's first parameter is `image` (reference images)
    result = pipe(
        prompt=prompt, height=height, width=width, num_inference_steps=4, generator=torch.Generator("cpu").manual_seed(1), **extra
    )
    return np.asarray(result.images[0], dtype=np.int16)


def components_for(cls, pipe):  # type: ignore[no-untyped-def]
    """`cls` on `pipe`'s modules, as an engine builds its img2img and inpaint pipelines."""
    return cls(**{k: v for k, v in pipe.components.items() if k in inspect.signature(cls.__init__).parameters})


def test_builds_a_diffusers_folder_once(folder: Path, flux2_models_dir: Path) -> None:
    import json

    from generation.models.tiny_flux2 import VERSION, ensure

    assert folder == flux2_models_dir / VERSION
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "Flux2KleinPipeline"
    assert index["is_distilled"] is False  # the base variant: real CFG
    assert index["text_encoder"] == ["transformers", "Qwen3ForCausalLM"]
    assert not folder.with_name(folder.name + ".building").exists()
    stamp = (folder / "model_index.json").stat().st_mtime_ns
    assert ensure(flux2_models_dir) == folder
    assert (folder / "model_index.json").stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_builds_the_same_pipeline_and_restores_the_rng() -> None:
    import torch

    from generation.models.tiny_flux2 import build_pipeline

    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = build_pipeline()
    assert torch.equal(torch.random.get_rng_state(), state)
    second = build_pipeline()
    for name in ("transformer", "vae", "text_encoder"):
        a, b = getattr(first, name).state_dict(), getattr(second, name).state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[key], b[key]) for key in a), name
    assert first.tokenizer.backend_tokenizer.to_str() == second.tokenizer.backend_tokenizer.to_str()


def test_tokenizer_renders_qwen3s_template(pipe) -> None:  # type: ignore[no-untyped-def]
    from generation.models.tiny_flux2 import QWEN3_TEXT_ENCODER

    tokenizer = pipe.tokenizer  # reloaded from the folder
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "a red fox"}], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert text == QWEN3_RENDERED
    ids = tokenizer(text).input_ids
    assert tokenizer.convert_ids_to_tokens(ids) == [
        *("<|im_start|>", "user", "Ċ", "a", "Ġred", "Ġfox", "<|im_end|>", "Ċ"),
        *("<|im_start|>", "assistant", "Ċ", "<think>", "ĊĊ", "</think>", "ĊĊ"),
    ]
    assert tokenizer.decode(ids) == text
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.eos_token == "<|im_end|>"
    assert len(tokenizer) == QWEN3_TEXT_ENCODER["vocab_size"]
    assert tokenizer.decode(tokenizer("Ünïcødé, 🦊!").input_ids) == "Ünïcødé, 🦊!"  # byte-level: nothing unknown


def test_encode_prompt(pipe) -> None:  # type: ignore[no-untyped-def]
    embeds, text_ids = pipe.encode_prompt("a red fox")
    # hidden states of layers 9, 18 and 27 side by side, every prompt padded to 512 tokens
    assert embeds.shape == (1, 512, pipe.transformer.config.joint_attention_dim) == (1, 512, 3 * pipe.text_encoder.config.hidden_size)
    assert text_ids.shape == (1, 512, 4)
    assert pipe.encode_prompt("a red fox", max_sequence_length=64)[0].shape == (1, 64, 48)


def test_draws_reproducibly_at_64_and_64x48(pipe) -> None:  # type: ignore[no-untyped-def]
    assert pipe.vae_scale_factor == 8
    seen = []

    def look(pipeline, step, timestep, tensors):  # type: ignore[no-untyped-def]
        seen.append(tuple(tensors["latents"].shape))
        return tensors

    first = draw(pipe, callback_on_step_end=look)
    assert seen == [(1, (SIZE // 16) ** 2, 128)] * 4  # 1/8 latents in 2x2 patches: 16 tokens of 4 x 32 channels
    assert pipe.num_timesteps == 4
    assert first.shape == (SIZE, SIZE, 3)
    assert np.array_equal(first, draw(pipe))
    assert first.std() > 10  # a picture, not a flat colour
    assert draw(pipe, height=48).shape == (48, SIZE, 3)


def test_hears_its_prompt(pipe) -> None:  # type: ignore[no-untyped-def]
    for guidance in (4.0, 1.0):  # with the pipeline's CFG and without
        difference = np.abs(
            draw(pipe, "a red fox", guidance_scale=guidance) - draw(pipe, "a blue city at night", guidance_scale=guidance)
        ).mean()
        print(f"guidance {guidance}: mean |red fox - blue city| = {difference:.1f}/255")
        assert difference > PROMPT_SENSITIVITY


def test_reference_image_img2img_and_inpaint(pipe) -> None:  # type: ignore[no-untyped-def]
    import diffusers

    source = Image.fromarray(draw(pipe).astype(np.uint8))
    plain = draw(pipe, "a blue city at night")

    # FLUX.2's editing: the picture as a reference (its latents join the sequence), drawn from noise
    edited = draw(pipe, "a blue city at night", image=source)
    assert edited.shape == (SIZE, SIZE, 3)
    assert np.abs(edited - plain).mean() > 1  # the reference is read
    assert np.array_equal(edited, draw(pipe, "a blue city at night", image=source))

    inpaint = components_for(diffusers.Flux2KleinInpaintPipeline, pipe)
    inpaint.set_progress_bar_config(disable=True)
    assert inpaint.transformer is pipe.transformer
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (16, 16, 48, 48))
    painted = draw(inpaint, image=source, mask_image=mask, strength=0.9)
    assert painted.shape == (SIZE, SIZE, 3)
    assert np.array_equal(painted, draw(inpaint, image=source, mask_image=mask, strength=0.9))

    # img2img: inpaint everything, from the picture noised to `strength`
    everything = Image.new("L", (SIZE, SIZE), 255)
    changed = draw(inpaint, "a blue city at night", image=source, mask_image=everything, strength=0.6)
    assert np.array_equal(changed, draw(inpaint, "a blue city at night", image=source, mask_image=everything, strength=0.6))
    assert np.abs(changed - plain).mean() > 1

    # the inpaint pipeline draws at the picture's size (floored to 16) whatever height/width say
    wide = source.resize((SIZE, 48))
    assert draw(inpaint, image=wide, mask_image=everything.resize((SIZE, 48)), strength=0.6, height=SIZE, width=SIZE).shape == (48, SIZE, 3)
