"""The jobs that answer with text: `/enhance` (a text model writes detailed prompts from a short
one) and `/describe` of a picture without settings (a captioner and CLIP look at it). Their
candidates become the job's `result`; the models are `generation.text_models`, loaded on first
use by the engine's tools."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from generation.engine import Engine
from generation.spec import GenerationSpec


def enhance(engine: Engine, spec: GenerationSpec, should_stop: Callable[[], bool]) -> list[dict[str, Any]]:
    prompts = engine.tools.enhancer().generate(
        spec.prompt,
        count=spec.n,
        seed=spec.seed,
        max_new_tokens=engine.tools.enhance_max_new_tokens,
        should_stop=should_stop,
    )
    return [{"prompt": text} for text in prompts]


def describe(engine: Engine, spec: GenerationSpec, should_stop: Callable[[], bool]) -> list[dict[str, Any]]:
    image = engine.init_image(spec)
    prompts = engine.tools.interrogator().describe(image, count=spec.n, should_stop=should_stop)
    # Drawn at the picture's proportions, as the user saw it.
    return [{"prompt": text, "options": {"size": f"{spec.width}x{spec.height}"}} for text in prompts]
