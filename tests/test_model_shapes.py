"""A model's layers from its configs alone (generation.models.shapes), checked layer for layer
against the real classes: diffusers' UNet2DConditionModel and transformers' CLIP text models,
instantiated on the meta device (no weights) from the same configs, for SD 1.5, SD 2.1, SDXL,
a UNet with per-block options, and both tiny models. kohya's SDXL (SGM) names are checked
against diffusers' own conversion of them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from accelerate import init_empty_weights

from config.models import ModelEntry
from generation.models import tiny_config
from generation.models.files import describe_model, model_shapes
from generation.models.shapes import (
    Layer,
    UnsupportedConfig,
    shapes_from_configs,
    shapes_of_folder,
    text_encoder_layers,
    unet_layers,
)
from generation.models.tiny import TINY_VERSION

# The public configs of the real models (unet/config.json and text_encoder*/config.json, the keys that matter).
SD15_UNET = {
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 64,
}
SD21_UNET = {
    **SD15_UNET,
    "attention_head_dim": [5, 10, 20, 20],
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
    "sample_size": 96,
}
SDXL_UNET = {
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "layers_per_block": 2,
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "use_linear_projection": True,
}
# Per-block lists, only-cross-attention, scale-shift time embeddings and a time condition: the odd corners.
ODD_UNET = {
    "block_out_channels": [32, 48],
    "layers_per_block": [1, 2],
    "cross_attention_dim": [24, 40],
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "attention_head_dim": [4, 8],
    "transformer_layers_per_block": [2, 1],
    "only_cross_attention": [True, False],
    "resnet_time_scale_shift": "scale_shift",
    "time_cond_proj_dim": 16,
    "norm_num_groups": 8,
    "mid_block_type": None,
}
CLIP_L = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12, "projection_dim": 768}
OPEN_CLIP_H = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 23, "num_attention_heads": 16, "projection_dim": 512}
OPEN_CLIP_G = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "projection_dim": 1280,
    "architectures": ["CLIPTextModelWithProjection"],
}


def real_layers(model: torch.nn.Module) -> dict[str, tuple]:
    found = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            found[name] = ("linear", module.in_features, module.out_features, (1, 1))
        elif isinstance(module, torch.nn.Conv2d):
            found[name] = ("conv", module.in_channels, module.out_channels, tuple(module.kernel_size))
    return found


def as_tuples(layers: dict[str, Layer]) -> dict[str, tuple]:
    return {path: (layer.kind, layer.inputs, layer.outputs, layer.kernel) for path, layer in layers.items()}


def meta_unet(config: dict):  # type: ignore[no-untyped-def]
    from diffusers import UNet2DConditionModel

    with init_empty_weights():
        return UNet2DConditionModel.from_config(config)


@pytest.mark.parametrize(
    "config", [SD15_UNET, SD21_UNET, SDXL_UNET, ODD_UNET, tiny_config.UNET], ids=["sd15", "sd21", "sdxl", "odd", "tiny"]
)
def test_unet_layers_are_the_real_unets(config: dict) -> None:
    unet = meta_unet(config)
    assert as_tuples(unet_layers(dict(unet.config))) == real_layers(unet)
    assert as_tuples(unet_layers(config)) == real_layers(unet)  # the saved config and the short one agree


def test_the_tiny_xl_unet_and_text_encoders(tmp_path: Path) -> None:
    from tests.support.tiny_xl import build_tiny_xl

    pipe = build_tiny_xl()
    pipe.save_pretrained(tmp_path / "xl")
    shapes = shapes_of_folder(tmp_path / "xl")
    assert shapes is not None and (shapes.context_width, shapes.text_widths) == (64, (32, 32))
    for component in ("unet", "text_encoder", "text_encoder_2"):
        assert as_tuples(shapes.layers[component]) == real_layers(getattr(pipe, component)), component


@pytest.mark.parametrize(
    ("config", "with_projection"), [(CLIP_L, False), (OPEN_CLIP_H, False), (OPEN_CLIP_G, True), (tiny_config.TEXT_ENCODER, False)]
)
def test_text_encoder_layers_are_the_real_clip(config: dict, with_projection: bool) -> None:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    with init_empty_weights():
        model = cls(CLIPTextConfig(**{k: v for k, v in config.items() if k != "architectures"}))
    assert as_tuples(text_encoder_layers(config)) == real_layers(model)


def test_sdxl_original_block_names_map_as_diffusers_maps_them() -> None:
    """Every UNet layer's SGM alias, written as kohya writes SDXL LoRA keys, is converted by
    diffusers' own functions to that very layer."""
    from diffusers.loaders.lora_conversion_utils import (
        _convert_non_diffusers_lora_to_diffusers,
        _maybe_map_sgm_blocks_to_diffusers,
    )

    unet = meta_unet(SDXL_UNET)
    layers = unet_layers(dict(unet.config))
    state = {}
    for layer in layers.values():
        key = "lora_unet_" + layer.sgm.replace(".", "_")  # type: ignore[union-attr]
        state |= {
            f"{key}.lora_down.weight": torch.zeros(1, 1),
            f"{key}.lora_up.weight": torch.zeros(1, 1),
            f"{key}.alpha": torch.tensor(1.0),
        }
    converted, _ = _convert_non_diffusers_lora_to_diffusers(_maybe_map_sgm_blocks_to_diffusers(state, unet.config))
    paths = set()
    for key in converted:
        if key.endswith("down.weight"):
            path = re.sub(r"\.processor\.(to_[qkv])_lora\.down\.weight$", r".\1", key[len("unet.") :])
            path = re.sub(r"\.processor\.to_out_lora\.down\.weight$", ".to_out.0", path)
            paths.add(re.sub(r"\.lora\.down\.weight$", "", path))
    assert paths == set(layers) and all(layer.sgm for layer in layers.values())
    shapes = shapes_from_configs(SDXL_UNET, [CLIP_L, OPEN_CLIP_G])
    found = shapes.find("unet", "input_blocks_4_1_transformer_blocks_1_attn2_to_k")
    assert found is not None and found[0] == "down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k" and found[1].inputs == 2048


def test_architectures_and_descriptions(models_dir: Path) -> None:
    assert shapes_from_configs(SD15_UNET, [CLIP_L]).describe() == "SD 1.x"
    assert shapes_from_configs(SD21_UNET, [OPEN_CLIP_H]).describe() == "SD 2.x"
    assert shapes_from_configs(SDXL_UNET, [CLIP_L, OPEN_CLIP_G]).describe() == "SDXL"
    odd = shapes_from_configs(ODD_UNET, [{**CLIP_L, "hidden_size": 24}])
    assert (
        odd.architecture is None and odd.describe() == "a custom model (24-wide text features, a 24-wide text encoder, UNet 32–48 channels)"
    )
    tiny = ModelEntry(source="tiny")
    assert (
        describe_model(tiny) == "SD 1.x layout at a non-standard size (32-wide text features, a 32-wide text encoder, UNet 32–64 channels)"
    )
    built = shapes_of_folder(models_dir / TINY_VERSION)  # the tiny model as saved: the same layers as its configs say
    assert built is not None and built.layers == model_shapes(tiny).layers  # type: ignore[union-attr]
    assert model_shapes(ModelEntry(source=str(models_dir / TINY_VERSION))) is not None


def test_unknown_configs_give_no_shapes(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedConfig, match="UNetMidBlock2DSimpleCrossAttn"):
        unet_layers({**SD15_UNET, "mid_block_type": "UNetMidBlock2DSimpleCrossAttn"})
    with pytest.raises(UnsupportedConfig, match="class_embed_type"):
        unet_layers({**SD15_UNET, "class_embed_type": "timestep"})
    folder = tmp_path / "odd"
    for component, config in (("unet", {**SD15_UNET, "down_block_types": ["SimpleCrossAttnDownBlock2D"] * 4}), ("text_encoder", CLIP_L)):
        (folder / component).mkdir(parents=True)
        (folder / component / "config.json").write_text(json.dumps(config))
    assert shapes_of_folder(folder) is None  # the caller falls back to the architecture check
    assert shapes_of_folder(tmp_path / "nothing-here") is None
    assert model_shapes(ModelEntry(source=str(tmp_path / "model.safetensors"))) is None  # a single file without --config
