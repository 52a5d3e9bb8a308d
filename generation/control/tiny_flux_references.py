"""The built-in tiny image-reference models of `tiny-flux` (random weights, the real classes),
saved once under the models folder and loaded through the same code as real ones
(generation.control.flux_references):

- a FLUX.1 IP-Adapter in XLabs' layout, as `XLabs-AI/flux-ip-adapter` publishes it and diffusers'
  FLUX `load_ip_adapter` converts it (`ip_adapter_proj_model.proj.*` / `.norm.*`: 4 image tokens of
  the T5 width; `double_blocks.<i>.processor.ip_adapter_double_stream_{k,v}_proj.*` for each double
  block), beside a tiny `CLIPVisionModelWithProjection` (`image_encoder/`);
- a FLUX.1 Redux as `FLUX.1-Redux-dev` is laid out (a `FluxPriorReduxPipeline` folder without text
  encoders: a tiny `SiglipVisionModel`, its `SiglipImageProcessor` and a `ReduxImageEncoder` whose
  output width is the tiny T5's). Its SigLIP reads 54 px in 2 px patches: 27 x 27 = 729 image
  tokens, as the real one's 384 px in 14 px patches, so the picture's tokens outnumber the
  prompt's 512 as they do in FLUX.1 (with 16 they barely reached the tiny picture).

Random keys and values at the default init barely move the tiny transformer, so they are scaled up
(`IP_SCALE`, `REDUX_SCALE`) until a reference visibly changes the picture (~20/255 on average at
the default weight on 64 px pictures).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from generation.models import tiny_config
from generation.models.tiny import build_atomically
from generation.models.tiny_dit import SEED

IP_ADAPTER_VERSION = "tiny-flux-ip-adapter-v1"  # bump when a recipe changes
REDUX_VERSION = "tiny-flux-redux-v1"
WEIGHT_NAME = "ip_adapter.safetensors"  # XLabs' file name
ENCODER_FOLDER = "image_encoder"
IMAGE_TOKENS = 4  # XLabs' ImageProjection: 4 tokens
IP_SCALE = 2.0
REDUX_SCALE = 4.0
REDUX_IMAGE_SIZE, REDUX_PATCH = 54, 2


def ensure_tiny_flux_ip_adapter(models_dir: Path) -> Path:
    """The folder of the tiny FLUX.1 IP-Adapter (`ip_adapter.safetensors`, `image_encoder/`), built once."""
    target = Path(models_dir) / IP_ADAPTER_VERSION
    if not (target / WEIGHT_NAME).exists():
        build_atomically(target, _save_ip_adapter)
    return target


def ensure_tiny_flux_redux(models_dir: Path) -> Path:
    """The `FluxPriorReduxPipeline` folder of the tiny FLUX.1 Redux, built once."""
    target = Path(models_dir) / REDUX_VERSION
    if not (target / "model_index.json").exists():
        build_atomically(target, _save_redux)
    return target


def _seeded_build(offset: int, save: Callable[[], None]) -> None:
    """`save()` with torch's RNG seeded (a build is the same every time), the caller's state kept."""
    state = torch.random.get_rng_state()
    torch.manual_seed(SEED + offset)
    try:
        save()
    finally:
        torch.random.set_rng_state(state)


def _save_ip_adapter(folder: Path) -> None:
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    def save() -> None:
        config = CLIPVisionConfig(
            hidden_size=32, intermediate_size=37, projection_dim=32, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
        )
        CLIPVisionModelWithProjection(config).save_pretrained(folder / ENCODER_FOLDER, safe_serialization=True)
        save_file(_xlabs_state_dict(config.projection_dim), str(folder / WEIGHT_NAME))

    folder.mkdir(parents=True)
    _seeded_build(400, save)


def _xlabs_state_dict(embed_dim: int) -> dict[str, torch.Tensor]:
    """Random FLUX.1 IP-Adapter weights in XLabs' key layout, sized for tiny-flux's transformer."""
    text = tiny_config.TEXT_DIM  # joint_attention_dim: the image tokens are read as T5's are
    inner = tiny_config.HEADS * tiny_config.HEAD_DIM
    state = {
        "ip_adapter_proj_model.proj.weight": torch.randn(IMAGE_TOKENS * text, embed_dim) / embed_dim**0.5,
        "ip_adapter_proj_model.proj.bias": torch.zeros(IMAGE_TOKENS * text),
        "ip_adapter_proj_model.norm.weight": 1 + 0.2 * torch.randn(text),
        "ip_adapter_proj_model.norm.bias": 0.2 * torch.randn(text),
    }
    for block in range(int(tiny_config.DIT_TRANSFORMER["num_layers"])):
        for which in ("k", "v"):
            prefix = f"double_blocks.{block}.processor.ip_adapter_double_stream_{which}_proj"
            state[f"{prefix}.weight"] = (IP_SCALE * torch.randn(inner, text) / text**0.5).contiguous()
            state[f"{prefix}.bias"] = torch.zeros(inner)
    return state


def _save_redux(folder: Path) -> None:
    from diffusers import FluxPriorReduxPipeline
    from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    def save() -> None:
        config = SiglipVisionConfig(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=REDUX_IMAGE_SIZE,
            patch_size=REDUX_PATCH,
        )
        embedder = ReduxImageEncoder(redux_dim=config.hidden_size, txt_in_features=tiny_config.TEXT_DIM)
        with torch.no_grad():
            embedder.redux_down.weight.mul_(REDUX_SCALE)
        prior = FluxPriorReduxPipeline(
            image_encoder=SiglipVisionModel(config).eval(),
            feature_extractor=SiglipImageProcessor(size={"height": REDUX_IMAGE_SIZE, "width": REDUX_IMAGE_SIZE}),
            image_embedder=embedder,
        )
        prior.save_pretrained(folder, safe_serialization=True)

    _seeded_build(500, save)
