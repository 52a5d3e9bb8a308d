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
on it again (`queue_instruct`), with the same model, references and region.

A masked edit changes only a region, given as /inpaint takes it (its options, declared there):

    /edit make the hat red --box 10%,0%,50%,40%     x,y,w,h in pixels, or percents of the picture
    /edit make the hat red --select hat             words a segmentation model finds
    /edit make the hat red  (a mask attached last)  black and white, white = edit

It runs the model's inpaint pipeline (`EditSupport.inpaint_pipelines`: FLUX.1 Kontext, Qwen-Image-
Edit, FLUX.2 Klein; generation.jobs.instruct), and pixels outside the (feathered, `--blur`) mask
stay the picture's own. An attached picture is the mask when it is the last of two or more and
black and white in the proportions of the picture to edit (`attached_mask`); else it is a
reference. Instruct Pix2Pix and the variants without an inpaint pipeline (Qwen-Image-Edit-Plus)
are refused before anything is read or queued, with the models that do it."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import numpy as np
from PIL import Image

from commands.frame.context import Context
from commands.frame.declare import Option, read_flags, read_value
from commands.frame.errors import UserError
from commands.frame.images import decode_upload, first_image
from commands.frame.offload import offload
from commands.frame.types import Attachment, Reply, Request
from commands.jobs.admission import asker
from commands.jobs.options import ImagineOptions, InitImage, drawing_options, picture_files, picture_size, read_options
from commands.jobs.sources import Source, find_source
from commands.jobs.submit import store_upload, submit
from commands.pictures.inpaint import BLUR, BOX, MASK, SELECT, box_mask, check_select, mask_png
from config.models import ModelEntry, default_name
from generation.control.catalog import TINY_PIX2PIX
from generation.models import families
from generation.spec import MASK_BLUR_DEFAULT, GenerationSpec

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
    *picture_files(4, "Picture")[1:],  # image2..image4: Discord takes one file per option
    MASK,
    IMAGE_CFG,
    BOX,
    SELECT,
    BLUR,
    *drawing_options("no", "seed", "steps", "cfg", "sampler", "n", "size", "ar", "model"),
)
PIX2PIX_PICTURES = 1
# An attached picture is a mask when it is black and white: every pixel grey (its channels within
# MASK_GREY of each other), MASK_SHARE of them within MASK_GREY of black or of white, some white,
# in the proportions of the picture to edit (within MASK_ASPECT). JPEG's fringes pass.
MASK_GREY = 32
MASK_SHARE = 0.97
MASK_ASPECT = 0.02
MASK_RULE = "a mask is the last picture, black and white (white = edit), in the picture's proportions"


@dataclasses.dataclass(frozen=True)
class Region:
    """Where a masked edit changes the picture, in /inpaint's spec fields: a mask blob (from
    `--box`, or a mask attached) or words to segment (`--select`), and the feather's reach."""

    mask: str | None = None
    select: str | None = None
    blur: int = MASK_BLUR_DEFAULT


def edits(entry: ModelEntry | None) -> bool:
    """Whether a registry model edits by instruction (its family and variant have an edit pipeline)."""
    return entry is not None and families.family(entry.family).edit_pipeline(entry.guessed_variant) is not None


def edit_limit(entry: ModelEntry) -> int:
    edit = families.family(entry.family).edit
    assert edit is not None
    return edit.limit(entry.guessed_variant)


def edits_masked(entry: ModelEntry | None) -> bool:
    """Whether a registry model edits inside a mask (its variant has an inpaint pipeline for it)."""
    return entry is not None and families.family(entry.family).edit_inpaint_pipeline(entry.guessed_variant) is not None


def masked_limit(entry: ModelEntry | None) -> int:
    """How many pictures a masked edit on `entry` takes (0: it has none, as Instruct Pix2Pix, `entry` None)."""
    edit = families.family(entry.family).edit if entry is not None else None
    return edit.inpaint_limit(entry.guessed_variant) if edit is not None and entry is not None else 0


def check_masked(ctx: Context, entry: ModelEntry | None, how: str) -> None:
    """A UserError unless `entry` edits inside a mask; `how`: what made the edit masked."""
    if edits_masked(entry):
        return
    if entry is None:
        what = "Instruct Pix2Pix"
    else:
        fam = families.family(entry.family)
        what = f"`{entry.display_name}` ({fam.variant(entry.guessed_variant).label or fam.label})"
    able = [e.display_name for e in ctx.registry if edits_masked(e)]
    hint = f" Models here that do: {', '.join(f'`{n}`' for n in able)} (`--model NAME`)." if able else ""
    raise UserError(
        f"{what} can't edit inside a region (you gave {how}). Use `/inpaint <what to paint there>` with the same region, or "
        f"an edit model with an inpaint pipeline (FLUX.1 Kontext, Qwen-Image-Edit, FLUX.2 Klein).{hint}"
    )


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
    blur = read_value(BLUR, values, ctx.settings, problems, flags.written)
    box_text, select = values.pop("box", None), values.pop("select", None)
    for name in ("image_cfg", "blur"):
        values.pop(name, None)
    given = [f"`{name}`" for name, value in (("--box", box_text), ("--select", select)) if value]
    if len(given) > 1:
        problems.append(_one_region(given))
    check_select(ctx, select, problems)
    opts = read_options(values, ctx.settings, ctx.registry, written=flags.written, prompt=flags.text, problems=problems)
    if not opts.prompt:
        raise UserError("Say what to change, e.g. `/edit make it winter` as a reply to a picture.")
    async with ctx.db.transaction() as session:
        current = (await asker(session, request)).settings.get("model") or ctx.registry.default.display_name
    entry = choose_model(ctx, opts.model, current)
    if given:
        check_masked(ctx, entry, given[0])
    source, uploads, attached = await edit_pictures(ctx, request, entry, region=given[0] if given else None)
    if entry is not None:
        opts = dataclasses.replace(opts, model=entry.display_name)
    references = tuple(picture.blob_key for picture, _ in uploads)
    region = None
    if given or attached is not None:
        init = source.init
        assert init is not None
        mask = attached if attached is not None else box_mask(box_text, init.width, init.height) if box_text else None
        mask_key = None
        if mask is not None:
            mask_key = ctx.blobs.put(mask, "png")
            uploads = (*uploads, (InitImage(mask_key, init.width, init.height), len(mask)))
        region = Region(mask_key, select.strip() if select else None, blur)
    image_cfg = None if entry is not None else image_cfg
    return await queue_instruct(ctx, request, source, opts, image_cfg, references, uploads, region=region)


def _one_region(given: list[str]) -> str:
    return (
        "Give the region to edit in one way: `--box x,y,w,h` (pixels, or percents like `10%,0%,50%,40%`), `--select <words>`, "
        f"or a mask attached (black and white, white = edit). You gave {' and '.join(given)}."
    )


async def edit_pictures(
    ctx: Context, request: Request, entry: ModelEntry | None, *, region: str | None = None
) -> tuple[Source, tuple[tuple[InitImage, int], ...], bytes | None]:
    """The picture to edit (the replied one, else the first attached), the references after it
    (the other attached pictures, stored, with their PNG sizes) and a mask attached (a mask PNG at
    the picture's size, or None), counted against the model's limits before any is read but the
    picture and a possible mask. `region`: the flag that gives the region (`--box`, `--select`), if one does."""
    attached = tuple(a for a in request.attachments if first_image((a,)) is not None)
    replied = await find_source(ctx, dataclasses.replace(request, attachments=())) if request.reply_to else Source()
    count = len(attached) + (1 if replied.init is not None else 0)
    if count == 0:
        raise UserError("`/edit` changes a picture: reply to one with `/edit <instruction>`, or attach one to it.")
    plain = edit_limit(entry) if entry is not None else PIX2PIX_PICTURES
    masked = masked_limit(entry)
    if count > (masked if region else max(plain, masked) + 1):  # the most it could take (a mask attached counts too)
        raise UserError(_too_many(entry, masked if region else plain, count, masked, inside=bool(region)))
    stored = [await store_upload(ctx, attached[0])] if replied.init is None else []
    first = replied.init if replied.init is not None else stored[0][0]
    mask = await offload(attached_mask, ctx, attached[-1], first.width, first.height) if count > 1 else None
    if mask is not None:
        if region:
            raise UserError(_one_region([region, "a mask"]))
        check_masked(ctx, entry, "a mask: the last picture is black and white, in the picture's proportions")
        attached, count = attached[:-1], count - 1
    limit = masked if region or mask is not None else plain
    if count > limit:
        raise UserError(_too_many(entry, limit, count, masked, inside=bool(region) or mask is not None))
    stored += [await store_upload(ctx, attachment) for attachment in attached[len(stored) :]]
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
        return replied, tuple(stored), mask
    (picture, size), rest = stored[0], stored[1:]
    return Source(picture, size), tuple(rest), mask


def _too_many(entry: ModelEntry | None, limit: int, count: int, masked: int, *, inside: bool = False) -> str:
    what = "Instruct Pix2Pix" if entry is None else f"`{entry.display_name}`"
    how = "edits inside a mask" if inside else "edits"
    more = "" if entry is not None else " For several pictures, use a model that takes references (FLUX.2 Klein) with --model."
    if masked and not inside:
        more += f" (To edit inside a region: {MASK_RULE}.)"
    return f"{what} {how} with at most {limit} picture{'s' if limit > 1 else ''}; you gave {count}.{more}"


def attached_mask(ctx: Context, attachment: Attachment, width: int, height: int) -> bytes | None:
    """The attached picture as a mask PNG at width x height (`inpaint.mask_png`) when it is one:
    black and white in the picture's proportions (MASK_GREY, MASK_SHARE, MASK_ASPECT), with some
    white; else None (a reference). Blocking (decoding): handlers run it through `offload`."""
    decoded = decode_upload(attachment, max_bytes=ctx.settings.max_upload_bytes, max_pixels=ctx.settings.max_upload_pixels)
    if abs(decoded.width / decoded.height - width / height) > MASK_ASPECT * width / height:
        return None
    with Image.open(io.BytesIO(decoded.png)) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
        grey = rgb.mean(axis=2)
        if int(np.ptp(rgb, axis=2).max()) > MASK_GREY:
            return None
        levels = (grey <= MASK_GREY) | (grey >= 255 - MASK_GREY)
        if levels.mean() < MASK_SHARE or not (grey >= 255 - MASK_GREY).any():
            return None
        return mask_png(image, width, height)


async def queue_instruct(
    ctx: Context,
    request: Request,
    source: Source,
    opts: ImagineOptions,
    image_cfg: float | None,
    references: tuple[str, ...] = (),
    uploads: tuple[tuple[InitImage, int], ...] = (),
    *,
    region: Region | None = None,
) -> list[Reply]:
    """An /edit job on the picture of `source` (/edit, and the Edit again button): on `opts.model`
    when it is a model that edits, with `references` (blob keys) beside it, else Instruct Pix2Pix
    with `image_cfg`. `uploads`: references (and a mask) stored by this request (recorded with the
    job). `region`: where a masked edit changes the picture (on a model that edits inside a mask)."""
    entry = ctx.registry.get(opts.model) if opts.model else None
    name = entry.display_name if edits(entry) else instruct_model_name(ctx)
    init = source.init
    assert init is not None
    if region is not None:
        check_masked(ctx, entry if edits(entry) else None, "a region")
    masking: dict[str, Any] = {"mask": None, "select": None, "mask_blur": MASK_BLUR_DEFAULT, "only_masked": False}
    if region is not None and entry is not None:
        support = families.family(entry.family).edit
        assert support is not None
        masking = {"mask": region.mask, "select": region.select, "mask_blur": region.blur, "only_masked": False}
        masking["strength"] = support.inpaint_strength

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
            **masking,
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
