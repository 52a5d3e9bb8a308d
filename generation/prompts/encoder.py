"""Prompt embeddings the way AUTOMATIC1111 builds them, handed to diffusers as `prompt_embeds`.

A prompt is parsed for emphasis (`generation.prompts.weights`), tokenized without BOS/EOS, and
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

Textual-inversion embeddings (A1111's, in `chunk_prompt`): an embedding's name, matched as whole
tokens in a fragment's token stream, stands for its n vectors: n placeholder tokens carrying the
fragment's weight, kept whole in one chunk (moved to the next chunk when they do not fit), whose
token embeddings are replaced by the vectors as the text encoder runs (A1111's
EmbeddingsWithFixes). The job's embeddings are set with `textual_inversions(...)` around the
encoding (generation.assets.adapters does that per job).

Clip skip N (A1111's "CLIP stop at last layers", 1 = the last layer): hidden state N from the end,
through the final layer norm. Implemented here because diffusers' own `clip_skip` crashes with
transformers >= 5.6 (docs/rules.md, pitfalls) and counts differently (its 1 is A1111's 2).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import torch

from generation.prompts.lora_tags import strip_lora_tags
from generation.prompts.weights import parse_prompt_attention

CHUNK_LENGTH = 75
COMMA_BACKTRACK = 20  # A1111's "comma_padding_backtrack" default


@dataclass
class Chunk:
    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    # Textual inversion: (offset in the framed chunk, [n, dim] vectors) replacing the token
    # embeddings of the n placeholder tokens there.
    fixes: list[tuple[int, torch.Tensor]] = field(default_factory=list)


@dataclass(frozen=True)
class TextualInversion:
    """An embedding as a prompt uses it: its name, and its vectors per text encoder ("clip_l":
    SD 1.x/2.x's one encoder and SDXL's first; "clip_g": SDXL's second)."""

    name: str
    vectors: dict[str, torch.Tensor]


# The running job's embeddings (a context variable: each engine thread has its own).
_TEXTUAL_INVERSIONS: ContextVar[tuple[TextualInversion, ...]] = ContextVar("textual_inversions", default=())
PLACEHOLDER = 0  # A1111's placeholder token id for an embedding's vectors


@contextlib.contextmanager
def textual_inversions(embeddings: list[TextualInversion] | tuple[TextualInversion, ...]) -> Iterator[None]:
    """Prompts encoded inside this block see these embeddings' names."""
    token = _TEXTUAL_INVERSIONS.set(tuple(embeddings))
    try:
        yield
    finally:
        _TEXTUAL_INVERSIONS.reset(token)


def token_id(tokenizer: Any, token: str) -> int | None:
    """The id of `token` in the tokenizer's vocabulary, or None when it has none. One lookup:
    `get_vocab()` builds the whole vocabulary as a dict (18 ms for CLIP's 49,408 tokens, twice a
    job: a third of what the bot added to a tiny-model job, bench/overhead.py)."""
    found = tokenizer.convert_tokens_to_ids(token)
    if found is None or (found == tokenizer.unk_token_id and token != tokenizer.unk_token):
        return None
    return int(found)


def chunk_prompt(tokenizer: Any, prompt: str, embeddings: dict[str, torch.Tensor] | None = None) -> list[Chunk]:
    """The prompt as framed chunks of 77 tokens with their weights (A1111's tokenize_line).
    `embeddings`: name -> [n, dim] vectors of the textual inversions this prompt may name."""
    parsed = parse_prompt_attention(prompt)
    texts = [text for text, _ in parsed]
    tokenized = tokenizer(texts, truncation=False, add_special_tokens=False, verbose=False)["input_ids"]  # no "too long" warning: we chunk
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    comma = token_id(tokenizer, ",</w>")
    # A1111's ids_lookup: the embeddings by their name's first token, longest name first.
    lookup: dict[int, list[tuple[list[int], torch.Tensor]]] = {}
    for name, vectors in (embeddings or {}).items():
        name_ids = tokenizer(name, truncation=False, add_special_tokens=False, verbose=False)["input_ids"]
        if name_ids:
            lookup.setdefault(name_ids[0], []).append((name_ids, vectors))
    for candidates in lookup.values():
        candidates.sort(key=lambda candidate: -len(candidate[0]))
    chunks: list[Chunk] = []
    chunk = Chunk()
    last_comma = -1

    def next_chunk() -> None:
        nonlocal chunk, last_comma
        missing = CHUNK_LENGTH - len(chunk.tokens)
        chunk.tokens = [bos, *chunk.tokens, *([eos] * missing), eos]
        chunk.weights = [1.0, *chunk.weights, *([1.0] * missing), 1.0]
        chunk.fixes = [(offset + 1, vectors) for offset, vectors in chunk.fixes]  # past BOS
        chunks.append(chunk)
        chunk = Chunk()
        last_comma = -1

    def embedding_at(tokens: list[int], position: int) -> tuple[list[int], torch.Tensor] | None:
        for name_ids, vectors in lookup.get(tokens[position], ()):
            if tokens[position : position + len(name_ids)] == name_ids:
                return name_ids, vectors
        return None

    for tokens, (text, weight) in zip(tokenized, parsed, strict=True):
        if (text, weight) == ("BREAK", -1.0):
            next_chunk()
            continue
        position = 0
        while position < len(tokens):
            token = tokens[position]
            if token == comma:
                last_comma = len(chunk.tokens)
            elif len(chunk.tokens) == CHUNK_LENGTH and last_comma != -1 and len(chunk.tokens) - last_comma <= COMMA_BACKTRACK:
                cut = last_comma + 1
                moved_tokens, moved_weights = chunk.tokens[cut:], chunk.weights[cut:]
                # Embeddings after the comma move with their placeholders (A1111 leaves them behind).
                moved_fixes = [(offset - cut, vectors) for offset, vectors in chunk.fixes if offset >= cut]
                chunk.fixes = [(offset, vectors) for offset, vectors in chunk.fixes if offset < cut]
                chunk.tokens, chunk.weights = chunk.tokens[:cut], chunk.weights[:cut]
                next_chunk()
                chunk.tokens, chunk.weights, chunk.fixes = moved_tokens, moved_weights, moved_fixes
            if len(chunk.tokens) == CHUNK_LENGTH:
                next_chunk()
            found = embedding_at(tokens, position) if lookup else None
            if found is None:
                chunk.tokens.append(token)
                chunk.weights.append(weight)
                position += 1
                continue
            name_ids, vectors = found
            count = min(len(vectors), CHUNK_LENGTH)
            if len(chunk.tokens) + count > CHUNK_LENGTH:
                next_chunk()  # an embedding's vectors stay together in one chunk
            chunk.fixes.append((len(chunk.tokens), vectors[:count]))
            chunk.tokens += [PLACEHOLDER] * count
            chunk.weights += [weight] * count
            position += len(name_ids)
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
    vectors_key: str = "clip_l"  # which vectors of a textual inversion this encoder takes

    def embeddings(self) -> dict[str, torch.Tensor]:
        """The running job's textual inversions for this encoder, by name."""
        return {ti.name: ti.vectors[self.vectors_key] for ti in _TEXTUAL_INVERSIONS.get() if self.vectors_key in ti.vectors}

    def encode(self, chunks: list[Chunk]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[1, 77 * len(chunks), dim] embeddings (and the first chunk's pooled output for SDXL)."""
        device = self.text_encoder.device
        encoded, pooled = [], None
        for chunk in chunks:
            ids = torch.tensor([self._padded(chunk.tokens)], device=device)
            with self._fixed(chunk.fixes):
                z, chunk_pooled = self._forward(ids)
            weights = torch.tensor(chunk.weights, device=device, dtype=z.dtype)
            mean_before = z.mean()
            z = z * weights.reshape(1, -1, 1)
            z = z * (mean_before / z.mean())
            encoded.append(z)
            if pooled is None:
                pooled = chunk_pooled
        return torch.cat(encoded, dim=1), pooled

    @contextlib.contextmanager
    def _fixed(self, fixes: list[tuple[int, torch.Tensor]]) -> Iterator[None]:
        """Textual inversion: the fixes' vectors replace the placeholders' token embeddings."""
        if not fixes:
            yield
            return

        def replace(module: Any, inputs: Any, output: torch.Tensor) -> torch.Tensor:
            output = output.clone()
            for offset, vectors in fixes:
                output[:, offset : offset + len(vectors)] = vectors.to(output.device, output.dtype)
            return output

        handle = self.text_encoder.get_input_embeddings().register_forward_hook(replace)
        try:
            yield
        finally:
            handle.remove()

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
            Encoder(pipe.tokenizer_2, pipe.text_encoder_2, clip_skip, sdxl=True, vectors_key="clip_g"),
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
    texts = [strip_lora_tags(text) for text in [*prompts, negative]]  # A1111 encodes the prompt without them
    by_name = [e.embeddings() for e in encoders]
    per_text = [[chunk_prompt(e.tokenizer, text, names) for e, names in zip(encoders, by_name, strict=True)] for text in texts]
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

    return [Conditioning(embeds[i].to(dtype), embeds[-1].to(dtype), cast(pooled[i]), cast(pooled[-1])) for i in range(len(prompts))]
