"""The `tiny` model's component configs (generation/models/tiny.py builds it from these). Torch-free, so
that the chat side knows tiny's layer shapes (`generation.models.shapes`) without building it."""

from __future__ import annotations

from typing import Any

BLOCKS = (32, 32, 64, 64)
UNET: dict[str, Any] = {
    "sample_size": 8,
    "block_out_channels": BLOCKS,
    "layers_per_block": 1,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 32,
    "attention_head_dim": 4,
    "norm_num_groups": 8,
}
# Four blocks, as in real SD, so latents are 1/8 of the image (docs/rules.md, pitfalls).
VAE: dict[str, Any] = {
    "block_out_channels": BLOCKS,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 64,
}
TEXT_ENCODER: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "projection_dim": 32,
    "hidden_act": "quick_gelu",
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 49407,
}
