"""/edit: a picture edited by instruction (Instruct Pix2Pix), as a reply to a picture or with one
attached.

    /edit make it winter --image-cfg 1.5

The Edit again button under an edited picture queues the same instruction again (`queue_instruct`)."""

from __future__ import annotations

from typing import Any

from commands.frame.context import Context
from commands.frame.declare import Option, read_flags, read_value
from commands.frame.errors import UserError
from commands.frame.types import Reply, Request
from commands.jobs.options import ImagineOptions, drawing_options, picture_size, read_options
from commands.jobs.sources import Source, find_source
from commands.jobs.submit import submit
from config.models import default_name
from generation.control.catalog import TINY_PIX2PIX
from generation.spec import GenerationSpec

IMAGE_CFG = Option(
    "image_cfg",
    "float",
    "How closely to keep the picture (image guidance)",
    aliases=("image-cfg-scale", "icfg"),
    bounds=(0, 10),
    default=lambda s: s.instruct_image_cfg,
    example="1.5",
)
OPTIONS: tuple[Option, ...] = (
    Option("instruction", "text", "What to change, e.g. make it winter (and --options)", positional=True, rest=True, required=True),
    Option("image", "file", "The picture to edit (or reply to one)"),
    IMAGE_CFG,
    *drawing_options("no", "seed", "steps", "cfg", "sampler", "n", "size", "ar"),
)


def instruct_model_name(ctx: Context) -> str:
    """The name of the Instruct Pix2Pix model /edit runs on; UserError when there is none."""
    if ctx.settings.instruct_model:
        return default_name(ctx.settings.instruct_model)
    if ctx.registry.default.kind == "tiny":
        return TINY_PIX2PIX
    raise UserError(
        "/edit needs an Instruct Pix2Pix model, and none is configured here. An admin sets SDBOT_INSTRUCT_MODEL "
        "(e.g. timbrooks/instruct-pix2pix, downloaded once)."
    )


async def edit_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags = read_flags(request.options, args, OPTIONS)
    values = dict(flags.values)
    problems = list(flags.problems)
    image_cfg = read_value(IMAGE_CFG, values, ctx.settings, problems, flags.written)
    values.pop("image_cfg", None)
    opts = read_options(values, ctx.settings, ctx.registry, written=flags.written, prompt=flags.text, problems=problems)
    if not opts.prompt:
        raise UserError("Say what to change, e.g. `/edit make it winter` as a reply to a picture.")
    source = await find_source(ctx, request)
    if source.init is None:
        raise UserError("`/edit` changes a picture: reply to one with `/edit <instruction>`, or attach one to it.")
    return await queue_instruct(ctx, request, source, opts, image_cfg)


async def queue_instruct(ctx: Context, request: Request, source: Source, opts: ImagineOptions, image_cfg: float) -> list[Reply]:
    """An Instruct Pix2Pix job on the picture of `source` (/edit, and the Edit again button)."""
    name = instruct_model_name(ctx)
    init = source.init
    assert init is not None

    def shape(spec: GenerationSpec, notes: list[str]) -> GenerationSpec:
        fields: dict[str, Any] = {
            "kind": "instruct",
            "model": name,
            "init_image": init.blob_key,
            "strength": None,
            "image_cfg": image_cfg,
            "operation": "Edit",
            "controls": (),
            "tile": False,
            "vae": None,
            "regions": None,
            "base_ratio": None,
            "clip_skip": None,
        }
        if opts.size is None and opts.ar is None:  # instruct models are SD 1.x-sized; tiny's is 64 px
            native = ctx.registry.default.native_size if name == TINY_PIX2PIX else 512
            fields |= dict(zip(("width", "height"), picture_size(init, native, ctx.settings, notes), strict=True))
        return spec.evolve(**fields)

    extra = ((init, source.upload_size),) if source.upload_size is not None else ()
    return await submit(ctx, request, opts, parent=source.parent, shape=shape, extra_blobs=extra)
