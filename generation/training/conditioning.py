"""A run's text conditioning: the captions through the model's text encoder(s) as the UNet takes
them, with gradients where the run learns them (text-encoder adapters, or an embedding's vectors).

An embedding is trained the A1111 way: nothing is added to the tokenizer or the embedding
matrix; the name in a caption stands for `vectors` placeholder tokens, and a forward hook on the
token embedding puts the trainable vectors there. The same vectors, saved as `emb_params`, are
what the engine's prompt encoder and diffusers' `load_textual_inversion` put in place of the name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from generation.prompts.encoder import PLACEHOLDER
from generation.training.spec import TrainingSpec

ENCODER_KEYS = ("clip_l", "clip_g")  # an embedding's vectors per text encoder, as A1111 / kohya SDXL name them


class TextConditioning:
    def __init__(self, pipe: Any, spec: TrainingSpec, device: torch.device, dtype: torch.dtype):
        self.spec, self.device, self.dtype = spec, device, dtype
        self.xl = getattr(pipe, "text_encoder_2", None) is not None
        self.encoders = [pipe.text_encoder, *([pipe.text_encoder_2] if self.xl else [])]
        self.tokenizers = [pipe.tokenizer, *([pipe.tokenizer_2] if self.xl else [])]
        self.vectors: dict[str, torch.nn.Parameter] = {}
        self._positions: list[list[int]] = []
        self._hooks: list[Any] = []

    def add_vectors(self) -> dict[str, torch.nn.Parameter]:
        """An embedding's trainable vectors, one set per text encoder, hooked into the encoders."""
        for key, encoder, tokenizer in zip(ENCODER_KEYS, self.encoders, self.tokenizers, strict=False):
            self.vectors[key] = torch.nn.Parameter(self._initial_vectors(encoder, tokenizer).float())
            self._hooks.append(encoder.get_input_embeddings().register_forward_hook(self._placeholder_hook(key)))
        return {f"vectors.{key}": value for key, value in self.vectors.items()}

    def remove_hooks(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()

    def _initial_vectors(self, encoder: Any, tokenizer: Any) -> torch.Tensor:
        """A1111's initialisation: the init text's token embeddings, cycled over the vectors."""
        assert self.spec.init_word is not None
        ids = tokenizer(self.spec.init_word, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
        table = encoder.get_input_embeddings().weight.detach()
        rows = table[torch.tensor(ids, device=table.device)]
        return torch.stack([rows[i * len(ids) // self.spec.vectors] for i in range(self.spec.vectors)]).to(self.device)

    def _placeholder_hook(self, key: str) -> Callable[..., torch.Tensor]:
        def replace(module: Any, inputs: Any, output: torch.Tensor) -> torch.Tensor:
            positions = getattr(self, "_positions", None)
            if not positions:
                return output
            output = output.clone()
            vectors = self.vectors[key].to(output.dtype)
            for row, starts in enumerate(positions):
                for start in starts:
                    output[row, start : start + len(vectors)] = vectors
            return output

        return replace

    def _token_ids(self, tokenizer: Any, captions: list[str]) -> tuple[torch.Tensor, list[list[int]]]:
        """Token ids of the captions; for an embedding, its name stands for `vectors` placeholder
        tokens (A1111's way: nothing is added to the tokenizer), whose positions the hook fills."""
        length = tokenizer.model_max_length
        if self.spec.method != "embedding":
            ids = tokenizer(captions, padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
            return ids, []
        name_ids = tokenizer(self.spec.name, add_special_tokens=False)["input_ids"]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        rows, positions = [], []
        for caption in captions:
            tokens = tokenizer(caption, add_special_tokens=False)["input_ids"]
            out, starts, i = [], [], 0
            while i < len(tokens):
                if name_ids and tokens[i : i + len(name_ids)] == name_ids:
                    starts.append(1 + len(out))
                    out += [PLACEHOLDER] * self.spec.vectors  # the hook puts the vectors there (never EOS: CLIP pools at EOS)
                    i += len(name_ids)
                else:
                    out.append(tokens[i])
                    i += 1
            out = out[: length - 2]
            starts = [s for s in starts if s + self.spec.vectors <= length - 1]
            rows.append([tokenizer.bos_token_id, *out, tokenizer.eos_token_id] + [pad] * (length - 2 - len(out)))
            positions.append(starts)
        return torch.tensor(rows), positions

    def encode(self, captions: list[str], size: tuple[int, int]) -> dict[str, Any]:
        """The UNet's text conditioning for the captions (SD: the last hidden state; SDXL: both
        encoders' penultimate states, the pooled projection and the size conditioning)."""
        states, pooled = [], None
        learns = self.spec.text_encoder or self.spec.method == "embedding"  # else the encoders are constants
        for tokenizer, encoder in zip(self.tokenizers, self.encoders, strict=True):
            ids, self._positions = self._token_ids(tokenizer, captions)
            with contextlib.nullcontext() if learns else torch.no_grad():
                output = encoder(ids.to(self.device), output_hidden_states=self.xl)
            self._positions = []
            if not self.xl:
                states.append(output[0])
            else:
                states.append(output.hidden_states[-2])
                pooled = output[0]  # text_encoder_2's projection (CLIPTextModelWithProjection)
        conditioning: dict[str, Any] = {"encoder_hidden_states": torch.cat(states, dim=-1)}
        if self.xl:
            width, height = size
            time_ids = torch.tensor([[height, width, 0, 0, height, width]] * len(captions), device=self.device)
            conditioning["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": time_ids.to(self.dtype)}
        return conditioning
