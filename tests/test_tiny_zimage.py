"""The tiny Z-Image (Turbo) model (generation/models/tiny_zimage.py): it builds once, loads like a
real model, draws reproducibly in well under a second, hears its prompt (and would not without
its text-sensitivity), and serves the img2img, inpaint and ControlNet pipelines built from its
components; its transformer loads from single files and GGUF files as published ones are."""

from __future__ import annotations

from inspect import signature
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 64
# "a red fox" vs "a blue city at night", mean |difference| of the uint8 pictures, 64x64, 4 steps:
# ~34 (guidance 0, Turbo's) and ~44 (guidance 4) as built; ~3 and ~13 without `_make_text_sensitive`.
PROMPT_SENSITIVITY = 20


@pytest.fixture(scope="module")
def zimage(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """(models folder, model folder, the pipeline loaded from it)."""
    import diffusers

    from generation.models.tiny_zimage import ensure

    models_dir = tmp_path_factory.mktemp("zimage-models")
    folder = ensure(models_dir)
    pipe = diffusers.ZImagePipeline.from_pretrained(folder, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return models_dir, folder, pipe


def draw(pipe, prompt: str = "a red fox", height: int = SIZE, width: int = SIZE, guidance: float = 0.0, **extra) -> np.ndarray:  # type: ignore[no-untyped-def]
    import torch

    result = pipe(
        prompt,
        height=height,
        width=width,
        num_inference_steps=4,
        guidance_scale=guidance,
        generator=torch.Generator("cpu").manual_seed(1),
        **extra,
    )
    return np.asarray(result.images[0], dtype=np.int16)


def sibling(pipe, cls):  # type: ignore[no-untyped-def]
    """A pipeline of class `cls` over the txt2img pipeline's own modules."""
    parameters = signature(cls.__init__).parameters
    built = cls(**{name: module for name, module in pipe.components.items() if name in parameters})
    built.set_progress_bar_config(disable=True)
    return built


def test_builds_a_diffusers_folder_once(zimage) -> None:  # type: ignore[no-untyped-def]
    import json

    from generation.models.tiny_zimage import VERSION, ensure

    models_dir, folder, _ = zimage
    assert folder == models_dir / VERSION
    assert not folder.with_name(folder.name + ".building").exists()
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "ZImagePipeline"
    assert index["text_encoder"] == ["transformers", "Qwen3Model"]
    assert index["tokenizer"] == ["transformers", "Qwen2Tokenizer"]
    assert index["transformer"] == ["diffusers", "ZImageTransformer2DModel"]
    stamp = (folder / "model_index.json").stat().st_mtime_ns
    assert ensure(models_dir) == folder
    assert (folder / "model_index.json").stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_build_is_deterministic_and_leaves_the_callers_rng_alone() -> None:
    import torch

    from generation.models.tiny_zimage import build_pipeline

    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first, second = build_pipeline(), build_pipeline()
    assert torch.equal(torch.random.get_rng_state(), state)
    for name in ("transformer", "text_encoder", "vae"):
        a, b = getattr(first, name).state_dict(), getattr(second, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a), name
    assert first.tokenizer.get_vocab() == second.tokenizer.get_vocab()


def test_the_tokenizer_renders_qwen3s_prompt_template(zimage) -> None:  # type: ignore[no-untyped-def]
    _, _, pipe = zimage
    tokenizer = pipe.tokenizer
    messages = [{"role": "user", "content": "a red fox"}]
    # what ZImagePipeline asks for (enable_thinking=True), and Qwen3's other branch
    thinking = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=True)
    assert thinking == "<|im_start|>user\na red fox<|im_end|>\n<|im_start|>assistant\n"
    plain = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert plain == thinking + "<think>\n\n</think>\n\n"
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    ids = tokenizer.convert_tokens_to_ids(specials)
    assert ids == list(range(len(tokenizer) - 5, len(tokenizer)))  # after the BPE vocabulary, in Qwen's order
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.padding_side == "right"  # the prompt's tokens keep positions 0.. in the causal encoder
    encoded = tokenizer(plain).input_ids
    assert [i for i in encoded if i in ids] == [ids[1], ids[2], ids[1], ids[3], ids[4]]  # each one token
    assert tokenizer.decode(encoded) == plain
    assert tokenizer.unk_token is None  # byte-level: any text, any script, encodes
    assert tokenizer.decode(tokenizer("造相 Z-Image").input_ids) == "造相 Z-Image"


def test_draws_reproducibly_at_64_and_64x48(zimage) -> None:  # type: ignore[no-untyped-def]
    _, _, pipe = zimage
    assert pipe.vae_scale_factor == 8  # latents 1/8 of the picture; sizes multiples of 16 (2x2 patches)
    first, second = draw(pipe), draw(pipe)
    assert first.shape == (SIZE, SIZE, 3)
    assert np.array_equal(first, second)
    assert first.std() > 10  # a picture, not a flat colour
    assert draw(pipe, height=64, width=48).shape == (64, 48, 3)
    assert draw(pipe, height=48, width=64, guidance=4.0).shape == (48, 64, 3)
    with pytest.raises(ValueError, match="divisible by 16"):
        draw(pipe, width=56)


@pytest.mark.parametrize("guidance", [0.0, 4.0])
def test_hears_its_prompt(zimage, guidance: float) -> None:  # type: ignore[no-untyped-def]
    _, _, pipe = zimage
    difference = np.abs(draw(pipe, "a red fox", guidance=guidance) - draw(pipe, "a blue city at night", guidance=guidance)).mean()
    print(f"guidance {guidance}: mean |red fox - blue city| = {difference:.1f}/255")
    assert difference > PROMPT_SENSITIVITY


def test_would_not_hear_it_without_the_text_sensitivity() -> None:
    """The check above is not vacuous: the same build without `_make_text_sensitive` fails it."""
    from generation.models.tiny_zimage import build_pipeline

    pipe = build_pipeline(text_sensitive=False)
    pipe.set_progress_bar_config(disable=True)
    for guidance in (0.0, 4.0):
        difference = np.abs(draw(pipe, "a red fox", guidance=guidance) - draw(pipe, "a blue city at night", guidance=guidance)).mean()
        assert difference < PROMPT_SENSITIVITY, (guidance, difference)  # measured ~3 and ~13


def test_encode_prompt_gives_the_unpadded_caption(zimage) -> None:  # type: ignore[no-untyped-def]
    _, _, pipe = zimage
    template = lambda text: pipe.tokenizer.apply_chat_template(  # noqa: E731
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True, enable_thinking=True
    )
    embeds, negative = pipe.encode_prompt("a red fox", do_classifier_free_guidance=True)
    width = pipe.transformer.config.cap_feat_dim
    assert [e.shape for e in embeds] == [(len(pipe.tokenizer(template("a red fox")).input_ids), width)]
    assert [e.shape for e in negative] == [(len(pipe.tokenizer(template("")).input_ids), width)]  # "" when none given
    assert pipe.encode_prompt("a red fox", do_classifier_free_guidance=False)[1] == []
    long_prompt = " ".join(["a red fox in the snow"] * 200)
    assert pipe.encode_prompt(long_prompt, do_classifier_free_guidance=False)[0][0].shape == (512, width)  # truncated


def test_img2img_and_inpaint_share_the_weights(zimage) -> None:  # type: ignore[no-untyped-def]
    import diffusers

    _, _, pipe = zimage
    picture = Image.fromarray(draw(pipe, height=64, width=48).astype(np.uint8))  # 48 wide, 64 high
    mask = Image.new("L", picture.size, 0)
    mask.paste(255, (16, 16, 32, 48))

    img2img = sibling(pipe, diffusers.ZImageImg2ImgPipeline)
    assert img2img.transformer is pipe.transformer
    changed = draw(img2img, image=picture, strength=0.6, height=64, width=48)
    assert changed.shape == (64, 48, 3)
    assert np.array_equal(changed, draw(img2img, image=picture, strength=0.6, height=64, width=48))
    assert img2img.num_timesteps == 3  # 4 steps at strength 0.6
    # no size given: the picture's own (not 1024); a size other than the picture's is not resized to
    unsized = img2img("a red fox", image=picture, strength=0.6, num_inference_steps=4, guidance_scale=0.0)
    assert unsized.images[0].size == picture.size
    with pytest.raises(RuntimeError, match="size of tensor"):
        draw(img2img, image=picture, strength=0.6)  # 64x64 asked of a 48x64 picture

    inpaint = sibling(pipe, diffusers.ZImageInpaintPipeline)
    painted = draw(inpaint, image=picture, mask_image=mask, strength=0.9, height=64, width=48)
    assert painted.shape == (64, 48, 3)
    assert np.array_equal(painted, draw(inpaint, image=picture, mask_image=mask, strength=0.9, height=64, width=48))
    inside = np.asarray(mask) > 0
    change = np.abs(painted - np.asarray(picture, dtype=np.int16)).mean(axis=2)
    assert change[inside].mean() > change[~inside].mean()  # outside: only the tiny VAE's round trip


@pytest.mark.parametrize("pipeline_name", ["ZImageControlNetPipeline", "ZImageControlNetInpaintPipeline"])
def test_controlnet_pipelines_run_on_it(zimage, pipeline_name: str) -> None:  # type: ignore[no-untyped-def]
    """A tiny Union-2.x-shaped ControlNet (33 input channels: control latents, mask, masked picture)."""
    import diffusers
    import torch

    _, _, pipe = zimage
    config = pipe.transformer.config
    torch.manual_seed(0)
    controlnet = diffusers.ZImageControlNetModel(
        control_layers_places=[0, 1],
        control_refiner_layers_places=[0],
        control_in_dim=33,
        add_control_noise_refiner="control_noise_refiner",
        **{
            key: config[key]
            for key in ("all_patch_size", "all_f_patch_size", "dim", "n_refiner_layers", "n_heads", "n_kv_heads", "norm_eps", "qk_norm")
        },
    )
    cls = getattr(diffusers, pipeline_name)
    parameters = signature(cls.__init__).parameters
    controlled = cls(**{name: module for name, module in pipe.components.items() if name in parameters}, controlnet=controlnet)
    controlled.set_progress_bar_config(disable=True)
    assert controlnet.t_embedder is pipe.transformer.t_embedder  # from_transformer shares the embedders
    picture = Image.fromarray(draw(pipe).astype(np.uint8))
    extra = {"image": picture, "mask_image": Image.new("L", picture.size, 255)} if "Inpaint" in pipeline_name else {}
    drawn = draw(controlled, control_image=picture, controlnet_conditioning_scale=0.75, **extra)
    assert drawn.shape == (SIZE, SIZE, 3)


def comfy_keys(state_dict: dict) -> dict:
    """Z-Image transformer weights under the original (ComfyUI NextDiT) names that published single
    files use: fused attention.qkv, attention.out, q_norm/k_norm, x_embedder, final_layer."""
    import torch

    renamed = {}
    for key, value in state_dict.items():
        if key.endswith((".attention.to_k.weight", ".attention.to_v.weight")):
            continue
        if key.endswith(".attention.to_q.weight"):
            stem = key.removesuffix(".to_q.weight")
            key, value = f"{stem}.qkv.weight", torch.cat([state_dict[f"{stem}.to_{part}.weight"] for part in "qkv"])
        for new, old in (
            ("final_layer.", "all_final_layer.2-1."),
            ("x_embedder.", "all_x_embedder.2-1."),
            (".out.", ".to_out.0."),
            (".q_norm.", ".norm_q."),
            (".k_norm.", ".norm_k."),
        ):
            key = key.replace(old, new)
        renamed[key] = value
    return renamed


def _gguf(state_dict: dict, path: Path, quantize_pad_tokens: bool) -> Path:
    """A Q8_0 GGUF of a Z-Image transformer as the community converters write one (city96's
    ComfyUI-GGUF: arch "lumina2", original key names, pad tokens kept in full precision since its
    issue #419)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch="lumina2")
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    q8 = gguf.GGMLQuantizationType.Q8_0
    for name, tensor in comfy_keys(state_dict).items():
        array = tensor.detach().float().numpy()
        if array.ndim == 2 and array.shape[-1] % 32 == 0 and (quantize_pad_tokens or "pad_token" not in name):
            writer.add_tensor(name, gguf.quantize(array, q8), raw_dtype=q8)
        else:
            writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_its_transformer_loads_from_single_and_gguf_files(zimage, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import diffusers
    import torch
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type
    from safetensors.torch import save_file

    _, folder, pipe = zimage
    weights = {key: value.clone() for key, value in pipe.transformer.state_dict().items()}
    original = {f"model.diffusion_model.{key}": value for key, value in comfy_keys(weights).items()}  # a full checkpoint's prefix
    assert (
        infer_diffusers_model_type(original) == infer_diffusers_model_type(weights) == "z-image-turbo"
    )  # layers.0.adaLN_modulation.0.weight
    for name, state in (("original", original), ("diffusers", weights)):  # diffusers' names: no conversion
        single = tmp_path / f"{name}.safetensors"
        save_file(state, single)
        loaded = diffusers.ZImageTransformer2DModel.from_single_file(
            str(single), config=str(folder), subfolder="transformer", local_files_only=True
        )
        assert all(torch.equal(loaded.state_dict()[key], value) for key, value in weights.items()), name

    quantized = diffusers.GGUFQuantizationConfig(compute_dtype=torch.float32)
    gguf_file = _gguf(weights, tmp_path / "z_image_turbo_tiny-Q8_0.gguf", quantize_pad_tokens=False)
    transformer = diffusers.ZImageTransformer2DModel.from_single_file(
        str(gguf_file),
        quantization_config=quantized,
        config=str(folder),
        subfolder="transformer",
        local_files_only=True,
        torch_dtype=torch.float32,
    )
    assert type(transformer.layers[0].attention.to_q.weight).__name__ == "GGUFParameter"
    gguf_pipe = diffusers.ZImagePipeline(**{**pipe.components, "transformer": transformer})
    gguf_pipe.set_progress_bar_config(disable=True)
    difference = np.abs(draw(gguf_pipe) - draw(pipe))
    print(f"Q8_0 vs float: mean {difference.mean():.2f}, max {difference.max()}")
    assert difference.mean() < 3, difference.mean()  # measured ~1.4

    # diffusers 0.42.1 uses x_pad_token / cap_pad_token as plain tensors (torch.where), so a file whose
    # pad tokens are quantized loads but cannot draw: packed Q8_0 bytes (34 per 32 values) meet floats.
    broken = _gguf(weights, tmp_path / "pads-quantized.gguf", quantize_pad_tokens=True)
    transformer = diffusers.ZImageTransformer2DModel.from_single_file(
        str(broken),
        quantization_config=quantized,
        config=str(folder),
        subfolder="transformer",
        local_files_only=True,
        torch_dtype=torch.float32,
    )
    broken_pipe = diffusers.ZImagePipeline(**{**pipe.components, "transformer": transformer})
    broken_pipe.set_progress_bar_config(disable=True)
    with pytest.raises(RuntimeError, match="size of tensor"):
        draw(broken_pipe)
