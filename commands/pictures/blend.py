"""/blend: two to five pictures made into one (Midjourney's).

    /blend                           with 2–5 pictures attached (or replied to, or `--images b3,b5`)
    /blend in autumn light --ar 3:2  a prompt steers it; the drawing options work as in /imagine

How, by the model that draws it (`--model`, else the person's current model):
- a family that draws image references (IP-Adapter: SD 1.x/2.x, SDXL; FLUX.1's IP-Adapter or Redux;
  built-in tiny ones on `tiny` and `tiny-flux`):
  a new drawing whose subject reference is the mean of the pictures' IP-Adapter embeddings, at
  `--ow` (BLEND_WEIGHT by default: stronger than `--oref`'s 100, as there is no other guide when
  the prompt is empty), with the prompt if there is one. The model's square by default (`--ar`).
- a model that edits with several pictures (FLUX.2 Klein, Qwen-Image-Edit-Plus: `Family.edit`):
  an edit of picture 1 with the others beside it, told to blend them (BLEND_INSTRUCTION, the prompt
  after it), up to the model's limit; the first picture's proportions by default.
- any other model: refused, naming the models here that blend.
Reroll, Vary and a reply work on the result as on any picture (the references are in its job).
"""

from __future__ import annotations

import dataclasses

from commands.frame.context import Context
from commands.frame.declare import Option, read_flags
from commands.frame.errors import UserError
from commands.frame.types import Reply, Request
from commands.jobs.admission import asker
from commands.jobs.options import IMAGES, OW, drawing_options, message_ids, picture_files, read_options
from commands.jobs.prompt_features import Picked
from commands.jobs.sources import Source, find_pictures
from commands.jobs.submit import submit
from commands.pictures.edit import edit_limit, edits, queue_instruct
from config.models import ModelEntry
from generation.models.families import family
from generation.spec import GenerationSpec

MIN_PICTURES, MAX_PICTURES = 2, 5  # Midjourney's
BLEND_WEIGHT = 150  # --ow of a blend: IP-Adapter scale 0.9
BLEND_INSTRUCTION = "Blend these {count} pictures into one picture that combines their subjects and styles"
OPTIONS: tuple[Option, ...] = (
    Option("prompt", "text", "What to steer the blend towards (optional; --options work here too)", positional=True, rest=True),
    *picture_files(MAX_PICTURES, "Picture"),
    IMAGES,
    dataclasses.replace(
        OW, help=f"How strongly the pictures count, on models that draw references ({BLEND_WEIGHT}: 1.5x an --oref's)", default=BLEND_WEIGHT
    ),
    *drawing_options("no", "ar", "size", "seed", "steps", "cfg", "sampler", "n", "model"),
)


async def blend_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags = read_flags(request.options, args, OPTIONS)
    values = dict(flags.values)
    ids = message_ids(values.pop("images", None))
    opts = read_options(values, ctx.settings, ctx.registry, written=flags.written, prompt=flags.text, problems=flags.problems)
    async with ctx.db.transaction() as session:
        current = (await asker(session, request)).settings.get("model")
    entry = ctx.registry.get(opts.model or current) or ctx.registry.default
    references = family(entry.family).supports("reference")
    if not references and not (edits(entry) and edit_limit(entry) >= MIN_PICTURES):
        raise UserError(_cannot_blend(ctx, entry))
    most = MAX_PICTURES if references else min(MAX_PICTURES, edit_limit(entry))
    given = len(request.attachments) + len(ids) + (1 if request.reply_to else 0)
    if given < MIN_PICTURES:
        raise UserError(
            f"`/blend` makes {MIN_PICTURES} to {MAX_PICTURES} pictures into one; you gave {given}. Attach them, reply to one and "
            "attach more, or name my pictures' messages with `--images b3,b5`."
        )
    found = await find_pictures(ctx, request, ids, most=most, what=f"`/blend` on `{entry.display_name}`")
    if len(found) < MIN_PICTURES:
        raise UserError(f"`/blend` needs at least {MIN_PICTURES} pictures; I found {len(found)} in your message.")
    if references:
        opts = dataclasses.replace(opts, ow=opts.ow if opts.ow is not None else BLEND_WEIGHT)

        def shape(spec: GenerationSpec, notes: list[str]) -> GenerationSpec:
            return spec.evolve(operation="Blend")

        return await submit(ctx, request, opts, shape=shape, references=[Picked("subject", tuple(found))])
    (first, size), rest = found[0], found[1:]
    instruction = BLEND_INSTRUCTION.format(count=len(found)) + (f". {opts.prompt}" if opts.prompt else "")
    opts = dataclasses.replace(opts, prompt=instruction, model=entry.display_name)
    uploads = tuple((picture, size) for picture, size in rest if size is not None)
    return await queue_instruct(ctx, request, Source(first, size), opts, None, tuple(p.blob_key for p, _ in rest), uploads)


def _cannot_blend(ctx: Context, entry: ModelEntry) -> str:
    able = [e.display_name for e in ctx.registry if family(e.family).supports("reference") or (edits(e) and edit_limit(e) >= MIN_PICTURES)]
    hint = f" Models here that do: {', '.join(f'`{name}`' for name in able)} (`--model NAME`)." if able else ""
    return (
        f"`{entry.display_name}` ({family(entry.family).label}) can't blend pictures: that needs image references (an IP-Adapter) "
        f"or a model that edits with several pictures.{hint}"
    )
