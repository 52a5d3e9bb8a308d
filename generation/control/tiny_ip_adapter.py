"""The built-in tiny IP-Adapter of the tiny model: a tiny `CLIPVisionModelWithProjection` (random
weights, the real class) and a random IP-Adapter state dict in the layout diffusers'
`load_ip_adapter` reads (`image_proj.proj.*`, `image_proj.norm.*`, `ip_adapter.<k>.to_k_ip.weight`,
`ip_adapter.<k>.to_v_ip.weight` with k = 1, 3, 5, ... for each cross-attention layer), saved once
under the models folder and loaded through the same code as a real one.

A real IP-Adapter's image keys and values start near zero only in training; random ones at the
default init barely move the tiny UNet, so they are scaled up (`IP_SCALE`) until a reference
visibly changes the picture.
"""

from __future__ import annotations

from pathlib import Path

import torch

from generation.models import tiny_config
from generation.models.tiny import SEED, build_atomically

VERSION = "tiny-ip-adapter-v1"  # bump when the recipe changes
WEIGHT_NAME = "ip-adapter.safetensors"
ENCODER_FOLDER = "image_encoder"
IMAGE_SIZE = 32
IMAGE_TOKENS = 4  # IP-Adapter's ImageProjection: 4 tokens
IP_SCALE = 3.0


def ensure_tiny_ip_adapter(models_dir: Path) -> Path:
    """The folder of the tiny IP-Adapter (`ip-adapter.safetensors`, `image_encoder/`), built once."""
    target = Path(models_dir) / VERSION
    if not (target / WEIGHT_NAME).exists():
        build_atomically(target, _save)
    return target


def _save(folder: Path) -> None:
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    folder.mkdir(parents=True)
    state = torch.random.get_rng_state()
    torch.manual_seed(SEED + 300)
    try:
        config = CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=37,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=IMAGE_SIZE,
            patch_size=8,
        )
        CLIPVisionModelWithProjection(config).save_pretrained(folder / ENCODER_FOLDER, safe_serialization=True)
        save_file(_state_dict(config.projection_dim), str(folder / WEIGHT_NAME))
    finally:
        torch.random.set_rng_state(state)


def _state_dict(embed_dim: int) -> dict[str, torch.Tensor]:
    unet = tiny_config.UNET
    cross = int(unet["cross_attention_dim"])
    state = {
        "image_proj.proj.weight": torch.randn(IMAGE_TOKENS * cross, embed_dim) / embed_dim**0.5,
        "image_proj.proj.bias": torch.zeros(IMAGE_TOKENS * cross),
        "image_proj.norm.weight": 1 + 0.2 * torch.randn(cross),
        "image_proj.norm.bias": 0.2 * torch.randn(cross),
    }
    for key_id, hidden in enumerate(_cross_attention_widths(), start=0):
        for name in ("to_k_ip", "to_v_ip"):
            weight = IP_SCALE * torch.randn(hidden, cross) / cross**0.5
            state[f"ip_adapter.{2 * key_id + 1}.{name}.weight"] = weight.contiguous()
    return state


def _cross_attention_widths() -> list[int]:
    """The width of each cross-attention layer of the tiny UNet, in the order diffusers lists its
    attention processors (down blocks, up blocks, mid block): the order of `load_ip_adapter`'s keys."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(**tiny_config.UNET)
    widths = []
    channels = unet.config.block_out_channels
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            widths.append(channels[-1])
        elif name.startswith("up_blocks"):
            widths.append(list(reversed(channels))[int(name[len("up_blocks.")])])
        else:
            widths.append(channels[int(name[len("down_blocks.")])])
    return widths
