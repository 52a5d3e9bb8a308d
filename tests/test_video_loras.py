"""Users' LoRAs on the video families, Wan and LTX-Video: each transformer's layers computed from its
config (generation.models.dit_layers, checked here against diffusers' classes on the meta device),
files recognised from their header in the formats people publish (diffusers/peft; ComfyUI with
Wan's own module names; musubi-tuner's kohya-style Wan files; ComfyUI LTX-Video files), fit-checked
against the model, and drawn through the engine and the chat equal to bare diffusers
(`load_lora_weights` + `set_adapters`; on Wan 2.2 A14B, on both experts) for the same seed. Every
file is built here, on the tiny models (seconds on a CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from commands.frame.types import Attachment
from config import ModelEntry, ModelRegistry
from generation.assets.files import AssetError
from generation.assets.fit import lora_misfit
from generation.engine import Engine
from generation.errors import EngineUserError
from generation.jobs import render_job
from generation.models import tiny_config
from generation.models.dit_shapes import tiny_shapes
from generation.models.loader import ModelCache
from generation.spec import AssetRef
from storage.blobs import LocalBlobStore
from tests.support.family_loras import info_of, layer_tables_match, save_loras, to_comfyui, to_kohya, to_original
from tests.support.flux_loras import make_flux_lora
from tests.test_family_loras import asset
from tests.test_video_models import FOLDERS, PROMPT, assert_same_frames, frames_of, mean_difference, video_spec
from tests.test_video_models import bare as bare_video

CLASSES = {"wan": "WanTransformer3DModel", "ltx": "LTXVideoTransformer3DModel"}
MODELS = ("tiny-wan", "tiny-wan-i2v", "tiny-ltx")
# Wan 2.1 I2V 14B's image cross-attention (CLIP image features, 1280 wide), at a toy size.
WAN21_I2V = {**tiny_config.WAN_TRANSFORMER, "image_dim": 24, "added_kv_proj_dim": 32, "in_channels": 36}
BLOCKS = r"blocks\.\d+\..*"  # musubi-tuner trains the blocks' attention and feed-forward layers


@pytest.fixture(scope="module", autouse=True)
def _threads(one_torch_thread):  # type: ignore[no-untyped-def]
    yield


def differ(a: list[np.ndarray], b: list[np.ndarray]) -> int:
    return int(max(np.abs(x - y).max() for x, y in zip(a, b, strict=True)))


# --- the transformers' layers, from their configs ------------------------------------------------


@pytest.mark.parametrize(
    ("family", "config"),
    [
        ("wan", tiny_config.WAN_TRANSFORMER),
        ("wan", tiny_config.WAN_I2V_TRANSFORMER),
        ("wan", WAN21_I2V),
        ("wan", {"num_layers": 2}),  # Wan 2.1 14B's widths
        ("ltx", tiny_config.LTX_TRANSFORMER),
        ("ltx", {"num_layers": 2}),  # LTX-Video 2B's widths
    ],
)
def test_the_layer_tables_are_the_real_classes_layers(family: str, config: dict) -> None:
    layer_tables_match(CLASSES[family], family, config)


# --- the files ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def video_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("video-lora-models")
    for ensure in FOLDERS.values():
        ensure(folder)
    return folder


def transformer(video_models: Path, model: str):  # type: ignore[no-untyped-def]
    import diffusers

    family = model.split("-")[1]
    return getattr(diffusers, CLASSES[family]).from_pretrained(FOLDERS[model](video_models) / "transformer")


@pytest.fixture(scope="module")
def files(video_models: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The LoRA files of these tests by name: `wan`, `ltx` (diffusers), and the same LoRAs in the
    other formats (`wan-comfyui`: Wan's own names; `wan-kohya`: musubi-tuner's; `ltx-comfyui`)."""
    folder = tmp_path_factory.mktemp("video-loras")
    wan = transformer(video_models, "tiny-wan")
    ltx = transformer(video_models, "tiny-ltx")
    made: dict[str, dict[str, torch.Tensor]] = {
        "wan": make_flux_lora(wan, 7),
        "wan-blocks": make_flux_lora(wan, 7, include=BLOCKS),
        "ltx": make_flux_lora(ltx, 8),
    }
    made["wan-comfyui"] = to_comfyui(to_original(made["wan"], "wan", wan))
    made["wan-kohya"] = to_kohya(to_original(made["wan-blocks"], "wan", wan))
    made["ltx-comfyui"] = to_comfyui(to_original(made["ltx"], "ltx", ltx))  # patchify_proj, adaln_single
    made["ltx-kohya"] = to_kohya(to_original(made["ltx"], "ltx", ltx))
    # lightx2v-style: a bias offset on a layer, and a norm's offset (which diffusers drops)
    made["wan-offsets"] = {
        **made["wan-comfyui"],
        "diffusion_model.blocks.0.self_attn.q.diff_b": torch.zeros(32),
        "diffusion_model.blocks.0.norm3.diff": torch.zeros(32),
    }
    return save_loras(folder, made)


def test_each_format_is_recognised(files: dict[str, Path]) -> None:
    expected = {
        "wan": ("wan", "diffusers"),
        "wan-comfyui": ("wan", "comfyui"),
        "wan-kohya": ("wan", "kohya"),
        "ltx": ("ltx", "diffusers"),
        "ltx-comfyui": ("ltx", "comfyui"),
    }
    for name, (architecture, fmt) in expected.items():
        info = info_of(files[name])
        assert (info.architecture, info.format, info.components) == (architecture, fmt, ("transformer",)), name
        assert info.rank == 4 and info.transformer_width == 32 and info.left_out == 0, name
    offsets = info_of(files["wan-offsets"])
    assert offsets.left_out == 1 and "1 norm layers left out" in offsets.summary()
    with pytest.raises(AssetError, match="kohya-style LoRA for LTX-Video, which diffusers does not convert"):
        info_of(files["ltx-kohya"])


@pytest.mark.parametrize("model", MODELS)
def test_the_fit_against_each_transformer(files: dict[str, Path], model: str) -> None:
    own, other = ("ltx", "wan") if model == "tiny-ltx" else ("wan", "ltx")
    for name in (own, f"{own}-comfyui", *(("wan-kohya",) if own == "wan" else ())):
        assert lora_misfit(info_of(files[name]).layers, tiny_shapes(model), model, None) is None, (model, name)
    why = lora_misfit(info_of(files[other]).layers, tiny_shapes(model), model, "X")
    assert why is not None and why.startswith("it is made for X") and "layer `" in why, why


# --- the engine -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(video_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    registry = ModelRegistry([ModelEntry(source=model) for model in MODELS])
    cache = ModelCache(registry, video_models, torch.device("cpu"), torch.float32, max_loaded=3)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("video-lora-blobs")))


def draw(engine: Engine, model: str, *loras: AssetRef, **fields: Any) -> list[np.ndarray]:
    return frames_of(render_job(engine, video_spec(model, loras=loras, **fields)))


PIPELINES = {"tiny-wan": "WanPipeline", "tiny-wan-i2v": "WanImageToVideoPipeline", "tiny-ltx": "LTXPipeline"}
LTX_CALL = {"frame_rate": 16, "decode_timestep": 0.03, "decode_noise_scale": 0.025}


def bare(video_models: Path, model: str, lora: Path, weight: float, **call: Any) -> list[np.ndarray]:
    """Bare diffusers, as its docs show a LoRA on a video model (tests.test_video_models.bare)."""
    extra = LTX_CALL if model == "tiny-ltx" else {}
    return bare_video(video_models, model, PIPELINES[model], lora=(lora, weight), **extra, **call)


def test_wan_loras_in_every_format_equal_bare_diffusers(engine: Engine, files: dict[str, Path], video_models: Path) -> None:
    plain = draw(engine, "tiny-wan")
    ours = draw(engine, "tiny-wan", asset(engine, files["wan"], 0.7))
    assert_same_frames(ours, bare(video_models, "tiny-wan", files["wan"], 0.7))
    assert mean_difference(ours, plain) > 3  # the LoRA changes the clip
    assert differ(draw(engine, "tiny-wan", asset(engine, files["wan-comfyui"], 0.7)), ours) <= 2  # the same LoRA, Wan's names
    assert differ(draw(engine, "tiny-wan", asset(engine, files["wan-offsets"], 0.7)), ours) <= 2  # zero offsets change nothing
    blocks = draw(engine, "tiny-wan", asset(engine, files["wan-blocks"], 0.7))
    assert differ(draw(engine, "tiny-wan", asset(engine, files["wan-kohya"], 0.7)), blocks) <= 2  # musubi's alphas honoured
    assert differ(draw(engine, "tiny-wan"), plain) == 0  # nothing leaks into the next clip


def test_a_lora_goes_on_both_experts_of_wan_2_2(engine: Engine, files: dict[str, Path], video_models: Path) -> None:
    from tests.test_video_models import picture, stored

    start = picture(1)
    ours = draw(engine, "tiny-wan-i2v", asset(engine, files["wan"], 0.8), init_image=stored(engine, start))
    assert_same_frames(ours, bare(video_models, "tiny-wan-i2v", files["wan"], 0.8, image=start))
    pipe = engine.models.get("tiny-wan-i2v").video_pipeline("i2v")
    names = {name for name, _ in pipe.transformer_2.named_modules() if name.endswith("lora_A")}
    assert names, "the low-noise expert carries the LoRA too"


def test_ltx_loras_equal_bare_diffusers(engine: Engine, files: dict[str, Path], video_models: Path) -> None:
    plain = draw(engine, "tiny-ltx")
    ours = draw(engine, "tiny-ltx", asset(engine, files["ltx"], 0.7))
    assert_same_frames(ours, bare(video_models, "tiny-ltx", files["ltx"], 0.7))
    assert mean_difference(ours, plain) > 3
    assert differ(draw(engine, "tiny-ltx", asset(engine, files["ltx-comfyui"], 0.7)), ours) <= 2  # patchify_proj, adaln_single


def test_misfits_are_refused_by_the_engine(engine: Engine, files: dict[str, Path]) -> None:
    with pytest.raises(EngineUserError, match=r"made for Wan, and the model `tiny-ltx` is LTX-Video"):
        draw(engine, "tiny-ltx", asset(engine, files["wan"]))
    with pytest.raises(EngineUserError, match=r"made for LTX-Video, and the model `tiny-wan` is Wan"):
        draw(engine, "tiny-wan", asset(engine, files["ltx"]))


# --- through the command layer --------------------------------------------------------------------


@pytest.fixture
async def video_bot(settings):  # type: ignore[no-untyped-def]
    from tests.test_service import make_bot

    made = await make_bot(settings.model_copy(update={"models": {m: ModelEntry(source=m) for m in ("tiny", "tiny-wan", "tiny-ltx")}}))
    yield made
    made.worker.executor.shutdown()
    await made.core.db.close()


async def test_upload_and_use_on_wan(video_bot, files: dict[str, Path], video_models: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.test_video_chat import frames_of as clip_frames

    bot = video_bot
    await bot.send("/model tiny-wan")
    [(_, saved)] = await bot.send("/lora upload wfox", attachments=(Attachment("wfox.safetensors", files["wan-kohya"].read_bytes()),))
    assert "Saved the LoRA `wfox`" in saved.text and "for Wan" in saved.text and "It fits your model `tiny-wan`" in saved.text, saved.text
    [(_, refused)] = await bot.send("/lora upload lfox", attachments=(Attachment("l.safetensors", files["ltx"].read_bytes()),))
    assert refused.kind == "error" and "doesn't fit your model `tiny-wan`" in refused.text and "LTX-Video" in refused.text, refused.text
    options = "--seed 3 --steps 4 --cfg 5 --size 64x64 --frames 9 --fps 16"
    [(_, queued)] = await bot.send(f"/video {PROMPT} --lora wfox:0.7 {options}")
    assert queued.kind == "status" and "Skipped" not in queued.text, queued.text
    [(_, done)] = await bot.finish()
    assert differ(clip_frames(done.reply), bare(video_models, "tiny-wan", files["wan-blocks"], 0.7, width=64, height=64)) <= 2
    await bot.send(f"/video {PROMPT} <lora:wfox:0.7> {options}")  # A1111's tag: the LoRA, and out of the text encoded
    [(_, tagged)] = await bot.finish()
    assert differ(clip_frames(tagged.reply), clip_frames(done.reply)) == 0
    [(_, skipped)] = await bot.send(f"/video {PROMPT} --lora wfox:0.7 --model tiny-ltx --frames 9")
    assert "Skipped the LoRA `wfox`, which doesn't fit the model `tiny-ltx`" in skipped.text, skipped.text
    await bot.finish()
