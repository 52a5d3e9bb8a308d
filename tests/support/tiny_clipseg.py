"""A tiny random-weight CLIPSeg saved like a real one, for tests of `generation.imaging.segment`.

It has CIDAS/clipseg-rd64-refined's architecture and file layout (CLIPSegForImageSegmentation,
CLIPSegProcessor = CLIP's real tokenizer + a ViTImageProcessor at 352 px with ImageNet
normalisation), shrunk to hidden size 32 and two layers, and saved with `save_pretrained` as
safetensors, so `load_segmenter` loads it through the same path as the real model. Built offline:
the tokenizer comes from `generation.models.tiny.clip_vocab()`.

Fresh weights make a mask nearly blind to its words, so a test that the words matter could pass
with the words ignored (docs/rules.md, pitfalls). The words reach the mask only through the
pooled text embedding (the hidden state at the end-of-text token) and FiLM in the decoder. Scaling
the token embeddings up, as the tiny SD model does, backfires here: the end-of-text token's own
(identical) embedding then swamps its residual stream and every phrase pools to nearly the same
vector. Instead the text attention (values, output) is strengthened so the words flow into that
token, FiLM is strengthened, and the last transposed convolutions are scaled so probabilities
spread over about 0.1..0.9 instead of hugging 0.5. Measured: different words then differ on a
quarter of the pixels at the median threshold (10% with no change, 5% with the embeddings scaled).
"""

from __future__ import annotations

from pathlib import Path

import torch

SEED = 20261127
# A tiny CLIP text tower with the real tokenizer's vocabulary and special tokens; shared with
# tests/support/tiny_text_models.py's CLIP.
TINY_CLIP_TEXT = dict(
    vocab_size=49408,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=77,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)
SIZE = 352  # CLIPSeg's input side; its decoder emits logits at this size


def build_tiny_clipseg(folder: Path) -> Path:
    """Build the tiny CLIPSeg into `folder` (model, tokenizer, image processor) and return it."""
    from transformers import (
        CLIPSegConfig,
        CLIPSegForImageSegmentation,
        CLIPSegProcessor,
        CLIPTokenizer,
        ViTImageProcessor,
    )

    from generation.models.tiny import clip_vocab

    config = CLIPSegConfig(
        text_config=dict(TINY_CLIP_TEXT),
        # The real model's vision tower is ViT-B/16 at 224 px, run at 352 px by interpolating the
        # position embeddings; keep that mismatch so the tiny model exercises the same path.
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=224,
            patch_size=16,
        ),
        projection_dim=32,
        extract_layers=[0, 1],  # one per vision layer (the real model taps layers 3, 6, 9 of 12)
        reduce_dim=16,
        decoder_num_attention_heads=4,
        decoder_intermediate_size=32,
        use_complex_transposed_convolution=True,  # as in the "refined" checkpoint
    )
    state = torch.random.get_rng_state()
    torch.manual_seed(SEED)
    try:
        model = CLIPSegForImageSegmentation(config).eval()
        with torch.no_grad():
            for layer in model.clip.text_model.encoder.layers:
                layer.self_attn.v_proj.weight.mul_(4)
                layer.self_attn.out_proj.weight.mul_(4)
            model.decoder.film_mul.weight.mul_(8)
            model.decoder.film_add.weight.mul_(8)
            for module in model.decoder.transposed_convolution.modules():
                if isinstance(module, torch.nn.ConvTranspose2d):
                    module.weight.mul_(4)
    finally:
        torch.random.set_rng_state(state)

    vocab, merges = clip_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    # CIDAS/clipseg-rd64-refined's preprocessor_config.json: squash to 352x352 (bilinear), rescale,
    # ImageNet mean/std (not CLIP's), no centre crop.
    image_processor = ViTImageProcessor(
        do_resize=True,
        size={"height": SIZE, "width": SIZE},
        resample=2,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    CLIPSegProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder
