"""The video families on the family layer (Wan, LTX-Video: `Family.video()`) and their built-in tiny
models (generation/models/tiny_video.py): the check the command layer asks before queueing refuses
frames off the rule, sizes off the multiple, a first frame on a text-to-video variant and a last
frame where there is no first-last-frame, naming the family; the defaults; recognition from
model_index.json, transformer configs and single files' tensor names (VACE, Animate and LTX-2
refused, saying what they are); the tiny models build once, load like real ones, hear their prompt
and their frames; their transformers load from GGUF files, and fp8 storage covers Wan 2.2's two
experts."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from config.models import ModelEntry
from generation.models import families
from generation.models.families import LTX, WAN

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- the check before queueing (torch-free) -------------------------------------------------------


def test_frames_off_the_rule_and_sizes_off_the_multiple_are_refused_naming_the_family() -> None:
    wan, ltx = WAN.video(), LTX.video()
    assert wan is not None and ltx is not None
    assert wan.check("t2v", 81, 832, 480, False, False) == []
    [frames] = wan.check("t2v", 80, 832, 480, False, False)
    assert "Wan T2V" in frames and "4k+1" in frames and "`--frames 81`" in frames
    [size] = wan.check("t2v", 81, 840, 480, False, False)
    assert "Wan T2V draws sizes in multiples of 16" in size and "`--size 832x480`" in size
    assert ltx.check(None, 121, 704, 512, False, False) == []
    [frames, size] = ltx.check(None, 120, 700, 512, False, False)
    assert "LTX-Video" in frames and "8k+1" in frames and "`--frames 121`" in frames
    assert "LTX-Video draws sizes in multiples of 32" in size
    [longer] = wan.check("t2v", 85, 832, 480, False, False)
    assert "at most 81 frames" in longer
    assert wan.check("ti2v", 121, 1280, 704, True, False) == []  # Wan 2.2 TI2V 5B: 121 frames, sizes in 32s
    assert "multiples of 32" in wan.check("ti2v", 121, 1280, 720, False, False)[0]
    assert "4k+1" in wan.check("t2v", 1, 832, 480, False, False)[0]  # one frame is a picture, not a clip


def test_what_a_variant_cant_draw_is_refused_naming_it() -> None:
    wan, ltx = WAN.video(), LTX.video()
    assert wan is not None and ltx is not None
    [start] = wan.check("t2v", 81, 832, 480, True, False)
    assert "Wan T2V draws text-to-video; it can't start from a picture" in start
    [needs] = wan.check("i2v-a14b", 81, 832, 480, False, False)
    assert "Wan 2.2 I2V A14B starts from a picture" in needs
    [end] = wan.check("i2v", 81, 832, 480, True, True)
    assert "Wan 2.1 I2V 14B draws image-to-video; it can't end on a given last frame" in end
    assert "can't end on a given last frame" in wan.check("ti2v", 121, 1280, 704, True, True)[0]
    [both] = wan.check("flf2v", 81, 1280, 720, True, False)
    assert "Wan 2.1 FLF2V 14B draws first-last-frame only" in both
    assert wan.check("i2v-a14b", 81, 832, 480, True, True) == []
    assert "A last frame needs a first frame" in wan.check("i2v-a14b", 81, 832, 480, False, True)[0]
    assert ltx.check("distilled", 121, 704, 512, True, True) == []  # LTX-Video: every mode
    assert wan.modes("t2v") == {"t2v"} and wan.modes("i2v-a14b") == {"i2v", "flf2v"} and wan.modes(None) == {"t2v"}
    assert ltx.modes(None) == {"t2v", "i2v", "flf2v", "condition"}


def test_defaults_rules_and_what_other_families_say() -> None:
    wan, ltx = WAN.video(), LTX.video()
    assert wan is not None and ltx is not None
    assert wan.defaults("t2v") == (81, 16, 50, 5.0) and wan.defaults("ti2v") == (121, 24, 50, 5.0)
    assert wan.defaults("i2v-a14b").cfg == 3.5 and wan.defaults(None, tiny=True).frames == 9
    frames, fps, steps, cfg = ltx.defaults(None)
    assert (frames, fps, steps, cfg) == (121, 24, 50, 3.0) and ltx.defaults("distilled")[2:] == (8, 1.0)
    assert wan.frame_rule.startswith("4k+1 frames (5, 9, 13") and ltx.frame_rule.startswith("8k+1 frames (9, 17, 25")
    assert wan.default_dimensions("t2v") == (832, 480) and ltx.default_dimensions(None) == (704, 512)
    assert wan.nearest_frames(200, "t2v") == 81 and ltx.nearest_frames(100) == 97
    flux = families.family("flux")
    assert flux.video() is None and "FLUX.1 draws pictures" in str(flux.why_not("video"))
    assert WAN.why_not("video") is None and "Wan is a video model" in str(WAN.why_not("pictures"))
    assert "LTX-Video" in str(LTX.why_not("controlnet")) and WAN.why_not("lora") is None and LTX.why_not("lora") is None
    assert families.video_families() == (WAN, LTX)
    # the motion each family honours, and how (the docs and the PNG parameters say it)
    assert wan.motion["high"].negative_suffix == "static, still picture, motionless" and wan.motion["high"].frame_rate_factor == 1
    assert ltx.motion["low"].frame_rate_factor == 1.5 and not ltx.motion["low"].prompt_suffix


# --- recognition --------------------------------------------------------------------------------


def test_video_models_are_recognised_from_their_folders_configs_and_names() -> None:
    assert families.from_pipeline_class("WanPipeline") is WAN and families.from_pipeline_class("LTXConditionPipeline") is LTX
    assert families.from_pipeline_class("WanVACEPipeline") is None
    assert "Wan VACE" in str(families.known_elsewhere(class_name="WanVACEPipeline"))
    assert "LTX-2" in str(families.known_elsewhere(class_name="LTX2Pipeline"))
    i2v_index = {"_class_name": "WanImageToVideoPipeline", "image_encoder": ["transformers", "CLIPVisionModel"]}
    assert WAN.variant_from({"image_dim": 1280, "pos_embed_seq_len": 514}, "/m/model", i2v_index) == "flf2v"
    assert WAN.variant_from({"image_dim": 1280, "pos_embed_seq_len": None}, "/m/model", i2v_index) == "i2v"
    wan22 = {"_class_name": "WanImageToVideoPipeline", "image_encoder": [None, None], "boundary_ratio": 0.9}
    assert WAN.variant_from({"image_dim": None}, "/m/model", wan22) == "i2v-a14b"
    assert WAN.variant_from({}, "/m/model", {"_class_name": "WanPipeline", "expand_timesteps": True}) == "ti2v"
    assert WAN.variant_from({}, "/m/model", {"_class_name": "WanPipeline"}) is None  # the first variant: t2v
    assert WAN.variant_from(None, "Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers") == "flf2v"
    assert ModelEntry(source="Wan-AI/Wan2.2-I2V-A14B-Diffusers").guessed_variant == "i2v-a14b"
    assert ModelEntry(source="Wan-AI/Wan2.2-TI2V-5B-Diffusers").guessed_variant == "ti2v"
    assert ModelEntry(source="Lightricks/LTX-Video-0.9.7-distilled").family == "ltx"
    assert (ModelEntry(source="tiny-wan").family, ModelEntry(source="tiny-wan-i2v").guessed_variant) == ("wan", "i2v-a14b")


def test_video_transformer_files_are_recognised_by_their_tensor_names() -> None:
    original = ["head.modulation", "blocks.0.self_attn.q.weight", "patch_embedding.weight", "text_embedding.0.weight"]
    assert families.from_keys([f"model.diffusion_model.{key}" for key in original]) == (WAN, None)
    assert families.from_keys([*original, "img_emb.proj.1.weight"]) == (WAN, "i2v")
    assert families.from_keys([*original, "img_emb.emb_pos", "img_emb.proj.1.weight"]) == (WAN, "flf2v")
    assert families.from_keys([*original, "vace_blocks.0.after_proj.bias"]) == (None, None)
    assert "Wan VACE" in str(families.known_elsewhere(keys=[*original, "vace_blocks.0.after_proj.bias"]))
    assert families.from_keys(["patchify_proj.weight", "adaln_single.linear.weight", "transformer_blocks.0.attn1.to_q.weight"])[0] is LTX
    ltx2 = ["av_ca_a2v_gate_adaln_single.emb.timestep_embedder.linear_1.weight", "patchify_proj.weight"]
    assert families.from_keys(ltx2) == (None, None) and "LTX-2" in str(families.known_elsewhere(keys=ltx2))


# --- the tiny models ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def video_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from generation.models import tiny_video

    folder = tmp_path_factory.mktemp("tiny-video-models")
    for ensure in (tiny_video.ensure_wan, tiny_video.ensure_wan_i2v, tiny_video.ensure_ltx):
        ensure(folder)
    return folder


def test_the_tiny_models_build_once_and_read_as_their_variants(video_models: Path) -> None:
    from generation.models import tiny_video
    from generation.models.files import inspect_model_source

    wan = tiny_video.ensure_wan(video_models)
    stamp = (wan / "model_index.json").stat().st_mtime_ns
    assert tiny_video.ensure_wan(video_models) == wan and (wan / "model_index.json").stat().st_mtime_ns == stamp
    facts = {
        version: inspect_model_source(str(video_models / version))
        for version in (tiny_video.WAN_VERSION, tiny_video.WAN_I2V_VERSION, tiny_video.LTX_VERSION)
    }
    assert [(f.architecture, f.variant) for f in facts.values()] == [("wan", None), ("wan", "i2v-a14b"), ("ltx", None)]
    assert inspect_model_source("tiny-wan-i2v").variant == "i2v-a14b"


def clip(pipe, prompt: str = "a red fox in the snow", size: int = 32, **call) -> np.ndarray:  # type: ignore[no-untyped-def]
    import torch

    frames = pipe(
        prompt=prompt,
        negative_prompt="",
        height=size,
        width=size,
        num_frames=9,
        num_inference_steps=4,
        guidance_scale=5.0,
        generator=torch.Generator("cpu").manual_seed(1),
        output_type="pil",
        **call,
    ).frames[0]
    return np.stack([np.asarray(frame.convert("RGB")).astype(int) for frame in frames])


def test_the_tiny_models_hear_their_prompt_and_move(video_models: Path) -> None:
    """ "a red fox in the snow" vs "the blue city at night", 9 frames, 4 steps: ~26/255 apart on
    tiny-wan (32x32) and ~33 on tiny-ltx (64x64) as built; ~2 on tiny-wan without the builders'
    text-sensitivity. And the frames differ from each other (~35-50/255 first to last)."""
    import diffusers

    from generation.models import tiny_video

    wan = diffusers.WanPipeline.from_pretrained(video_models / tiny_video.WAN_VERSION, use_safetensors=True)
    ltx = diffusers.LTXPipeline.from_pretrained(video_models / tiny_video.LTX_VERSION, use_safetensors=True)
    for pipe, size in ((wan, 32), (ltx, 64)):
        pipe.set_progress_bar_config(disable=True)
        fox, city = clip(pipe, size=size), clip(pipe, "the blue city at night", size=size)
        assert np.abs(fox - city).mean() > 15
        assert np.abs(fox[0] - fox[-1]).mean() > 15
        assert np.isfinite(fox).all() and fox.std() > 10


def test_video_transformers_load_from_gguf_files_and_fp8_covers_both_experts(video_models: Path, tmp_path: Path) -> None:
    import diffusers
    import torch
    from PIL import Image

    from config import ModelRegistry
    from generation.engine import Engine
    from generation.jobs import render_job
    from generation.models import tiny_video
    from generation.models.files import inspect_model_source
    from generation.models.loader import ModelCache
    from generation.spec import ClipSpec, GenerationSpec
    from storage.blobs import LocalBlobStore
    from tests.support.gguf_files import write_gguf

    folder = video_models / tiny_video.WAN_VERSION
    transformer = diffusers.WanTransformer3DModel.from_pretrained(folder, subfolder="transformer")
    gguf = write_gguf(transformer.state_dict(), tmp_path / "wan2.1-t2v-tiny-Q8_0.gguf", quant="Q8_0", key_layout="diffusers")
    assert inspect_model_source(str(gguf), str(folder)).architecture == "wan"
    registry = ModelRegistry(
        [
            ModelEntry(source=str(gguf), config=str(folder), name="q8"),
            ModelEntry(source="tiny-wan"),
            ModelEntry(source="tiny-wan-i2v", name="fp8", quantization="fp8"),
        ]
    )
    engine = Engine(ModelCache(registry, video_models, torch.device("cpu"), torch.float32, max_loaded=3), LocalBlobStore(tmp_path / "b"))

    def frames(model: str, **fields) -> np.ndarray:  # type: ignore[no-untyped-def]
        spec = GenerationSpec(
            kind="video", prompt="a fox", model=model, family="wan", width=32, height=32, steps=4, cfg=5.0, sampler="UniPC", seed=3,
            clip=ClipSpec(frames=9, fps=16), **fields,
        )  # fmt: skip
        return np.stack([np.asarray(Image.open(io.BytesIO(image.png))).astype(int) for image in render_job(engine, spec).images])

    assert np.abs(frames("q8") - frames("tiny-wan")).mean() < 3  # Q8_0: within ~1/255 of the float model
    loaded = engine.models.get("q8").txt2img.transformer
    assert type(loaded.blocks[0].attn1.to_q.weight).__name__ == "GGUFParameter"
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, format="PNG")
    assert frames("fp8", init_image=engine.blobs.put(buffer.getvalue(), "png")).std() > 10
    pipe = engine.models.get("fp8").txt2img
    stored = {pipe.transformer.blocks[0].attn1.to_q.weight.dtype, pipe.transformer_2.blocks[0].attn1.to_q.weight.dtype}
    assert stored == {torch.float8_e4m3fn}
