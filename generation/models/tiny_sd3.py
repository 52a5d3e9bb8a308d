"""The tiny Stable Diffusion 3.5 model (`tiny-sd35`), built the way `tiny_dit.py` builds tiny FLUX.1
and Chroma: diffusers' and transformers' real classes at toy sizes (`StableDiffusion3Pipeline`: an
MMDiT `SD3Transformer2DModel`, CLIP-L and CLIP-G `CLIPTextModelWithProjection`s, a T5 encoder, SD3's
16-channel VAE and flow-matching scheduler), built in-process with a fixed seed, saved with
`save_pretrained` and loaded with `from_pretrained` like any real model. So SD3's own paths (three
text encoders, 2x2 patches, real classifier-free guidance with a negative prompt, skip-layer
guidance) run and are tested on a CPU in a fraction of a second, with no GPU and no network. It
draws noise, on purpose.

It is SD 3.5 medium's shape in miniature: dual attention (MMDiT-X) in the first block, RMS QK
norms, the last block context-pre-only, CLIP hidden states (32 + 64 wide) zero-padded to the T5
width (128) as 768 + 1280 are to 4096, pooled CLIP-L + CLIP-G vectors modulating every block.

As with the other tiny models, fresh random weights make a picture nearly blind to its prompt, so
the builder makes it text-sensitive (`_make_text_sensitive`, after `tiny_dit`'s recipe). The CLIP
tokenizers are CLIP's real one (`tiny.clip_vocab`; CLIP-G's pads with "!" as SD3's `tokenizer_2`
does), T5's the small Unigram one trained offline (`tiny_dit.t5_tokenizer`). Builds are
deterministic, byte for byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from generation.models import tiny_config
from generation.models.tiny import pipeline_folder
from generation.models.tiny_dit import _seeded, random_norm_affines, t5_tokenizer

if TYPE_CHECKING:
    from diffusers import StableDiffusion3Pipeline


VERSION = "tiny-sd35-v1"  # the folder name; bump when the recipe changes, so cached copies are rebuilt

# --- configs (the transformer's is in tiny_config.py, torch-free, for the chat side) ------------------------
# CLIP-L is tiny_config.TEXT_ENCODER (32 wide, projection 32, quick_gelu). CLIP-G: wider, plain gelu
# as OpenCLIP bigG; SD3's text_encoder_2 is a CLIPTextModelWithProjection too.
SD3_CLIP_G: dict[str, Any] = {
    **tiny_config.TEXT_ENCODER,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "projection_dim": 64,
    "hidden_act": "gelu",
}
# T5 v1.1 (as SD3's t5-v1_1-xxl), wider than tiny_config's so that the CLIP-L + CLIP-G hidden
# states (32 + 64) fit in its width with zero padding, as 768 + 1280 do in T5-XXL's 4096.
SD3_T5: dict[str, Any] = {**tiny_config.T5_ENCODER, "d_model": 128, "d_ff": 128}
SD3_TRANSFORMER = tiny_config.SD3_TRANSFORMER
# SD3's VAE: FLUX's layout (16 channels, no quant convs, four blocks) with SD3's scale and shift.
SD3_VAE: dict[str, Any] = {**tiny_config.DIT_VAE, "scaling_factor": 1.5305, "shift_factor": 0.0609}
# SD 3.5 medium's and large's scheduler_config.json: a static shift, no dynamic shifting.
SD3_SCHEDULER: dict[str, Any] = {"num_train_timesteps": 1000, "shift": 3.0}


def ensure(models_dir: Path) -> Path:
    """The tiny SD 3.5 diffusers folder under `models_dir` (`<models_dir>/tiny-sd35-v1`), built on
    first use and reused after."""
    return pipeline_folder(models_dir, VERSION, build_pipeline)


def build_pipeline() -> StableDiffusion3Pipeline:
    """The tiny SD 3.5 pipeline, built in-process with a fixed seed (the caller's global RNG state
    is restored afterwards)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer, T5Config, T5EncoderModel

    from generation.models.tiny import clip_vocab

    with _seeded():
        transformer = SD3Transformer2DModel(**SD3_TRANSFORMER)
        vae = AutoencoderKL(**SD3_VAE)
        clip_l = CLIPTextModelWithProjection(CLIPTextConfig(**tiny_config.TEXT_ENCODER))
        clip_g = CLIPTextModelWithProjection(CLIPTextConfig(**SD3_CLIP_G))
        tokenizer_3 = t5_tokenizer()
        t5 = T5EncoderModel(T5Config(vocab_size=len(tokenizer_3), **SD3_T5))
        _make_text_sensitive(transformer, [clip_l, clip_g, t5])
        vocab, merges = clip_vocab()
        return StableDiffusion3Pipeline(
            transformer=transformer,
            scheduler=FlowMatchEulerDiscreteScheduler.from_config(SD3_SCHEDULER),
            vae=vae,
            text_encoder=clip_l.eval(),
            tokenizer=CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77),
            text_encoder_2=clip_g.eval(),
            tokenizer_2=CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77, pad_token="!"),
            text_encoder_3=t5.eval(),
            tokenizer_3=tokenizer_3,
        )


@torch.no_grad()
def _make_text_sensitive(transformer: torch.nn.Module, text_encoders: list[torch.nn.Module]) -> None:
    """Let the prompt reach the picture through random weights (module docstring; tiny_dit's
    `_make_text_sensitive`, whose FLUX-only parts have SD3 counterparts here). Measured on 64x64
    pictures, 4 steps: "a red fox" vs "a blue city at night" differ by ~5 in 255ths at guidance 7
    (~1 at guidance 1, no CFG) without this, ~36 (~30) with it (tests/test_tiny_sd3.py)."""
    for encoder in text_encoders:
        if encoder.config.model_type == "t5":
            # SD3 passes T5's 256 positions unmasked: a zero pad embedding leaves the padding only
            # what attention mixes in from the prompt, and strong attention outputs make it dominate.
            encoder.get_input_embeddings().weight[encoder.config.pad_token_id].zero_()
            for name, module in encoder.named_modules():
                if name.endswith("SelfAttention"):
                    module.o.weight.mul_(5)
        else:  # CLIP: token embeddings at CLIP's scale, as in tiny.py
            encoder.get_input_embeddings().weight.mul_(20)
    for name, module in transformer.named_modules():
        if name.endswith(".attn") and getattr(module, "add_k_proj", None) is not None:  # the joint attention's text keys and values
            module.add_k_proj.weight.mul_(6)
            module.add_v_proj.weight.mul_(6)
    transformer.pos_embed.proj.weight.mul_(0.3)  # the latents' own share of the image stream, against the text's
    transformer.proj_out.weight.mul_(3)  # a velocity of the noise's size, so the prompt moves the latents
    transformer.time_text_embed.text_embedder.linear_1.weight.mul_(4)  # the pooled CLIP-L + CLIP-G vector
    random_norm_affines([transformer, *text_encoders])
