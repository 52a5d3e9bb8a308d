"""Prompt embeddings the way AUTOMATIC1111 builds them, handed to diffusers as `prompt_embeds`.

A prompt is parsed for emphasis (`generation.prompt_weights`), tokenized without BOS/EOS, and
cut into chunks of 75 tokens (A1111's `tokenize_line`):
- each token carries its fragment's weight;
- when a chunk is full and a comma stood within its last 20 tokens, the tokens after that comma
  move to the next chunk (so a phrase is not split across chunks);
- `BREAK` ends the chunk at once;
- each chunk is padded with EOS to 75 and framed BOS + 75 + EOS (weight 1 on frame and padding;
  where the tokenizer's pad token differs from EOS, as in SD 2.x, everything after the first EOS
  is the pad token, as the tokenizer itself pads).
Each chunk is encoded alone, then A1111's "Original" emphasis: `mean0 = z.mean(); z = z * weights;
z = z * (mean0 / z.mean())`. Chunks are concatenated along the sequence, so prompts past 77 tokens
work. A prompt without brackets gives exactly diffusers' own encoding (tested).

Clip skip N (A1111's "CLIP stop at last layers", 1 = the last layer): hidden state N from the end,
through the final layer norm. Implemented here because diffusers' own `clip_skip` crashes with
transformers >= 5.6 (DESIGN.md pitfalls) and counts differently (its 1 is A1111's 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from generation.prompt_weights import parse_prompt_attention

CHUNK_LENGTH = 75
COMMA_BACKTRACK = 20  # A1111's "comma_padding_backtrack" default


@dataclass
class Chunk:
    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


def chunk_prompt(tokenizer: Any, prompt: str) -> list[Chunk]:
    """The prompt as framed chunks of 77 tokens with their weights (A1111's tokenize_line)."""
    parsed = parse_prompt_attention(prompt)
    texts = [text for text, _ in parsed]
    tokenized = tokenizer(texts, truncation=False, add_special_tokens=False, verbose=False)["input_ids"]  # no "too long" warning: we chunk
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    comma = tokenizer.get_vocab().get(",</w>")
    chunks: list[Chunk] = []
    chunk = Chunk()
    last_comma = -1

    def next_chunk() -> None:
        nonlocal chunk, last_comma
        missing = CHUNK_LENGTH - len(chunk.tokens)
        chunk.tokens = [bos, *chunk.tokens, *([eos] * missing), eos]
        chunk.weights = [1.0, *chunk.weights, *([1.0] * missing), 1.0]
        chunks.append(chunk)
        chunk = Chunk()
        last_comma = -1

    for tokens, (text, weight) in zip(tokenized, parsed, strict=True):
        if (text, weight) == ("BREAK", -1.0):
            next_chunk()
            continue
        for token in tokens:
            if token == comma:
                last_comma = len(chunk.tokens)
            elif len(chunk.tokens) == CHUNK_LENGTH and last_comma != -1 and len(chunk.tokens) - last_comma <= COMMA_BACKTRACK:
                cut = last_comma + 1
                moved_tokens, moved_weights = chunk.tokens[cut:], chunk.weights[cut:]
                chunk.tokens, chunk.weights = chunk.tokens[:cut], chunk.weights[:cut]
                next_chunk()
                chunk.tokens, chunk.weights = moved_tokens, moved_weights
            if len(chunk.tokens) == CHUNK_LENGTH:
                next_chunk()
            chunk.tokens.append(token)
            chunk.weights.append(weight)
    if chunk.tokens or not chunks:
        next_chunk()
    return chunks


def empty_chunk(tokenizer: Any) -> Chunk:
    return Chunk([tokenizer.bos_token_id, *[tokenizer.eos_token_id] * (CHUNK_LENGTH + 1)], [1.0] * (CHUNK_LENGTH + 2))


@dataclass(frozen=True)
class Encoder:
    """One CLIP text encoder with its tokenizer and how to read its output."""

    tokenizer: Any
    text_encoder: Any
    clip_skip: int = 1  # A1111's count: 1 = the last layer
    # SDXL reads the penultimate layer *without* the final norm, and also wants the pooled output.
    sdxl: bool = False

    def encode(self, chunks: list[Chunk]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[1, 77 * len(chunks), dim] embeddings (and the first chunk's pooled output for SDXL)."""
        device = self.text_encoder.device
        encoded, pooled = [], None
        for chunk in chunks:
            ids = torch.tensor([self._padded(chunk.tokens)], device=device)
            z, chunk_pooled = self._forward(ids)
            weights = torch.tensor(chunk.weights, device=device, dtype=z.dtype)
            mean_before = z.mean()
            z = z * weights.reshape(1, -1, 1)
            z = z * (mean_before / z.mean())
            encoded.append(z)
            if pooled is None:
                pooled = chunk_pooled
        return torch.cat(encoded, dim=1), pooled

    def _padded(self, tokens: list[int]) -> list[int]:
        pad, eos = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id
        if pad is None or pad == eos:
            return tokens
        first_end = tokens.index(eos)
        return tokens[: first_end + 1] + [pad] * (len(tokens) - first_end - 1)

    def _forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.sdxl:
            out = self.text_encoder(ids, output_hidden_states=True)
            hidden = out.hidden_states[-(self.clip_skip + 1)]  # SDXL's default is already the penultimate
            pooled = out[0] if hasattr(out, "text_embeds") else None
            return hidden, pooled
        if self.clip_skip <= 1:
            return self.text_encoder(ids)[0], None
        out = self.text_encoder(ids, output_hidden_states=True)
        hidden = out.hidden_states[-self.clip_skip]
        return self.text_encoder.text_model.final_layer_norm(hidden), None


@dataclass(frozen=True)
class Conditioning:
    prompt_embeds: torch.Tensor
    negative_prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor | None = None
    negative_pooled_prompt_embeds: torch.Tensor | None = None

    def pipeline_arguments(self) -> dict[str, torch.Tensor]:
        arguments = {"prompt_embeds": self.prompt_embeds, "negative_prompt_embeds": self.negative_prompt_embeds}
        if self.pooled_prompt_embeds is not None:
            arguments["pooled_prompt_embeds"] = self.pooled_prompt_embeds
            arguments["negative_pooled_prompt_embeds"] = self.negative_pooled_prompt_embeds  # type: ignore[assignment]
        return arguments


def encoders_of(pipe: Any, clip_skip: int = 1) -> list[Encoder]:
    """The pipeline's text encoders: one for SD 1.x/2.x, two (CLIP L and bigG) for SDXL."""
    if getattr(pipe, "text_encoder_2", None) is not None:
        return [
            Encoder(pipe.tokenizer, pipe.text_encoder, clip_skip, sdxl=True),
            Encoder(pipe.tokenizer_2, pipe.text_encoder_2, clip_skip, sdxl=True),
        ]
    return [Encoder(pipe.tokenizer, pipe.text_encoder, clip_skip)]


def encode_prompts(pipe: Any, prompt: str, negative: str, *, clip_skip: int = 1) -> Conditioning:
    """A1111-weighted embeddings of prompt and negative prompt, padded with empty chunks to the
    same length (as A1111 pads cond and uncond)."""
    [conditioning] = encode_texts(pipe, [prompt], negative, clip_skip=clip_skip)
    return conditioning


@torch.inference_mode()
def encode_texts(pipe: Any, prompts: list[str], negative: str, *, clip_skip: int = 1) -> list[Conditioning]:
    """One Conditioning per prompt text (the texts of a prompt-editing schedule), all with the
    same number of chunks, so that the pipeline can switch between them at any step."""
    encoders = encoders_of(pipe, clip_skip)
    texts = [*prompts, negative]
    per_text = [[chunk_prompt(e.tokenizer, text) for e in encoders] for text in texts]
    count = max(len(chunks) for by_encoder in per_text for chunks in by_encoder)
    embeds, pooled = [], []
    for by_encoder in per_text:
        parts, last_pooled = [], None
        for encoder, chunks in zip(encoders, by_encoder, strict=True):
            chunks = chunks + [empty_chunk(encoder.tokenizer)] * (count - len(chunks))
            z, last_pooled = encoder.encode(chunks)
            parts.append(z)
        embeds.append(torch.cat(parts, dim=-1))
        pooled.append(last_pooled)  # SDXL: the second encoder's (CLIP bigG) projection
    if encoders[0].sdxl and not negative and getattr(pipe.config, "force_zeros_for_empty_prompt", False):
        embeds[-1] = torch.zeros_like(embeds[-1])  # as diffusers (and A1111) do for SDXL's empty negative
        pooled[-1] = torch.zeros_like(pooled[-1]) if pooled[-1] is not None else None
    dtype = pipe.unet.dtype

    def cast(tensor: torch.Tensor | None) -> torch.Tensor | None:
        return tensor.to(dtype) if tensor is not None else None

    return [
        Conditioning(embeds[i].to(dtype), embeds[-1].to(dtype), cast(pooled[i]), cast(pooled[-1]))
        for i in range(len(prompts))
    ]
