"""The tiny FLUX.2 Klein model (`tiny-flux2`): FLUX.2 Klein's real diffusers/transformers classes
(`Flux2KleinPipeline`: `Flux2Transformer2DModel`, `AutoencoderKLFlux2`, a `Qwen3ForCausalLM` text
encoder and a Qwen2 byte-level BPE tokenizer) at toy sizes with random weights, built in-process
with a fixed seed and then saved and loaded like any real model, as `tiny_dit.py` does for FLUX.1
and Chroma. So the FLUX.2 paths (the Qwen3 chat-template prompt read from three hidden layers,
128-channel packed latents, the VAE's batch-norm latent statistics, reference-image conditioning)
run and are tested on a CPU in seconds, with no GPU and no network. It draws noise, on purpose.

It is the undistilled "base" variant (`is_distilled=False`, as FLUX.2-klein-base-4B): the pipeline
runs real classifier-free guidance against the empty prompt when `guidance_scale > 1`.

Why each piece is as it is:
- The text encoder has 28 layers, hidden size 16: the pipeline stacks `hidden_states[9, 18, 27]`
  by default (`text_encoder_out_layers`), so it needs 28 layers for every index to be an
  intermediate layer's output, as in the real 36-layer Qwen3; the transformer's
  `joint_attention_dim` is then 3 x 16.
- The tokenizer is a byte-level BPE trained here, offline, on `tiny_dit._WORDS` with Qwen2's own
  normalizer and pre-tokenizer (so every byte is covered and nothing is unknown), plus the special
  tokens that Qwen3's chat template writes; `CHAT_TEMPLATE` renders exactly what Qwen3's template
  renders for the pipeline's call (one user message, `add_generation_prompt=True`,
  `enable_thinking=False`).
- The VAE has four blocks, so latents are 1/8 of the image; with FLUX.2's 2x2 patches a picture's
  sides must be multiples of 16 and a 64x64 picture is 16 image tokens. Its batch-norm running
  statistics are random (real ones are not 0 and 1), so that a wrong (de)normalisation shows.
- With random weights a picture hardly hears its prompt, so `_make_text_sensitive` makes it do so
  (see its docstring and `tiny_dit._make_text_sensitive`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from generation.models import tiny_config
from generation.models.tiny import pipeline_folder
from generation.models.tiny_dit import _WORDS, _seeded, random_norm_affines

if TYPE_CHECKING:
    from diffusers import Flux2KleinPipeline
    from transformers import Qwen2Tokenizer


VERSION = "tiny-flux2-v1"  # the folder name; bump it when the recipe changes

# --- configs (the transformer's is in tiny_config.py, torch-free, for the chat side) ------------------------
FLUX2_LATENT_CHANNELS = 32  # FLUX.2's VAE; the transformer sees 2x2 patches: 4 x 32 = 128 channels
QWEN3_HIDDEN = 16
QWEN3_OUT_LAYERS = (9, 18, 27)  # the pipeline's default `text_encoder_out_layers`
QWEN3_VOCAB = 512  # 507 trained byte-level BPE tokens (256 bytes + 251 merges), then the special tokens:
QWEN3_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")  # ids 507..511
_FIRST_SPECIAL = QWEN3_VOCAB - len(QWEN3_SPECIAL_TOKENS)
# Qwen3-4B's shape at toy size: grouped-query attention, tied embeddings, Qwen3's RoPE base and eps.
QWEN3_TEXT_ENCODER: dict[str, Any] = {
    "vocab_size": QWEN3_VOCAB,
    "hidden_size": QWEN3_HIDDEN,
    "intermediate_size": 32,
    "num_hidden_layers": max(QWEN3_OUT_LAYERS) + 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 8,
    "max_position_embeddings": 512,  # the pipeline pads every prompt to max_sequence_length=512
    "rope_theta": 1_000_000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
    "bos_token_id": _FIRST_SPECIAL + QWEN3_SPECIAL_TOKENS.index("<|endoftext|>"),  # as Qwen3's config
    "eos_token_id": _FIRST_SPECIAL + QWEN3_SPECIAL_TOKENS.index("<|im_end|>"),
}
# FLUX.2's VAE (AutoencoderKLFlux2) at the tiny VAE's size: four blocks, 32 latent channels.
FLUX2_VAE: dict[str, Any] = {**tiny_config.VAE, "latent_channels": FLUX2_LATENT_CHANNELS}
FLUX2_TRANSFORMER = tiny_config.FLUX2_TRANSFORMER
# FLUX.2's scheduler_config.json has FLUX.1's values (tiny_config.FLOW_SCHEDULER); the Klein
# pipelines ignore base/max shift and pass their own `mu` (compute_empirical_mu), so only
# `use_dynamic_shifting=True` matters.
FLUX2_SCHEDULER: dict[str, Any] = {**tiny_config.FLOW_SCHEDULER, "time_shift_type": "exponential"}
# What Qwen3's chat template renders for [{"role": "user", ...}], add_generation_prompt=True,
# enable_thinking=False (system and assistant messages render the same way; no tools).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)
# Qwen2's pre-tokenizer split (transformers' tokenization_qwen2.PRETOKENIZE_REGEX).
_QWEN2_SPLIT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


def ensure(models_dir: Path) -> Path:
    """The tiny FLUX.2 Klein diffusers folder under `models_dir`, built on first use."""
    return pipeline_folder(models_dir, VERSION, build_pipeline)


def build_pipeline() -> Flux2KleinPipeline:
    """The tiny `Flux2KleinPipeline`, built in-process with a fixed seed (the caller's global RNG
    state is restored), identical from build to build."""
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = qwen_tokenizer()
    with _seeded():
        transformer = Flux2Transformer2DModel(**FLUX2_TRANSFORMER)
        vae = AutoencoderKLFlux2(**FLUX2_VAE)
        vae.bn.running_mean.copy_(0.2 * torch.randn_like(vae.bn.running_mean))
        vae.bn.running_var.copy_(0.5 + torch.rand_like(vae.bn.running_var))
        text_encoder = Qwen3ForCausalLM(Qwen3Config(**QWEN3_TEXT_ENCODER))
        _make_text_sensitive(transformer, text_encoder)
        return Flux2KleinPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler.from_config(FLUX2_SCHEDULER),
            vae=vae.eval(),
            text_encoder=text_encoder.eval(),
            tokenizer=tokenizer,
            transformer=transformer.eval(),
            is_distilled=False,
        )


def qwen_tokenizer() -> Qwen2Tokenizer:
    """A Qwen2 tokenizer over a small byte-level BPE trained offline on `tiny_dit._WORDS`, with
    Qwen3's special tokens and a chat template that renders as Qwen3's does for the pipeline."""
    from tokenizers import AddedToken, Regex, Tokenizer, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers import Qwen2Tokenizer

    trained = Tokenizer(BPE())
    trained.normalizer = normalizers.NFC()
    trained.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    trainer = trainers.BpeTrainer(vocab_size=_FIRST_SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    # Trained on the sentences as the pipeline's template renders them, less its special tokens, so
    # that "user", "assistant" and "\n\n" are single tokens, as in Qwen's vocabulary.
    rendered = (f"<|im_start|>user\n{words}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n" for words in _WORDS)
    special = "|".join(re.escape(token) for token in QWEN3_SPECIAL_TOKENS)
    trained.train_from_iterator((piece for text in rendered for piece in re.split(special, text) if piece), trainer)
    # The BPE trainer breaks ties by token id, so its merges are the same from run to run; the
    # special tokens follow the trained vocabulary, as in Qwen's (<|endoftext|> = 151643 there).
    model = json.loads(trained.to_str())["model"]
    vocab = dict(model["vocab"])
    if len(vocab) != _FIRST_SPECIAL:
        raise RuntimeError(f"the BPE trained {len(vocab)} tokens, not {_FIRST_SPECIAL}: give it more sentences or a smaller vocabulary")
    vocab.update({token: _FIRST_SPECIAL + index for index, token in enumerate(QWEN3_SPECIAL_TOKENS)})
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[tuple(merge) for merge in model["merges"]],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=131072,
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.add_tokens([AddedToken(token, special=True, normalized=False) for token in ("<|im_start|>", "<|im_end|>")])
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in ("<think>", "</think>")])
    return tokenizer


@torch.no_grad()
def _make_text_sensitive(transformer: torch.nn.Module, text_encoder: torch.nn.Module) -> None:
    """Let the prompt reach the picture through random weights, as `tiny_dit._make_text_sensitive`
    does for FLUX.1. Measured on 64x64 pictures, 4 steps: "a red fox" vs "a blue city at night"
    differ by ~0.7 (guidance 4, the pipeline's CFG) and ~0.2 (guidance 1) in 255ths without this,
    ~37 and ~32 with it (tests/test_tiny_flux2.py); over three prompt pairs and three build seeds,
    22 to 38 at guidance 4, while the noise seed still changes a picture by ~25.

    The pipeline pads every prompt to 512 tokens and the transformer reads all of them (no mask);
    Qwen3 is causal and its padding attends only to the real tokens, so what differs between two
    prompts reaches most of those 512 positions through the text encoder's attention. Sharper
    attention there (its q/k RMSNorm weights x3, after the random affine below) and stronger
    attention outputs pick the words out of the chat template around them. In the transformer,
    strong text values in the double blocks carry that into the image tokens (their text keys are
    RMS-normed, so scaling the keys would do nothing), a weaker latent input gives the text the
    larger share of the image stream, and a stronger velocity output lets it move the latents."""
    random_norm_affines([transformer, text_encoder])
    for layer in text_encoder.model.layers:
        layer.self_attn.q_norm.weight.mul_(3)
        layer.self_attn.k_norm.weight.mul_(3)
        layer.self_attn.o_proj.weight.mul_(3)
    for block in transformer.transformer_blocks:  # the double blocks' joint attention
        block.attn.add_v_proj.weight.mul_(20)
    transformer.x_embedder.weight.mul_(0.1)
    transformer.proj_out.weight.mul_(3)
