"""The tiny random SDXL the prompt, region and adapter tests share: diffusers' own test recipe
with CLIP's real tokenizer, made text-sensitive (docs/rules.md, pitfalls)."""

from __future__ import annotations

import torch

from generation.models.tiny import clip_vocab


def build_tiny_xl(*, strong_cross_attention: bool = False):  # type: ignore[no-untyped-def]
    """A tiny random SDXL pipeline; the second tokenizer pads with "!" as SDXL's does.
    `strong_cross_attention` scales the UNet's cross-attention keys and values by 4, so that
    LoRAs and embeddings visibly change the picture."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,
        cross_attention_dim=64,
        norm_num_groups=1,
    )
    if strong_cross_attention:
        with torch.no_grad():
            for name, module in unet.named_modules():
                if name.endswith("attn2"):
                    module.to_k.weight.mul_(4)
                    module.to_v.weight.mul_(4)
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        sample_size=128,
    )
    config = CLIPTextConfig(
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=5,
        vocab_size=49408,
        hidden_act="gelu",
        projection_dim=32,
    )
    text_encoder, text_encoder_2 = CLIPTextModel(config), CLIPTextModelWithProjection(config)
    with torch.no_grad():
        for encoder in (text_encoder, text_encoder_2):
            encoder.text_model.embeddings.token_embedding.weight.mul_(50)  # text-sensitive (docs/rules.md)
    vocab, merges = clip_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    tokenizer_2 = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77, pad_token="!")
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"),
    )
