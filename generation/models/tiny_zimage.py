"""The tiny random-weight Z-Image (Turbo) model, built as `tiny_dit.py` builds tiny FLUX.1 and
Chroma: diffusers' `ZImagePipeline` from the real classes at toy sizes (`ZImageTransformer2DModel`,
a `Qwen3Model` text encoder with its `Qwen2Tokenizer`, FLUX.1's 16-channel VAE, flow-matching Euler),
built in-process with a fixed seed, saved with `save_pretrained` and then loaded with
`from_pretrained` like any real model. So Z-Image's paths (a chat-templated Qwen3 prompt whose
second-to-last hidden states, unpadded, are the caption; one single-stream transformer over the
caption and 2x2 latent patches; a static shift-3 schedule) run and are tested on a CPU in seconds,
with no GPU and no network. It draws noise, on purpose.

The tokenizer is a small byte-level BPE trained here, offline, on `tiny_dit._WORDS`, with Qwen's
pre-tokenizer and the special tokens ZImagePipeline's prompt template needs (`<|endoftext|>`, the
padding; `<|im_start|>` and `<|im_end|>`; `<think>` and `</think>`), and a chat template that
renders what Qwen3's renders for these messages: ZImagePipeline asks for
`apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
enable_thinking=True)`, which is "<|im_start|>user\\n{prompt}<|im_end|>\\n<|im_start|>assistant\\n"
(with `enable_thinking=False` Qwen3 adds an empty "<think>\\n\\n</think>\\n\\n" block).

As with the other tiny models, fresh random weights leave a picture nearly blind to its prompt, so
the builder makes the model text-sensitive (`_make_text_sensitive`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from generation.models import tiny_config
from generation.models.tiny import pipeline_folder
from generation.models.tiny_dit import _WORDS, _seeded, random_norm_affines

if TYPE_CHECKING:
    from diffusers import ZImagePipeline
    from transformers import Qwen2Tokenizer


VERSION = "tiny-zimage-v1"  # the folder name; bump it when the recipe changes, so copies are rebuilt

# --- configs (the transformer's is in tiny_config.py, torch-free, for the chat side) ------------------------
ZIMAGE_DIM = 32  # the transformer's width: 2 heads of 16 = sum(axes_dims)
QWEN3_DIM = 32  # the tiny Qwen3's hidden size = the transformer's cap_feat_dim
ZIMAGE_TRANSFORMER = tiny_config.ZIMAGE_TRANSFORMER
QWEN3_ENCODER: dict[str, Any] = {  # Qwen3-4B's shape at toy sizes (vocab_size: the tokenizer's)
    "hidden_size": QWEN3_DIM,
    "intermediate_size": 64,
    "num_hidden_layers": 2,  # the pipeline reads hidden_states[-2]: the first layer's output here
    "num_attention_heads": 4,
    "num_key_value_heads": 2,  # grouped-query attention, as Qwen3's 32/8
    "head_dim": 8,
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    "tie_word_embeddings": True,
}
# Z-Image-Turbo's scheduler_config.json: flow matching with a static shift of 3 (no dynamic shifting:
# ZImagePipeline computes `mu` from the image size and passes it, and this scheduler ignores it).
ZIMAGE_SCHEDULER: dict[str, Any] = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": False}
QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # Qwen's ids 151643, 151644, 151645
QWEN_THINK_TOKENS = ("<think>", "</think>")  # added tokens, not special ones (Qwen3's 151667, 151668)
# Qwen3's chat template, cut down to plain system, user and assistant messages: for those it renders
# the same text as Qwen3's own (which adds tools, tool calls and reasoning content around them).
QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)
_BPE_VOCAB = 512  # the 256 bytes and 256 merges


def ensure(models_dir: Path) -> Path:
    """The tiny Z-Image diffusers folder under `models_dir`, built on first use."""
    return pipeline_folder(models_dir, VERSION, build_pipeline)


def build_pipeline(text_sensitive: bool = True) -> ZImagePipeline:
    """The tiny `ZImagePipeline`, built in-process with a fixed seed (the caller's RNG restored).
    `text_sensitive=False` leaves the random weights as initialised (tests measure the difference)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    tokenizer = qwen_tokenizer()
    with _seeded():
        transformer = ZImageTransformer2DModel(**ZIMAGE_TRANSFORMER)
        vae = AutoencoderKL(**tiny_config.DIT_VAE)
        text_encoder = Qwen3Model(
            Qwen3Config(
                vocab_size=len(tokenizer),
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                bos_token_id=tokenizer.pad_token_id,  # Qwen3's config: <|endoftext|>
                **QWEN3_ENCODER,
            )
        )
        if text_sensitive:
            _make_text_sensitive(transformer, text_encoder)
        return ZImagePipeline(
            scheduler=FlowMatchEulerDiscreteScheduler.from_config(ZIMAGE_SCHEDULER),
            vae=vae,
            text_encoder=text_encoder.eval(),
            tokenizer=tokenizer,
            transformer=transformer.eval(),
        )


def qwen_tokenizer() -> Qwen2Tokenizer:
    """A `Qwen2Tokenizer` over a small byte-level BPE trained offline on `_WORDS` (and the template's
    role names), with Qwen's normalizer and pre-tokenizer, Qwen's special tokens after the BPE
    vocabulary in Qwen's order (`<|endoftext|>` first: the padding), and Qwen3's chat template.
    Deterministic: builds in separate processes (other hash seeds) are identical byte for byte."""
    from tokenizers import AddedToken, Regex, Tokenizer, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    trained = Tokenizer(BPE())
    trained.normalizer = normalizers.NFC()
    trained.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(vocab_size=_BPE_VOCAB, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    trained.train_from_iterator([*_WORDS, "system", "user", "assistant"], trainer)
    model = json.loads(trained.to_str())["model"]
    vocab = model["vocab"]
    for token in (*QWEN_SPECIAL_TOKENS, *QWEN_THINK_TOKENS):  # after the BPE's, in Qwen's order
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[tuple(merge) for merge in model["merges"]],
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=131072,
        chat_template=QWEN3_CHAT_TEMPLATE,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS[1:])})
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in QWEN_THINK_TOKENS])
    return tokenizer


@torch.no_grad()
def _make_text_sensitive(transformer: torch.nn.Module, text_encoder: torch.nn.Module) -> None:
    """Let the prompt reach the picture through random weights (module docstring). The caption
    reaches the image only through the attention of the joint blocks (`transformer.layers`), where
    image tokens meet the refined caption and its padding (which the context refiner fills with a
    mixture of the caption), all through RMS-normed inputs, keys and outputs: scaling the text's own
    weights, as tiny_dit does for FLUX, barely moves the picture (measured). Instead the joint blocks'
    attention is opened and made a little sharper, and the latents' own share of the image tokens
    made small. Measured on 64x64 pictures, 4 steps: "a red fox" vs "a blue city at night" differ by
    ~3 (guidance 0, Turbo's) and ~13 (guidance 4) in 255ths without this, ~34 and ~43 with it
    (tests/test_tiny_zimage.py). Sharper attention also amplifies weight noise: with q/k norms x3 in
    every block, a Q8_0 GGUF copy of the transformer drew ~23/255 away from the float one; with
    x1.5 in the joint blocks only, ~1.3 away."""
    random_norm_affines([transformer, text_encoder])  # random affine norms, as tiny_dit's
    for block in transformer.layers:  # the joint blocks, where the image reads the caption
        block.attention.norm_q.weight.mul_(1.5)  # sharper attention: an image token reads some caption
        block.attention.norm_k.weight.mul_(1.5)  # tokens more than others, not the average of all
        # adaLN chunks: scale_msa, gate_msa, scale_mlp, gate_mlp; an open attention gate, tanh(~2) ~ 1
        block.adaLN_modulation[0].bias[block.dim : 2 * block.dim].add_(2)
    for embedder in transformer.all_x_embedder.values():
        embedder.weight.mul_(0.1)  # the latents' own share of the image tokens, against what attention brings
    for final in transformer.all_final_layer.values():
        final.linear.weight.mul_(4)  # a velocity of the noise's size, so the prompt moves the latents
