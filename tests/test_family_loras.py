"""Users' LoRAs on SD 3.5, Qwen-Image, Z-Image and FLUX.2 Klein: each transformer's layers computed
from its config (generation.models.dit_layers, checked here against diffusers' classes on the meta
device), files recognised from their header in the formats each family's diffusers loader converts
(diffusers/peft, ComfyUI/ai-toolkit, kohya), fit-checked against the model, and drawn through the
engine and the chat equal to bare diffusers (`load_lora_weights` + `set_adapters`) for the same seed.
Every file is built here, on the tiny models (seconds on a CPU)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from commands.frame.types import Attachment
from config import ModelEntry, ModelRegistry
from generation.assets.family_loras import transformer_family
from generation.assets.fit import lora_misfit
from generation.engine import Engine
from generation.errors import EngineUserError
from generation.jobs import run_job
from generation.models import tiny_config, tiny_flux2, tiny_qwen, tiny_sd3, tiny_zimage
from generation.models.dit_shapes import tiny_shapes
from generation.models.loader import ModelCache
from generation.spec import AssetRef
from storage.blobs import LocalBlobStore
from tests.support.family_loras import info_of, layer_tables_match, pairs, save_loras, to_comfyui, to_kohya, to_original
from tests.support.flux_loras import make_flux_lora
from tests.test_families import FOLDERS, PIPELINES, guided, pixels, spec

MODELS = ("tiny-sd3", "tiny-qwen", "tiny-zimage", "tiny-flux2")
CLASSES = {
    "sd3": "SD3Transformer2DModel",
    "qwen": "QwenImageTransformer2DModel",
    "zimage": "ZImageTransformer2DModel",
    "flux2": "Flux2Transformer2DModel",
}
TINY = {
    "sd3": tiny_config.SD3_TRANSFORMER,
    "qwen": tiny_config.QWEN_TRANSFORMER,
    "zimage": tiny_config.ZIMAGE_TRANSFORMER,
    "flux2": tiny_config.FLUX2_TRANSFORMER,
}
PROMPT = "a red fox in the snow"
# kohya's FLUX.2 conversion maps the blocks and the embedders, not the shared modulation or norm_out.
FLUX2_KOHYA_LEAVES = r".*(?:modulation|norm_out).*"


@pytest.fixture(scope="module", autouse=True)
def _threads(one_torch_thread):  # type: ignore[no-untyped-def]
    yield


def differ(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a - b).max())


# --- the transformers' layers, from their configs ------------------------------------------------


@pytest.mark.parametrize(
    ("family", "config"),
    [
        *((family, config) for family, config in TINY.items()),
        *((family, {}) for family in CLASSES),  # the real models' sizes (the classes' defaults)
        ("sd3", {"num_layers": 24, "num_attention_heads": 24, "dual_attention_layers": tuple(range(13)), "qk_norm": "rms_norm"}),
        (
            "zimage",
            {"dim": 64, "n_heads": 4, "n_kv_heads": 2, "cap_feat_dim": 48, "n_layers": 1, "n_refiner_layers": 1, "axes_dims": (4, 6, 6)},
        ),
        ("flux2", {"guidance_embeds": False, "num_attention_heads": 24, "num_layers": 5, "num_single_layers": 20}),
    ],
)
def test_the_layer_tables_are_the_real_classes_layers(family: str, config: dict) -> None:
    layer_tables_match(CLASSES[family], family, config)


def test_the_tiny_transformer_configs_match_their_text_encoders() -> None:
    """tiny_config holds the tiny transformers' configs (torch-free, for the chat side); their text
    widths must be those of the text encoders the builders make."""
    assert tiny_config.SD3_TRANSFORMER["joint_attention_dim"] == tiny_sd3.SD3_T5["d_model"]
    clip_widths = tiny_config.TEXT_ENCODER["projection_dim"] + tiny_sd3.SD3_CLIP_G["projection_dim"]
    assert tiny_config.SD3_TRANSFORMER["pooled_projection_dim"] == clip_widths
    assert tiny_config.QWEN_TRANSFORMER["joint_attention_dim"] == tiny_qwen.QWEN_TEXT_DIM
    assert tiny_config.ZIMAGE_TRANSFORMER["cap_feat_dim"] == tiny_zimage.QWEN3_DIM
    assert tiny_config.FLUX2_TRANSFORMER["joint_attention_dim"] == tiny_flux2.QWEN3_HIDDEN * len(tiny_flux2.QWEN3_OUT_LAYERS)
    assert tiny_config.FLUX2_TRANSFORMER["in_channels"] == tiny_flux2.FLUX2_LATENT_CHANNELS * 4


# --- the files ------------------------------------------------------------------------------------


def transformer(models_dir: Path, model: str):  # type: ignore[no-untyped-def]
    import diffusers

    folder = FOLDERS[model](models_dir)
    cls = getattr(diffusers, CLASSES[model.removeprefix("tiny-")])
    return cls.from_pretrained(folder / "transformer")


@pytest.fixture(scope="module")
def files(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The LoRA files of these tests, by name: `<family>` (diffusers), `<family>-kohya`,
    `<family>-comfyui`, and the odd ones."""
    folder = tmp_path_factory.mktemp("family-loras")
    made: dict[str, dict[str, torch.Tensor]] = {}
    for model in MODELS:
        family = model.removeprefix("tiny-")
        net = transformer(models_dir, model)
        made[family] = make_flux_lora(net, 7)
        if family == "flux2":
            made["flux2-comfyui"] = to_comfyui(to_original(made[family], family, net))
            made["flux2-blocks"] = make_flux_lora(net, 7, exclude=FLUX2_KOHYA_LEAVES)
            made["flux2-kohya"] = to_kohya(to_original(made["flux2-blocks"], family, net))
        elif family == "sd3":  # SAI's names (joint_blocks.N.x_block.attn.qkv)
            made["sd3-comfyui"] = to_comfyui(to_original(made[family], family, net))
            made["sd3-kohya"] = to_kohya(to_original(made[family], family, net))
        else:
            renames = {"attention.to_out.0": "attention.out"} if family == "zimage" else None
            made[f"{family}-comfyui"] = to_comfyui(pairs(made[family]), renames)
            made[f"{family}-kohya"] = to_kohya(pairs(made[family]))
        if family == "qwen":  # with a text encoder's layers, which are left out
            made["qwen-with-text"] = {**made[family], "text_encoder.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(4, 32)}
        made[f"{family}-attention"] = make_flux_lora(
            net, 8, include=r"transformer_blocks\.0\.attn\.to_[qkv]|layers\.0\.attention\.to_[qkv]"
        )
    made["sd3-unknown"] = {  # SAI's names, but a layer SD 3.5's transformer doesn't have
        "lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight": torch.zeros(4, 32),
        "lora_unet_joint_blocks_0_x_block_attn_qkv.lora_up.weight": torch.zeros(96, 4),
        "lora_unet_joint_blocks_0_x_block_attn_lora.lora_down.weight": torch.zeros(4, 32),
        "lora_unet_joint_blocks_0_x_block_attn_lora.lora_up.weight": torch.zeros(32, 4),
    }
    return save_loras(folder, made)


def test_each_familys_files_are_recognised_in_every_format(files: dict[str, Path]) -> None:
    expected = {
        "sd3": ("sd3", "diffusers"),
        "sd3-kohya": ("sd3", "kohya"),
        "sd3-comfyui": ("sd3", "comfyui"),
        "qwen": ("qwen", "diffusers"),
        "qwen-kohya": ("qwen", "kohya"),
        "qwen-comfyui": ("qwen", "comfyui"),
        "zimage": ("zimage", "diffusers"),
        "zimage-kohya": ("zimage", "kohya"),
        "zimage-comfyui": ("zimage", "comfyui"),
        "flux2": ("flux2", "diffusers"),
        "flux2-kohya": ("flux2", "kohya"),  # BFL names with FLUX.2's MLP shapes: not FLUX.1
        "flux2-comfyui": ("flux2", "comfyui"),
        # the joint blocks' attention at a width no family owns: the model decides
        "sd3-attention": (None, "diffusers"),
        "qwen-attention": (None, "diffusers"),
        "zimage-attention": ("zimage", "diffusers"),
    }
    for name, (architecture, fmt) in expected.items():
        info = info_of(files[name])
        assert (info.architecture, info.format, info.components) == (architecture, fmt, ("transformer",)), name
        fused = name in ("flux2-kohya", "flux2-comfyui", "sd3-kohya", "sd3-comfyui")  # q, k, v in one layer: 3 ranks of 4
        assert info.rank == (12 if fused else 4) and info.transformer_width == 32 and info.left_out == 0, name
    with_text = info_of(files["qwen-with-text"])
    assert with_text.left_out == 1 and with_text.modules == info_of(files["qwen"]).modules
    why = lora_misfit(info_of(files["sd3-unknown"]).layers, tiny_shapes("tiny-sd3"), "tiny-sd3", None)
    assert why is not None and "`joint_blocks_0_x_block_attn_lora`, which `tiny-sd3` does not have" in why, why
    # FLUX.1's names are still FLUX.1's (generation.assets.dit_loras)
    assert transformer_family({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": (4, 3072)}) == "flux"
    assert transformer_family({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 320)}) is None  # SD 1.x


@pytest.mark.parametrize("model", MODELS)
def test_the_fit_against_each_transformer(files: dict[str, Path], model: str) -> None:
    family = model.removeprefix("tiny-")
    shapes = tiny_shapes(model)
    for name in (family, f"{family}-comfyui", f"{family}-kohya", f"{family}-attention"):
        if name in files:
            assert lora_misfit(info_of(files[name]).layers, shapes, model, None) is None, name
    for other in MODELS:
        if other == model:
            continue
        why = lora_misfit(info_of(files[family]).layers, tiny_shapes(other), other, "X")
        assert why is not None and why.startswith("it is made for X") and "layer `" in why, (model, other, why)


# --- the engine -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    registry = ModelRegistry([ModelEntry(source=model) for model in MODELS])
    cache = ModelCache(registry, models_dir, torch.device("cpu"), torch.float32, max_loaded=4)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("blobs")))


def asset(engine: Engine, path: Path, weight: float = 1.0) -> AssetRef:
    key = engine.blobs.put(path.read_bytes(), "st")
    return AssetRef(name=path.stem, blob=key, sha256=key.split(".")[0], format="x", weight=weight)


def draw(engine: Engine, model: str, *loras: AssetRef) -> np.ndarray:
    [image] = run_job(engine, spec(model, loras=loras))
    return pixels(image.png)


def bare(models_dir: Path, model: str, lora: Path | None = None, weight: float = 1.0, height: int = 48) -> np.ndarray:
    """Bare diffusers: the family's pipeline, the diffusers file loaded with `load_lora_weights`,
    its weight set with `set_adapters`, the same prompt, seed, steps and guidance as `spec`."""
    import diffusers

    pipe = getattr(diffusers, PIPELINES[model][0]).from_pretrained(FOLDERS[model](models_dir))
    pipe.set_progress_bar_config(disable=True)
    if lora is not None:
        pipe.load_lora_weights(str(lora), adapter_name="theirs")
        pipe.set_adapters(["theirs"], adapter_weights=[weight])
    call = guided(model, prompt=PROMPT, width=64, height=height, num_inference_steps=4)
    return pixels(pipe(generator=torch.Generator("cpu").manual_seed(11), **call).images[0])


@pytest.mark.parametrize("model", MODELS)
def test_every_format_equals_bare_diffusers(engine: Engine, files: dict[str, Path], models_dir: Path, model: str) -> None:
    family = model.removeprefix("tiny-")
    plain = draw(engine, model)
    ours = draw(engine, model, asset(engine, files[family], 0.7))
    assert differ(ours, bare(models_dir, model, files[family], 0.7)) <= 2 and differ(ours, plain) > 20
    for name in (f"{family}-comfyui", f"{family}-kohya"):
        if name in files and name != "flux2-kohya":  # the same LoRA in another format: the same pixels
            assert differ(draw(engine, model, asset(engine, files[name], 0.7)), ours) <= 2, name
    if family == "flux2":  # kohya's FLUX.2 files: the blocks and embedders, as its conversion maps them
        blocks = draw(engine, model, asset(engine, files["flux2-blocks"], 0.7))
        assert differ(draw(engine, model, asset(engine, files["flux2-kohya"], 0.7)), blocks) <= 2 and differ(blocks, plain) > 20
    assert differ(draw(engine, model), plain) == 0  # nothing leaks into the next job


def test_misfits_are_refused_by_the_engine(engine: Engine, files: dict[str, Path]) -> None:
    with pytest.raises(EngineUserError, match=r"made for Qwen-Image, and the model `tiny-zimage` is Z-Image"):
        draw(engine, "tiny-zimage", asset(engine, files["qwen"]))
    with pytest.raises(EngineUserError, match=r"`transformer_blocks.0.attn.to_q`.*doesn't fit|doesn't have|does not have"):
        draw(engine, "tiny-zimage", asset(engine, files["sd3-attention"]))
    with pytest.raises(EngineUserError, match=r"made for FLUX.2 Klein, and the model `tiny-sd3` is SD 3.5"):
        draw(engine, "tiny-sd3", asset(engine, files["flux2"]))
    assert differ(draw(engine, "tiny-zimage"), draw(engine, "tiny-zimage")) == 0


# --- through the command layer --------------------------------------------------------------------


@pytest.fixture
async def family_bot(settings):  # type: ignore[no-untyped-def]
    from tests.test_service import make_bot

    made = await make_bot(settings.model_copy(update={"models": {m: ModelEntry(source=m) for m in ("tiny-qwen", "tiny-zimage")}}))
    yield made
    made.worker.executor.shutdown()
    await made.core.db.close()


async def test_upload_and_use_on_qwen_image(family_bot, files: dict[str, Path], models_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.test_service import pixels as reply_pixels

    bot = family_bot
    await bot.send("/model tiny-qwen")
    [(_, saved)] = await bot.send("/lora upload qfox", attachments=(Attachment("qfox.safetensors", files["qwen-kohya"].read_bytes()),))
    assert "Saved the LoRA `qfox`" in saved.text and "for Qwen-Image" in saved.text and "It fits your model `tiny-qwen`" in saved.text
    [(_, refused)] = await bot.send("/lora upload zfox", attachments=(Attachment("z.safetensors", files["zimage"].read_bytes()),))
    assert refused.kind == "error" and "doesn't fit your model `tiny-qwen`" in refused.text and "Z-Image" in refused.text, refused.text
    options = "--seed 11 --steps 4 --cfg 3.5 --size 64x64"
    [(_, queued)] = await bot.send(f"/imagine {PROMPT} <lora:qfox:0.7> {options}")
    assert queued.kind == "status" and "Skipped" not in queued.text, queued.text
    [(_, done)] = await bot.finish()
    assert differ(reply_pixels(done.reply), bare(models_dir, "tiny-qwen", files["qwen"], 0.7, height=64)) <= 2
    assert 'Lora hashes: "qfox: ' in Image.open(io.BytesIO(Path(done.reply.images[0].path).read_bytes())).text["parameters"]
    [(_, skipped)] = await bot.send(f"/imagine {PROMPT} <lora:qfox:0.7> --model tiny-zimage {options}")
    assert "Skipped the LoRA `qfox`, which doesn't fit the model `tiny-zimage`" in skipped.text, skipped.text
    await bot.finish()
