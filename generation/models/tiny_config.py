"""The tiny models' component configs (generation/models/tiny.py builds `tiny` from these, tiny_dit.py
`tiny-flux` and `tiny-chroma`). Torch-free, so that the chat side knows their layer shapes
(`generation.models.shapes`, `dit_shapes`) without building them."""

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

# --- tiny-flux and tiny-chroma (generation/models/tiny_dit.py builds them) ---------------------------
HEAD_DIM = 16
HEADS = 2
TEXT_DIM = 32  # the tiny T5's d_model = the transformer's joint_attention_dim
LATENT_CHANNELS = 16
# FLUX.1-dev's scheduler_config.json. Chroma1-HD's is flow matching with the same dynamic shifting
# (ChromaPipeline always computes `mu` from these keys).
FLOW_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
}
# FLUX.1's VAE (shared by Chroma): 16 latent channels, four blocks (latents 1/8 of the image),
# no quant convs, FLUX's scaling and shift factors.
DIT_VAE: dict[str, Any] = {
    **VAE,
    "latent_channels": LATENT_CHANNELS,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}
T5_ENCODER: dict[str, Any] = {
    "d_model": TEXT_DIM,
    "d_kv": 8,
    "d_ff": 64,
    "num_layers": 2,
    "num_heads": 4,
    "relative_attention_num_buckets": 8,
    "feed_forward_proj": "gated-gelu",  # T5 v1.1, as FLUX's t5-v1_1-xxl
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
}
DIT_TRANSFORMER: dict[str, Any] = {  # shared by FluxTransformer2DModel and ChromaTransformer2DModel
    "patch_size": 1,
    "in_channels": LATENT_CHANNELS * 4,  # 2x2 packed latents
    "num_layers": 1,
    "num_single_layers": 1,
    "attention_head_dim": HEAD_DIM,
    "num_attention_heads": HEADS,
    "joint_attention_dim": TEXT_DIM,
    "axes_dims_rope": (4, 6, 6),  # sums to attention_head_dim
}
FLUX_TRANSFORMER = {**DIT_TRANSFORMER, "pooled_projection_dim": TEXT_ENCODER["hidden_size"], "guidance_embeds": True}
CHROMA_TRANSFORMER = {**DIT_TRANSFORMER, "approximator_num_channels": 16, "approximator_hidden_dim": 32, "approximator_layers": 2}


# The transformers of the tiny SD 3.5, Qwen-Image, Z-Image and FLUX.2 Klein models (built by
# tiny_sd3.py, tiny_qwen.py, tiny_zimage.py and tiny_flux2.py with their text encoders): here, so
# that the chat side knows their layers (`dit_shapes`) without torch. The text widths are those
# of the tiny text encoders the builders make.
SD3_TRANSFORMER: dict[str, Any] = {
    "sample_size": 8,  # latents; the pipelines' default size is sample_size * 8 = 64 px
    "patch_size": 2,
    "in_channels": LATENT_CHANNELS,
    "out_channels": LATENT_CHANNELS,
    "num_layers": 2,
    "attention_head_dim": HEAD_DIM,
    "num_attention_heads": HEADS,
    "joint_attention_dim": 128,  # the tiny T5's d_model
    "caption_projection_dim": HEAD_DIM * HEADS,  # must be the inner width
    "pooled_projection_dim": 96,  # the two tiny CLIPs' projections, concatenated
    "pos_embed_max_size": 32,  # patches a side: up to 32 * 2 * 8 = 512 px
    "dual_attention_layers": (0,),  # SD 3.5 medium: (0, ..., 12); large and SD3.0: ()
    "qk_norm": "rms_norm",  # SD 3.5 (medium and large); SD3.0: None
}
QWEN_TRANSFORMER: dict[str, Any] = {
    "patch_size": 2,
    "in_channels": LATENT_CHANNELS * 4,  # 2x2 packed latents
    "out_channels": LATENT_CHANNELS,
    "num_layers": 2,
    "attention_head_dim": HEAD_DIM,
    "num_attention_heads": HEADS,
    "joint_attention_dim": 32,  # the tiny Qwen2.5-VL's hidden size
    "guidance_embeds": False,  # as Qwen-Image (True raises a TypeError in diffusers 0.42.1)
    "axes_dims_rope": (4, 6, 6),  # frame, height, width; sums to attention_head_dim (real: 16, 56, 56)
}
ZIMAGE_TRANSFORMER: dict[str, Any] = {  # Z-Image-Turbo's transformer/config.json at toy sizes
    "all_patch_size": (2,),
    "all_f_patch_size": (1,),
    "in_channels": LATENT_CHANNELS,
    "dim": 32,  # 2 heads of 16 = sum(axes_dims)
    "n_layers": 2,
    "n_refiner_layers": 1,
    "n_heads": 2,
    "n_kv_heads": 2,
    "norm_eps": 1e-5,
    "qk_norm": True,
    "cap_feat_dim": 32,  # the tiny Qwen3's hidden size
    "rope_theta": 256.0,
    "t_scale": 1000.0,
    "axes_dims": (4, 6, 6),  # caption/frame index, height, width; even, summing to the head size
    "axes_lens": (1536, 512, 512),  # Turbo's: positions up to 1536 (caption <= 512 tokens, then the image)
}
FLUX2_TRANSFORMER: dict[str, Any] = {  # FLUX.2-klein-4B's config, at toy size
    "patch_size": 1,
    "in_channels": 32 * 4,  # FLUX.2's VAE has 32 latent channels; the transformer sees 2x2 patches
    "num_layers": 1,
    "num_single_layers": 1,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": 48,  # the tiny Qwen3's hidden size (16) x its three output layers
    "timestep_guidance_channels": 256,
    "mlp_ratio": 3.0,
    "axes_dims_rope": (4, 4, 4, 4),  # (t, h, w, l); sums to attention_head_dim
    "rope_theta": 2000,
    "guidance_embeds": False,  # Klein has no guidance embedding (FLUX.2-dev has)
}

# The video families' transformers (generation.models.tiny_video builds them; here, torch-free, for the
# chat side's LoRA fit check).
WAN_TRANSFORMER: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 2,
    "attention_head_dim": 16,  # rotary split: 8 for time, 4 each for height and width
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": TEXT_DIM,  # the tiny UMT5's d_model
    "freq_dim": 256,
    "ffn_dim": 64,
    "num_layers": 2,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
}
# Wan 2.2 I2V A14B: the latents, the frame mask (4 channels: one per frame of a latent frame) and the
# given frames' latents; no image embedding (image_dim None).
WAN_I2V_TRANSFORMER: dict[str, Any] = {**WAN_TRANSFORMER, "in_channels": 16 + 4 + 16}
LTX_LATENT_CHANNELS = 16  # LTX-Video's: 128
LTX_TRANSFORMER: dict[str, Any] = {
    "in_channels": LTX_LATENT_CHANNELS,
    "out_channels": LTX_LATENT_CHANNELS,
    "patch_size": 1,
    "patch_size_t": 1,
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "cross_attention_dim": 32,
    "num_layers": 2,
    "caption_channels": TEXT_DIM,  # the tiny T5's d_model
}
