"""The tiny Qwen-Image model (`tiny-qwen`), built as `tiny_dit.py` builds tiny-flux and tiny-chroma:
the real diffusers/transformers classes (QwenImageTransformer2DModel, AutoencoderKLQwenImage, a
Qwen2.5-VL text encoder with its vision tower, Qwen2Tokenizer) at toy sizes, built in-process with a
fixed seed, saved with `save_pretrained` and loaded with `from_pretrained` like any real model. So
Qwen-Image's own paths (the chat-template prompt, its 34 dropped template tokens, `true_cfg_scale`
with a negative prompt, the 3D causal VAE with per-channel latent statistics, the exponential time
shift) run and are tested on a CPU in seconds, with no GPU and no network. It draws noise, on
purpose.

The tokenizer is a small byte-level BPE trained here, offline, on a few English sentences and on
the pipeline's own prompt template, with Qwen's special tokens (`<|endoftext|>`, `<|im_start|>`,
`<|im_end|>`, the vision tokens) after the vocabulary, in Qwen's order. The pipeline drops the
template's first 34 tokens *by position* (`prompt_template_encode_start_idx`), so the template's
prefix must be exactly 34 tokens here too, as with Qwen's real tokenizer: the build checks it.

As in `tiny_dit.py`, fresh random weights make a picture nearly blind to its prompt, so the builder
makes the model text-sensitive (`_make_text_sensitive`). Builds are deterministic, byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from generation.models import tiny_config
from generation.models.tiny import pipeline_folder
from generation.models.tiny_dit import _WORDS, _seeded

if TYPE_CHECKING:
    from diffusers import QwenImageEditPlusPipeline, QwenImagePipeline
    from transformers import Qwen2Tokenizer


VERSION = "tiny-qwen-v1"  # the folder name; bump when the recipe changes, so cached copies are rebuilt
EDIT_PLUS_VERSION = "tiny-qwen-edit-plus-v1"

# --- configs (the transformer's is in tiny_config.py, torch-free, for the chat side) ------------------------
QWEN_TEXT_DIM = 32  # the tiny Qwen2.5-VL's hidden size = the transformer's joint_attention_dim
# The pipeline's chat template (QwenImagePipeline.prompt_template_encode) and the number of its
# leading tokens that the pipeline drops by position (prompt_template_encode_start_idx).
QWEN_TEMPLATE = (
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, spatial "
    "relationships of the objects and background:<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
)
QWEN_TEMPLATE_DROP = 34
# Qwen2's special tokens in Qwen's order (real ids 151643..151656), after the BPE vocabulary here.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
QWEN_BPE_VOCAB = 640  # bytes (256) + merges, before the special tokens
# Qwen-Image's scheduler_config.json: flow matching, exponential time shift with a resolution-
# dependent mu (use_dynamic_shifting; the pipeline always passes mu), stretched to end at 0.02.
QWEN_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 0.9,
    "base_image_seq_len": 256,
    "max_image_seq_len": 8192,
    "shift_terminal": 0.02,
    "time_shift_type": "exponential",
    "invert_sigmas": False,
    "stochastic_sampling": False,
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
}
# Qwen-Image's VAE (AutoencoderKLQwenImage, a Wan-2.1-style 3D causal VAE): 16 latent channels,
# dim_mult of four levels and three down-samplings (latents 1/8 of the image), Qwen-Image's own
# per-channel latents_mean/latents_std (the class defaults); only the width and depth are tiny.
QWEN_VAE: dict[str, Any] = {
    "base_dim": 16,
    "z_dim": tiny_config.LATENT_CHANNELS,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 1,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
}
QWEN_TRANSFORMER = tiny_config.QWEN_TRANSFORMER
# Qwen2.5-VL-7B-Instruct's config at toy sizes: GQA (2 query heads, 1 key/value head), M-RoPE with
# its sections in the real proportions (16, 24, 24 of 64 -> 2, 3, 3 of 8), a tiny vision tower
# (unused for text-to-image, but the model has one), Qwen's vision token ids mapped to this
# tokenizer's (filled in by the builder).
QWEN_TEXT_ENCODER: dict[str, Any] = {
    "text_config": {
        "hidden_size": QWEN_TEXT_DIM,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "hidden_act": "silu",
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1000000.0},
        "tie_word_embeddings": False,
    },
    "vision_config": {
        "depth": 2,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_heads": 2,
        "out_hidden_size": QWEN_TEXT_DIM,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [1],
        "tokens_per_second": 2,
    },
    "tie_word_embeddings": False,
}


def ensure(models_dir: Path) -> Path:
    """The tiny Qwen-Image diffusers folder under `models_dir` (`VERSION`), built on first use."""
    return pipeline_folder(models_dir, VERSION, build_pipeline)


def build_pipeline() -> QwenImagePipeline:
    """The tiny Qwen-Image pipeline, built in-process with a fixed seed (the caller's global RNG
    state is restored afterwards)."""
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = qwen_tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        **{**QWEN_TEXT_ENCODER, "text_config": {**QWEN_TEXT_ENCODER["text_config"], "vocab_size": len(tokenizer)}},
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
    )
    config.text_config.bos_token_id = ids["<|endoftext|>"]
    config.text_config.eos_token_id = ids["<|im_end|>"]
    with _seeded():
        transformer = QwenImageTransformer2DModel(**QWEN_TRANSFORMER)
        vae = AutoencoderKLQwenImage(**QWEN_VAE)
        text_encoder = Qwen2_5_VLForConditionalGeneration(config)
        _make_text_sensitive(transformer, text_encoder, vae)
        return QwenImagePipeline(
            scheduler=FlowMatchEulerDiscreteScheduler.from_config(QWEN_SCHEDULER),
            vae=vae.eval(),
            text_encoder=text_encoder.eval(),
            tokenizer=tokenizer,
            transformer=transformer.eval(),
        )


def ensure_edit_plus(models_dir: Path) -> Path:
    """The tiny Qwen-Image-Edit-Plus folder under `models_dir` (`EDIT_PLUS_VERSION`), built on first use."""
    return pipeline_folder(models_dir, EDIT_PLUS_VERSION, build_edit_plus_pipeline)


def build_edit_plus_pipeline() -> QwenImageEditPlusPipeline:
    """The tiny Qwen-Image as a Qwen-Image-Edit-Plus: the same weights (the edit models are
    Qwen-Image's architecture, trained to edit) with the processor its pipeline reads pictures
    through, for the tiny vision tower (14 px patches, merged 2x2, 2 frames a patch, as Qwen2.5-VL's)."""
    from diffusers import QwenImageEditPlusPipeline
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    base = build_pipeline()
    vision = QWEN_TEXT_ENCODER["vision_config"]
    patches = {
        "patch_size": vision["patch_size"],
        "merge_size": vision["spatial_merge_size"],
        "temporal_patch_size": vision["temporal_patch_size"],
    }
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(**patches, min_pixels=56 * 56, max_pixels=28 * 28 * 1280),  # Qwen2.5-VL's bounds
        video_processor=Qwen2VLVideoProcessor(**patches),
        tokenizer=base.tokenizer,
    )
    return QwenImageEditPlusPipeline(**base.components, processor=processor)


def qwen_tokenizer() -> Qwen2Tokenizer:
    """A `Qwen2Tokenizer` over a small byte-level BPE trained offline on `_WORDS` and the pipeline's
    prompt template, with Qwen's special tokens; the template's prefix is `QWEN_TEMPLATE_DROP`
    tokens, as with Qwen's real tokenizer."""
    from tokenizers import AddedToken, Tokenizer, trainers
    from tokenizers.models import BPE
    from transformers import Qwen2Tokenizer

    from generation.models.tiny import _bytes_to_unicode

    # Qwen2Tokenizer's own normalizer and pre-tokenizer (Qwen's split regex, then byte-level)
    shape = Qwen2Tokenizer(vocab={"<|endoftext|>": 0}, merges=[]).backend_tokenizer
    trained = Tokenizer(BPE())
    trained.normalizer = shape.normalizer
    trained.pre_tokenizer = shape.pre_tokenizer
    template = QWEN_TEMPLATE.format("")
    for token in QWEN_SPECIAL_TOKENS:
        template = template.replace(token, "\n")  # so that "system", "user" train as words of their own
    # the template many times over, so that each of its words is merged into one token
    trainer = trainers.BpeTrainer(vocab_size=QWEN_BPE_VOCAB, initial_alphabet=sorted(_bytes_to_unicode().values()), show_progress=False)
    trained.train_from_iterator([*_WORDS, *[template] * 50], trainer)
    # GPT-2's layout: the 256 byte characters in GPT-2's order, then each merge's result in merge
    # order, then the special tokens; rebuilt from the merges, so the ids do not depend on the
    # trainer's internal ordering (builds are identical, byte for byte).
    merges = [tuple(pair.split(" ")) if isinstance(pair, str) else tuple(pair) for pair in json.loads(trained.to_str())["model"]["merges"]]
    vocab: dict[str, int] = {}
    for piece in [*_bytes_to_unicode().values(), *("".join(pair) for pair in merges), *QWEN_SPECIAL_TOKENS]:
        vocab.setdefault(piece, len(vocab))
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=131072,  # Qwen2.5-VL's
        clean_up_tokenization_spaces=False,
    )
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [AddedToken(token, special=True, normalized=False) for token in QWEN_SPECIAL_TOKENS]}
    )
    prefix = QWEN_TEMPLATE.split("{}")[0]
    length = len(tokenizer(prefix).input_ids)
    if length != QWEN_TEMPLATE_DROP:
        raise RuntimeError(f"the tiny Qwen tokenizer splits the template's prefix into {length} tokens, not {QWEN_TEMPLATE_DROP}")
    return tokenizer


@torch.no_grad()
def _make_text_sensitive(transformer: torch.nn.Module, text_encoder: torch.nn.Module, vae: torch.nn.Module) -> None:
    """Let the prompt reach the picture through random weights (module docstring; tiny_dit.py).
    Measured on 64x64 pictures, 4 steps: "a red fox" vs "a blue city at night" differ by ~0.2 in
    255ths without this, ~41 with it; "a cat" vs "a dog" ~0.1 and ~31 (tests/test_tiny_qwen.py)."""
    for module in [*transformer.modules(), *text_encoder.modules()]:  # random affine parameters on the norms
        weight = getattr(module, "weight", None)
        if type(module).__name__.endswith(("LayerNorm", "RMSNorm")) and isinstance(weight, torch.nn.Parameter):
            weight.copy_(1 + 0.5 * torch.randn_like(weight))
            bias = getattr(module, "bias", None)
            if isinstance(bias, torch.nn.Parameter):
                bias.copy_(0.2 * torch.randn_like(bias))
    # Token embeddings well above the random layers' outputs, so that each prompt token's hidden
    # state stays its own (the pipeline reads the last hidden state, token by token).
    text_encoder.get_input_embeddings().weight.mul_(20)
    for name, module in transformer.named_modules():
        if name.endswith(".attn"):
            # Keys are RMS-normalised (qk_norm), so the text keys are made strong through their norm's
            # weight: sharp attention to particular prompt tokens instead of an average over all of
            # them (the template's closing tokens, shared by every prompt, dilute that average).
            module.norm_added_k.weight.mul_(4)
            module.add_v_proj.weight.mul_(8)  # strong text values in the joint attention
        elif name.endswith(("img_mod", "txt_mod")):
            module[1].weight.mul_(2)  # larger AdaLN gates, so the attention's output counts in the stream
            module[1].bias.mul_(2)
    transformer.img_in.weight.mul_(0.3)  # the latents' own share of the image stream, against the text's
    transformer.proj_out.weight.mul_(3)  # a velocity of the noise's size, so the prompt moves the latents
    # The random VAE decodes to a faint picture (std ~0.18 of [-1, 1]): contrast, so that different
    # latents make visibly different pixels.
    vae.decoder.conv_out.weight.mul_(2.5)
    vae.decoder.conv_out.bias.mul_(2.5)
