"""Which conditioning each sampling step gets: A1111's prompt editing (`[from:to:when]`) and
alternation (`[a|b]`), applied through the pipeline's step callback.

The schedule comes from `generation.prompts.schedule` (A1111's, entry for entry). Every distinct
text is encoded once, all padded to the same number of chunks so they can replace each other in
the running pipeline. Step i (0-based, as A1111's sampler counts) uses the first schedule entry
with i <= end_at_step, exactly A1111's `reconstruct_cond_batch`: so `[a:b:10]` conditions the
first 11 steps with `a`, as in A1111, and prompts pasted from it switch at the same step.
For img2img-like jobs the schedule runs over the steps actually run (steps x strength).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from generation.prompts.encoder import Conditioning, encode_texts
from generation.prompts.schedule import has_schedule, prompt_schedule
from generation.spec import GenerationSpec


@dataclass(frozen=True)
class PromptConditions:
    per_step: tuple[Conditioning, ...]  # the conditioning of step i (0-based), one per step run
    images: int  # images per prompt: the pipeline repeats the embeddings this many times
    sdxl: bool

    @classmethod
    def build(cls, pipe: Any, spec: GenerationSpec, steps_run: int, *, images: int) -> PromptConditions:
        clip_skip = spec.clip_skip or 1
        sdxl = getattr(pipe, "text_encoder_2", None) is not None
        if not has_schedule(spec.prompt) or steps_run < 1:
            [only] = encode_texts(pipe, [spec.prompt], spec.negative_prompt, clip_skip=clip_skip)
            return cls((only,), images, sdxl)
        schedule = prompt_schedule(spec.prompt, steps_run)
        texts = list(dict.fromkeys(text for _, text in schedule))
        encoded = dict(zip(texts, encode_texts(pipe, texts, spec.negative_prompt, clip_skip=clip_skip), strict=True))
        per_step = tuple(encoded[next(text for end, text in schedule if i <= end)] for i in range(steps_run))
        return cls(per_step, images, sdxl)

    @classmethod
    def side_by_side(cls, encoded: list[Conditioning], images: list[int]) -> PromptConditions:
        """Several jobs' conditionings (one schedule entry each, equal lengths) as one batch: job
        j's rows repeated for its `images[j]` pictures, in job order, exactly as the pipeline
        repeats a single prompt's rows, so each picture sees what it sees alone."""

        def rows(name: str) -> torch.Tensor | None:
            parts = [getattr(c, name) for c in encoded]
            if parts[0] is None:
                return None
            return torch.cat([part.repeat_interleave(n, dim=0) for part, n in zip(parts, images, strict=True)])

        sdxl = encoded[0].pooled_prompt_embeds is not None
        together = Conditioning(
            rows("prompt_embeds"),
            rows("negative_prompt_embeds"),  # type: ignore[arg-type]
            rows("pooled_prompt_embeds"),
            rows("negative_pooled_prompt_embeds"),
        )
        return cls((together,), 1, sdxl)

    def first(self) -> Conditioning:
        return self.per_step[0]

    def tensor_inputs(self) -> list[str]:
        """What the step callback may replace (and so what diffusers must hand it)."""
        inputs = ["latents"]
        if len(self.per_step) > 1:
            inputs += ["prompt_embeds", "add_text_embeds"] if self.sdxl else ["prompt_embeds"]
        return inputs

    def switch(self, pipeline: Any, next_step: int) -> dict[str, torch.Tensor]:
        """Tensors for the step callback: the next step's conditioning where it changes."""
        if next_step >= len(self.per_step) or self.per_step[next_step] is self.per_step[next_step - 1]:
            return {}
        now = self.per_step[next_step]
        guided = pipeline.do_classifier_free_guidance
        changed = {"prompt_embeds": self._batch(now.negative_prompt_embeds, now.prompt_embeds, guided)}
        if self.sdxl:
            assert now.pooled_prompt_embeds is not None and now.negative_pooled_prompt_embeds is not None
            changed["add_text_embeds"] = self._batch(now.negative_pooled_prompt_embeds, now.pooled_prompt_embeds, guided)
        return changed

    def _batch(self, negative: torch.Tensor, positive: torch.Tensor, guided: bool) -> torch.Tensor:
        """As the pipeline lays out its batch: each prompt repeated per image, negatives first."""
        repeat = (self.images,) + (1,) * (positive.dim() - 1)
        positive = positive.repeat(*repeat)
        return torch.cat([negative.repeat(*repeat), positive]) if guided else positive
