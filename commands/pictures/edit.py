"""/edit: pictures edited by instruction, as a reply to a picture or with pictures attached.

    /edit make it winter
    /edit put the cat from picture 2 on the sofa in picture 1      (two pictures attached)

The picture to edit is the one replied to, else the first attached; further attached pictures are
references ("picture 2", ...), up to the edit model's limit. Which model edits, first that applies:
1. `--model NAME`, which must be one that edits;
2. your current model (/settings), if it edits (FLUX.1 Kontext, Qwen-Image-Edit, FLUX.2 Klein: `Family.edit`);
3. SDBOT_INSTRUCT_MODEL: a model of the registry that edits, or an Instruct Pix2Pix model;
4. the first model of the registry that edits;
5. on the tiny model, the built-in tiny Instruct Pix2Pix.
Instruct Pix2Pix edits one picture, steered by `--image-cfg`; edit models take their own steps and
guidance (`--steps`, `--cfg`). The Edit again button under a result queues the same instruction
on it again (`queue_instruct`), with the same model and references."""

from __future__ import annotations

import dataclasses
from typing import Any

from commands.frame.context import Context
from commands.frame.declare import Option, read_flags, read_value
from commands.frame.errors import UserError
from commands.frame.images import first_image
from commands.frame.types import Reply, Request
from commands.jobs.admission import asker
from commands.jobs.options import ImagineOptions, InitImage, drawing_options, picture_size, read_options
from commands.jobs.sources import Source, find_source
from commands.jobs.submit import store_upload, submit
from config.models import ModelEntry, default_name
from generation.control.catalog import TINY_PIX2PIX
from generation.models import families
from generation.spec import GenerationSpec

IMAGE_CFG = Option(
    "image_cfg",
    "float",
    "How closely to keep the picture (image guidance; Instruct Pix2Pix)",
    aliases=("image-cfg-scale", "icfg"),
    bounds=(0, 10),
    default=lambda s: s.instruct_image_cfg,
    example="1.5",
)
OPTIONS: tuple[Option, ...] = (
    Option("instruction", "text", "What to change, e.g. make it winter (and --options)", positional=True, rest=True, required=True),
    Option("image", "file", "The picture to edit (or reply to one); attach more as references where the model takes them"),
    IMAGE_CFG,
    *drawing_options("no", "seed", "steps", "cfg", "sampler", "n", "size", "ar", "model"),
)
PIX2PIX_PICTURES = 1


def edits(entry: ModelEntry | None) -> bool:
    """Whether a registry model edits by instruction (its family and variant have an edit pipeline)."""
    return entry is not None and families.family(entry.family).edit_pipeline(entry.guessed_variant) is not None


def edit_limit(entry: ModelEntry) -> int:
    edit = families.family(entry.family).edit
    assert edit is not None
    return edit.limit(entry.guessed_variant)


def instruct_model_name(ctx: Context) -> str:
    """The name of the Instruct Pix2Pix model /edit runs on when no edit model applies; UserError when there is none."""
    if ctx.settings.instruct_model:
        return default_name(ctx.settings.instruct_model)
    if ctx.registry.default.kind == "tiny":
        return TINY_PIX2PIX
    raise UserError(
        "/edit needs a model that edits by instruction, and none is set up here. An admin adds a FLUX.1 Kontext, Qwen-Image-Edit or "
        "FLUX.2 Klein model (SDBOT_MODELS), or sets SDBOT_INSTRUCT_MODEL to one, or to an Instruct Pix2Pix model "
        "(e.g. timbrooks/instruct-pix2pix, downloaded once)."
    )


def choose_model(ctx: Context, asked: str | None, current: str | None) -> ModelEntry | None:
    """The registry model that edits this request (module docstring), or None for Instruct Pix2Pix."""
    if asked is not None:
        entry = ctx.registry.get(asked)
        if not edits(entry):
            able = [e.display_name for e in ctx.registry if edits(e)]
            fam = families.family(entry.family) if entry is not None else None
            what = f"`{asked}` ({fam.variant(entry.guessed_variant).label or fam.label})" if entry and fam else f"`{asked}`"
            hint = f" Models here that do: {', '.join(f'`{n}`' for n in able)}." if able else ""
            raise UserError(f"{what} doesn't edit pictures by instruction.{hint}")
        return entry
    for name in (current, ctx.settings.instruct_model and default_name(ctx.settings.instruct_model)):
        entry = ctx.registry.get(name) if name else None
        if edits(entry):
            return entry
    if ctx.settings.instruct_model:
        return None  # an Instruct Pix2Pix model
    return next((entry for entry in ctx.registry if edits(entry)), None)


async def edit_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags = read_flags(request.options, args, OPTIONS)
    values = dict(flags.values)
    problems = list(flags.problems)
    image_cfg = read_value(IMAGE_CFG, values, ctx.settings, problems, flags.written)
    values.pop("image_cfg", None)
    opts = read_options(values, ctx.settings, ctx.registry, written=flags.written, prompt=flags.text, problems=problems)
    if not opts.prompt:
        raise UserError("Say what to change, e.g. `/edit make it winter` as a reply to a picture.")
    async with ctx.db.transaction() as session:
        current = (await asker(session, request)).settings.get("model") or ctx.registry.default.display_name
    entry = choose_model(ctx, opts.model, current)
    limit = edit_limit(entry) if entry is not None else PIX2PIX_PICTURES
    source, uploads = await edit_pictures(ctx, request, limit, entry)
    if entry is not None:
        opts = dataclasses.replace(opts, model=entry.display_name)
    references = tuple(picture.blob_key for picture, _ in uploads)
    return await queue_instruct(ctx, request, source, opts, None if entry is not None else image_cfg, references, uploads)


async def edit_pictures(
    ctx: Context, request: Request, limit: int, entry: ModelEntry | None
) -> tuple[Source, tuple[tuple[InitImage, int], ...]]:
    """The picture to edit (the replied one, else the first attached) and the references after it
    (the other attached pictures, stored, with their PNG sizes), checked against `limit` before any
    is read."""
    attached = tuple(a for a in request.attachments if first_image((a,)) is not None)
    replied = await find_source(ctx, dataclasses.replace(request, attachments=())) if request.reply_to else Source()
    count = len(attached) + (1 if replied.init is not None else 0)
    if count == 0:
        raise UserError("`/edit` changes a picture: reply to one with `/edit <instruction>`, or attach one to it.")
    if count > limit:
        what = "Instruct Pix2Pix" if entry is None else f"`{entry.display_name}`"
        more = "" if entry is not None else " For several pictures, use a model that takes references (FLUX.2 Klein) with --model."
        raise UserError(f"{what} edits with at most {limit} picture{'s' if limit > 1 else ''}; you gave {count}.{more}")
    stored = [await store_upload(ctx, attachment) for attachment in attached]
    pictures = ([replied.init] if replied.init is not None else []) + [picture for picture, _ in stored]
    support = families.family(entry.family).edit if entry is not None else None
    for number, picture in enumerate(pictures, 1):
        long, short = max(picture.width, picture.height), min(picture.width, picture.height)
        if support is not None and support.max_aspect and long > support.max_aspect * short:
            raise UserError(
                f"Picture {number} is {picture.width}x{picture.height}, longer than {support.max_aspect:g}:1, which "
                f"`{entry.display_name}` can't take; crop it and send it again."  # type: ignore[union-attr]
            )
    if replied.init is not None:
        return replied, tuple(stored)
    (first, size), rest = stored[0], stored[1:]
    return Source(first, size), tuple(rest)


async def queue_instruct(
    ctx: Context,
    request: Request,
    source: Source,
    opts: ImagineOptions,
    image_cfg: float | None,
    references: tuple[str, ...] = (),
    uploads: tuple[tuple[InitImage, int], ...] = (),
) -> list[Reply]:
    """An /edit job on the picture of `source` (/edit, and the Edit again button): on `opts.model`
    when it is a model that edits, with `references` (blob keys) beside it, else Instruct Pix2Pix
    with `image_cfg`. `uploads`: references stored by this request (recorded with the job)."""
    entry = ctx.registry.get(opts.model) if opts.model else None
    name = entry.display_name if edits(entry) else instruct_model_name(ctx)
    init = source.init
    assert init is not None

    def shape(spec: GenerationSpec, notes: list[str]) -> GenerationSpec:
        fields: dict[str, Any] = {
            "kind": "instruct",
            "model": name,
            "init_image": init.blob_key,
            "edit_images": references,
            "strength": None,
            "image_cfg": image_cfg if not edits(entry) else None,
            "operation": "Edit",
            "controls": (),
            "tile": False,
            "vae": None,
            "regions": None,
            "base_ratio": None,
            "clip_skip": None,
        }
        if opts.size is None and opts.ar is None:
            if edits(entry):
                assert entry is not None
                multiple = families.family(entry.family).size_multiple
                fields |= dict(zip(("width", "height"), picture_size(init, entry.native_size, ctx.settings, notes, multiple), strict=True))
            else:  # instruct models are SD 1.x-sized; tiny's is 64 px
                native = ctx.registry.default.native_size if name == TINY_PIX2PIX else 512
                fields |= dict(zip(("width", "height"), picture_size(init, native, ctx.settings, notes), strict=True))
        return spec.evolve(**fields)

    extra = ((init, source.upload_size),) if source.upload_size is not None else ()
    return await submit(ctx, request, opts, parent=source.parent, shape=shape, extra_blobs=(*extra, *uploads))
