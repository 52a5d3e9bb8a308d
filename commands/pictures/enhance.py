"""/enhance: a few words in, detailed prompts out, written by a text model (SDBOT_ENHANCER).

    /enhance a fox in the snow --n 3 --seed 7

It is a queued job like a picture (the model runs on the worker, never in the bot): its answer is
the candidate prompts, each with an "Imagine this" button (`commands.pictures.candidates`). Candidate i is
written with seed + i, so the same seed gives the same prompts.
"""

from __future__ import annotations

import dataclasses

from commands.frame.context import Context
from commands.frame.declare import Option, read_flags, read_value
from commands.frame.types import Reply, Request
from commands.jobs.options import SEED, ImagineOptions, read_options
from commands.jobs.submit import submit
from generation.spec import GenerationSpec

MAX_CANDIDATES = 4
COUNT = Option("n", "int", "How many prompts to write", aliases=("count",), bounds=(1, MAX_CANDIDATES), default=1, example="3")
OPTIONS: tuple[Option, ...] = (
    Option("prompt", "text", "A few words to build on", positional=True, rest=True, required=True),
    COUNT,
    dataclasses.replace(SEED, help="The same seed writes the same prompts"),
)
MAX_SHORT_PROMPT = 300  # characters: the model continues the text; a long one leaves it little room


async def enhance(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags = read_flags(request.options, args, OPTIONS)
    problems = list(flags.problems)
    count = read_value(COUNT, flags.values, ctx.settings, problems, flags.written)
    flags.values.pop("n", None)
    text = flags.text.strip()
    if not text:
        problems.insert(0, "Give me a few words to build on, e.g. `/enhance a lighthouse at dusk --n 3`.")
    elif len(text) > MAX_SHORT_PROMPT:
        problems.append(f"That is {len(text)} characters; `/enhance` takes up to {MAX_SHORT_PROMPT}. It is for short prompts.")
    if not ctx.settings.enhancer:
        problems.append(
            "`/enhance` needs a text model, and none is configured here. An admin can set SDBOT_ENHANCER "
            "(e.g. Gustavosta/MagicPrompt-Stable-Diffusion, or any causal language model folder)."
        )
    checked = read_options(flags.values, ctx.settings, ctx.registry, written=flags.written, problems=problems)
    opts = ImagineOptions(prompt=text, seed=checked.seed)

    def shape(spec: GenerationSpec, notes: list[str]) -> GenerationSpec:
        return spec.evolve(kind="enhance", n=count, styles=(), regions=None, base_ratio=None)

    return await submit(ctx, request, opts, shape=shape)
