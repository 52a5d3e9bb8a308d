"""The tiny random-weight video models, built as `tiny_dit.py` builds tiny FLUX.1: the real diffusers
and transformers classes at toy sizes, built in-process with a fixed seed, saved with
`save_pretrained` and then loaded with `from_pretrained` like any real model. So the video paths
(Wan's UMT5 prompts, 3D causal VAE and UniPC flow schedule; LTX-Video's 32x compressing VAE with its
decode-time denoising, frame-rate conditioning and condition pipeline) run and are tested on a CPU
in seconds, with no GPU and no network. They draw noise, on purpose.

- `tiny-wan` (`tiny-wan-v1`): Wan 2.1 text-to-video: `WanPipeline` with a `WanTransformer3DModel`,
  an `AutoencoderKLWan` (4 frames and 8x8 pixels to one latent: clips of 4k+1 frames, sizes in 16s),
  a `UMT5EncoderModel` and UniPC with Wan's flow shift of 3 (Wan2.1-T2V's scheduler config).
- `tiny-wan-i2v` (`tiny-wan-i2v-v1`): Wan 2.2 I2V A14B's layout: `WanImageToVideoPipeline` without a
  CLIP image encoder, two experts (`transformer` for the steps above `boundary_ratio` 0.9 of the
  noise, `transformer_2` below), each taking 36 channels (the noisy latents, a 4-channel frame mask
  and the VAE latents of the given frames). Chosen over Wan 2.1's I2V because one model then does
  both image-to-video and first-last-frame: Wan 2.1's I2V reads one frame's CLIP tokens and its FLF2V
  exactly two (generation.models.families.wan), so covering both would take two models.
- `tiny-ltx` (`tiny-ltx-v1`): LTX-Video 0.9.1's layout: `LTXPipeline` with an
  `LTXVideoTransformer3DModel`, an `AutoencoderKLLTXVideo` at LTX's real compression (8 frames and
  32x32 pixels to one latent: 8k+1 frames, sizes in 32s) with timestep conditioning in its decoder,
  a T5 encoder, and LTX 0.9.1's dynamically shifted flow-matching Euler scheduler. Its image-to-video
  and condition pipelines are built from the same weights.

The tokenizers are the small Unigram T5 one trained offline (`tiny_dit.t5_tokenizer`): UMT5's and
T5's share T5's special tokens (`<pad>` 0, `</s>` 1). As with the other tiny models, fresh random
weights leave a clip nearly blind to its prompt, so the builders make them text-sensitive
(`_make_text_sensitive`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from generation.models import tiny_config
from generation.models.tiny import pipeline_folder
from generation.models.tiny_config import LTX_LATENT_CHANNELS, LTX_TRANSFORMER, WAN_I2V_TRANSFORMER, WAN_TRANSFORMER
from generation.models.tiny_dit import _seeded, random_norm_affines, t5_tokenizer

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

WAN_VERSION = "tiny-wan-v1"  # folder names; bump one when its recipe changes, so copies are rebuilt
WAN_I2V_VERSION = "tiny-wan-i2v-v1"
LTX_VERSION = "tiny-ltx-v1"

# Wan2.1-T2V-1.3B-Diffusers' scheduler_config.json (UniPC with flow sigmas, flow shift 3 for 480p).
WAN_SCHEDULER: dict[str, Any] = {
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "disable_corrector": [],
    "dynamic_thresholding_ratio": 0.995,
    "final_sigmas_type": "zero",
    "flow_shift": 3.0,
    "lower_order_final": True,
    "num_train_timesteps": 1000,
    "predict_x0": True,
    "prediction_type": "flow_prediction",
    "rescale_betas_zero_snr": False,
    "sample_max_value": 1.0,
    "solver_order": 2,
    "solver_p": None,
    "solver_type": "bh2",
    "steps_offset": 0,
    "thresholding": False,
    "timestep_spacing": "linspace",
    "trained_betas": None,
    "use_beta_sigmas": False,
    "use_exponential_sigmas": False,
    "use_flow_sigmas": True,
    "use_karras_sigmas": False,
}
# Wan 2.1's VAE layout (four levels, three spatial and two temporal down-samplings), narrow and shallow.
WAN_VAE: dict[str, Any] = {
    "base_dim": 16,
    "z_dim": 16,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 1,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
}
# Wan 2.2 I2V A14B's two experts split at 0.9 of the noise (its transformers' configs: tiny_config).
WAN_I2V_BOUNDARY = 0.9
UMT5_ENCODER: dict[str, Any] = {**tiny_config.T5_ENCODER}

# LTX-Video 0.9.1's scheduler_config.json: flow matching, shifted by the clip's size, stretched to 0.1.
LTX_SCHEDULER: dict[str, Any] = {
    "base_image_seq_len": 1024,
    "base_shift": 0.95,
    "invert_sigmas": False,
    "max_image_seq_len": 4096,
    "max_shift": 2.05,
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "shift_terminal": 0.1,
    "use_beta_sigmas": False,
    "use_dynamic_shifting": True,
    "use_exponential_sigmas": False,
    "use_karras_sigmas": False,
}
# LTX-Video's VAE at its real compression: 4x4 pixel patches, then three down-samplings in space and
# time (32x32 pixels and 8 frames to one latent), one block each, narrow; its 0.9.1 decoder, which
# is conditioned on a timestep (it denoises while decoding).
LTX_VAE: dict[str, Any] = {
    "latent_channels": LTX_LATENT_CHANNELS,
    "block_out_channels": (16, 16, 16, 16),
    "decoder_block_out_channels": (16, 16, 16, 16),
    "layers_per_block": (1, 1, 1, 1, 1),
    "decoder_layers_per_block": (1, 1, 1, 1, 1),
    "spatio_temporal_scaling": (True, True, True, False),
    "decoder_spatio_temporal_scaling": (True, True, True, False),
    "decoder_inject_noise": (False, False, False, False, False),
    "upsample_residual": (False, False, False, False),
    "upsample_factor": (1, 1, 1, 1),
    "timestep_conditioning": True,
    "patch_size": 4,
    "patch_size_t": 1,
    "encoder_causal": True,
    "decoder_causal": False,
}


def ensure_wan(models_dir: Path) -> Path:
    """The tiny Wan 2.1 text-to-video folder under `models_dir`, built on first use."""
    return pipeline_folder(models_dir, WAN_VERSION, build_wan)


def ensure_wan_i2v(models_dir: Path) -> Path:
    """The tiny Wan 2.2 image-to-video (and first-last-frame) folder under `models_dir`."""
    return pipeline_folder(models_dir, WAN_I2V_VERSION, build_wan_i2v)


def ensure_ltx(models_dir: Path) -> Path:
    """The tiny LTX-Video folder under `models_dir`, built on first use."""
    return pipeline_folder(models_dir, LTX_VERSION, build_ltx)


def build_wan() -> DiffusionPipeline:
    """The tiny `WanPipeline` (Wan 2.1 T2V's layout), built with a fixed seed."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

    with _seeded():
        text_encoder, tokenizer = _umt5()
        vae = AutoencoderKLWan(**WAN_VAE)
        transformer = WanTransformer3DModel(**WAN_TRANSFORMER)
        _make_text_sensitive([transformer], text_encoder)
        return WanPipeline(
            tokenizer=tokenizer,
            text_encoder=text_encoder.eval(),
            vae=vae.eval(),
            scheduler=UniPCMultistepScheduler.from_config(WAN_SCHEDULER),
            transformer=transformer.eval(),
        )


def build_wan_i2v() -> DiffusionPipeline:
    """The tiny `WanImageToVideoPipeline` (Wan 2.2 I2V A14B's layout: two experts, no image encoder)."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel

    with _seeded():
        text_encoder, tokenizer = _umt5()
        vae = AutoencoderKLWan(**WAN_VAE)
        _make_image_sensitive(vae)
        high_noise = WanTransformer3DModel(**WAN_I2V_TRANSFORMER)
        low_noise = WanTransformer3DModel(**WAN_I2V_TRANSFORMER)
        _make_text_sensitive([high_noise, low_noise], text_encoder)
        return WanImageToVideoPipeline(
            tokenizer=tokenizer,
            text_encoder=text_encoder.eval(),
            vae=vae.eval(),
            scheduler=UniPCMultistepScheduler.from_config(WAN_SCHEDULER),
            transformer=high_noise.eval(),
            transformer_2=low_noise.eval(),
            boundary_ratio=WAN_I2V_BOUNDARY,
        )


def build_ltx() -> DiffusionPipeline:
    """The tiny `LTXPipeline` (LTX-Video 0.9.1's layout), built with a fixed seed."""
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline, LTXVideoTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    with _seeded():
        tokenizer = t5_tokenizer()
        text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), **tiny_config.T5_ENCODER))
        vae = AutoencoderKLLTXVideo(**LTX_VAE)
        transformer = LTXVideoTransformer3DModel(**LTX_TRANSFORMER)
        _make_text_sensitive([transformer], text_encoder)
        _make_image_sensitive(vae)
        return LTXPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler.from_config(LTX_SCHEDULER),
            vae=vae.eval(),
            text_encoder=text_encoder.eval(),
            tokenizer=tokenizer,
            transformer=transformer.eval(),
        )


def _umt5():  # type: ignore[no-untyped-def]
    """A tiny UMT5 encoder (Wan's text encoder class) and the tiny T5 tokenizer (vocab sized to it)."""
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = t5_tokenizer()
    return UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), **UMT5_ENCODER)), tokenizer


@torch.no_grad()
def _make_text_sensitive(transformers: list[torch.nn.Module], text_encoder: torch.nn.Module) -> None:
    """Let the prompt reach the frames through random weights (module docstring; tiny_dit's recipe
    for the cross-attention families): token embeddings well above the random layers' outputs,
    sharp attention to particular prompt tokens (keys are RMS-normed: their norm's weight) with
    strong values and outputs, sharper self-attention, the latents' own share of the tokens small against what attention
    brings, a velocity of the noise's size, random affine parameters on the norms. Measured on 32x32
    clips of 9 frames, 4 steps: "a red fox in the snow" vs "the blue city at night" differ by ~2 in
    255ths on tiny-wan without this, ~26 with it."""
    random_norm_affines([*transformers, text_encoder])
    text_encoder.get_input_embeddings().weight.mul_(20)
    for transformer in transformers:
        for name, module in transformer.named_modules():
            if name.endswith("attn1"):  # the frames' own attention: sharper, so time and position tell more
                module.norm_q.weight.mul_(2)
                module.norm_k.weight.mul_(2)
            if name.endswith("attn2"):  # the frames' cross-attention to the prompt
                module.norm_k.weight.mul_(4)
                module.to_v.weight.mul_(6)
                module.to_out[0].weight.mul_(3)
        embed = getattr(transformer, "patch_embedding", None) or transformer.proj_in  # Wan's, LTX-Video's
        embed.weight[:, : transformer.config.out_channels].mul_(0.3)  # the noisy latents (Wan I2V's frames follow)
        transformer.proj_out.weight.mul_(3)


@torch.no_grad()
def _make_image_sensitive(vae: torch.nn.Module) -> None:
    """A random VAE encoder is nearly blind to its input (its norms flatten it): two random pictures'
    Wan latents differed by 0.04 where they spread 0.16, so a given first or last frame barely
    reached the clip. A strong first and last convolution make a picture's latents its own (~0.8
    apart, spread ~1.6, as real latents spread before their per-channel normalisation). Measured on
    tiny-wan-i2v, 32x32, 9 frames, 4 steps: two first frames give clips ~20/255 apart (~0.5 without
    this); a last frame or none, ~1.3 apart in the mean and up to ~15 (~0.3 and 3 without)."""
    first, last = (getattr(conv, "conv", conv) for conv in (vae.encoder.conv_in, vae.encoder.conv_out))  # LTX's wrap a Conv3d
    first.weight.mul_(5)
    last.weight.mul_(20)
    last.bias.mul_(20)
    # Wan's encoder halves time twice with causal convolutions over 3 frames: with random taps the
    # newest frame of each 4 barely counted (a last frame after empty ones moved its latent by 0.06,
    # where one picture alone moves by 1.3), so a first-last-frame clip hardly saw its last frame.
    for name, module in vae.encoder.named_modules():
        if name.endswith("time_conv"):
            module.weight[:, :, -1].mul_(10)  # the newest frame's tap (~1.2 then)
