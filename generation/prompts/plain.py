"""Prompts for families whose pipelines encode text themselves (FLUX.1, Chroma: T5 and CLIP's
pooled output through the pipeline's own `encode_prompt`), so a picture equals bare diffusers'.

A1111's syntax still parses the same way: `<lora:…>` tags are taken out (the job's LoRAs are
already in its spec) and escapes such as `\\(` become the characters they stand for. Weights,
BREAK and prompt editing are refused before such a job is queued (commands.jobs.model_fit),
so here every fragment has weight 1 and the text is the fragments joined.

The object has the shape of `PromptConditions` where the engine uses it: `first()`,
`pipeline_arguments()`, `tensor_inputs()`, `switch()` and `images`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from generation.prompts.lora_tags import strip_lora_tags
from generation.prompts.weights import parse_prompt_attention
from generation.spec import GenerationSpec


def plain_text(prompt: str) -> str:
    """The text a plain-text encoder reads: LoRA tags out, escapes resolved, whitespace tidied."""
    fragments = parse_prompt_attention(strip_lora_tags(prompt))
    text = "".join(piece for piece, weight in fragments if weight != -1.0)
    return " ".join(text.split())


@dataclass(frozen=True)
class PlainPrompts:
    prompts: tuple[str, ...]  # one per prompt row; the pipeline repeats each `images` times
    negatives: tuple[str, ...] | None  # None: the family has no negative prompt
    images: int

    @classmethod
    def build(cls, spec: GenerationSpec, *, images: int, negative: str | None) -> PlainPrompts:
        """`negative`: what stands for an empty negative prompt ("", or a family's blank one); None
        for a family without negative prompts."""
        negatives = None if negative is None else (plain_text(spec.negative_prompt) or negative,)
        return cls((plain_text(spec.prompt),), negatives, images)

    @classmethod
    def side_by_side(cls, specs: list[GenerationSpec], *, negative: str | None) -> PlainPrompts:
        """Several jobs as one batch: each job's prompt once per picture of it, in job order."""
        prompts = tuple(plain_text(spec.prompt) for spec in specs for _ in range(spec.n))
        negatives = (
            None if negative is None else tuple(plain_text(spec.negative_prompt) or negative for spec in specs for _ in range(spec.n))
        )
        return cls(prompts, negatives, 1)

    def first(self) -> PlainPrompts:
        return self

    def pipeline_arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {"prompt": list(self.prompts)}
        if self.negatives is not None:
            arguments["negative_prompt"] = list(self.negatives)
        return arguments

    def tensor_inputs(self) -> list[str]:
        return ["latents"]

    def switch(self, pipeline: Any, next_step: int) -> dict[str, Any]:
        return {}  # one prompt for every step: prompt editing is refused for these families
