"""/enhance: a few words in, detailed prompts out, written by a text model (SDBOT_ENHANCER).

    /enhance a fox in the snow --n 3 --seed 7

It is a queued job like a picture (the model runs on the worker, never in the bot): its answer is
the candidate prompts, each with an "Imagine this" button (`commands.candidates`). Candidate i is
written with seed + i, so the same seed gives the same prompts.
"""

from __future__ import annotations

from commands.context import Context
from commands.numbers import quoted, read_int
from commands.options import ImagineOptions, read_options
from commands.parser import parse_flags
from commands.submit import submit
from commands.types import Reply, Request
from generation.spec import GenerationSpec

ENHANCE_FLAGS = {"n": "n", "count": "n", "seed": "seed"}
MAX_CANDIDATES = 4
MAX_SHORT_PROMPT = 300  # characters: the model continues the text; a long one leaves it little room


async def enhance(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags = parse_flags(args, ENHANCE_FLAGS)
    problems = list(flags.problems)
    count = 1
    raw_n = flags.values.pop("n", None)
    if raw_n is not None:
        number = read_int(raw_n)
        if number is None or not 1 <= number <= MAX_CANDIDATES:
            problems.append(f"`--n` is how many prompts to write: 1 to {MAX_CANDIDATES}; you wrote `{quoted(raw_n)}`.")
        else:
            count = number
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
