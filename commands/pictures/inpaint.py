"""/inpaint <prompt>: repaint one region of a picture, given in one of three ways:

    /inpaint a red hat --box 10%,0%,50%,40%     x,y,w,h in pixels, or percents of the picture
    /inpaint a red hat  (with a mask attached)  white = repaint, black = keep
    /inpaint a red hat --select hat             words a segmentation model finds (CLIPSeg)

Options: --blur N (the feather's reach in pixels each side of the mask's edge, default 10; pixels
farther from the mask are the picture's own), --only-masked (work on a padded crop at the
model's native size: best for small regions), --padding N (of that crop, default 32), and the
drawing options of /imagine (--strength, --steps, --seed, ...).

Which picture: the one the command replies to, else the first attachment. A mask is then the
other attachment. Box and uploaded masks become a mask PNG here (Pillow only), stored as a blob
beside the picture, so the engine sees one kind of mask.
"""

from __future__ import annotations

import dataclasses
import io
import re

from PIL import Image

from commands.frame.context import Context
from commands.frame.declare import Option, read_flags, read_value
from commands.frame.errors import UserError
from commands.frame.images import decode_upload, first_image
from commands.frame.numbers import quoted
from commands.frame.offload import offload
from commands.frame.types import Attachment, Reply, Request
from commands.jobs.options import InitImage
from commands.jobs.sources import Source, find_source
from commands.pictures.edits import DRAW_OPTIONS, Edit, draw_options, queue_edit
from generation.spec import MASK_BLUR_DEFAULT, MAX_MASK_BLUR, GenerationSpec

_NUMBER = re.compile(r"^\s*([0-9]{1,6}(?:\.[0-9]{1,6})?)\s*(%?)\s*$")  # ASCII digits, no wall of them
MAX_PADDING = 256
BLUR = Option(
    "blur", "int", "Feathering of the mask's edge, in pixels", aliases=("mask-blur",), bounds=(0, MAX_MASK_BLUR), default=MASK_BLUR_DEFAULT
)
ONLY_MASKED = Option(
    "only_masked", "switch", "Redraw only the region, at full resolution, and paste it back", aliases=("masked-only",), default=False
)
PADDING = Option("padding", "int", "With --only-masked: pixels of context around the region", bounds=(0, MAX_PADDING), default=32)
# The region, in one of three ways (also /edit's: commands.pictures.edit)
BOX = Option("box", "text", "The region: x,y,w,h in pixels or percents, e.g. 10%,0%,50%,40%", example="10%,0%,50%,40%")
SELECT = Option("select", "text", "Words naming the region (needs SDBOT_SEGMENTER)", example="the sky")
MASK = Option("mask", "file", "A mask picture: white is repainted")
OPTIONS: tuple[Option, ...] = (
    Option("prompt", "text", "What to paint in the region (and --options)", positional=True, rest=True, required=True),
    Option("image", "file", "The picture to paint on (or reply to one)"),
    BOX,
    SELECT,
    MASK,
    BLUR,
    ONLY_MASKED,
    PADDING,
    *DRAW_OPTIONS,
)


async def inpaint_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags = read_flags(request.options, args, OPTIONS)
    problems = list(flags.problems)
    values = dict(flags.values)
    box_text, select = values.pop("box", None), values.pop("select", None)
    blur = read_value(BLUR, values, ctx.settings, problems, flags.written)
    padding = read_value(PADDING, values, ctx.settings, problems, flags.written)
    only_masked = read_value(ONLY_MASKED, values, ctx.settings, problems, flags.written)
    for name in ("blur", "padding", "only_masked"):
        values.pop(name, None)
    if not flags.text:
        problems.append("Say what to paint there, e.g. `/inpaint a red hat --box 10%,0%,50%,40%`.")
    check_select(ctx, select, problems)
    opts = draw_options(ctx, values, flags.written, flags.text, problems)
    source, mask_file = await _picture_and_mask(ctx, request)
    if source.init is None:
        raise UserError("Reply to a picture with `/inpaint <prompt> --box x,y,w,h`, or attach the picture to it.")
    given = [name for name, value in (("--box", box_text), ("--select", select), ("a mask", mask_file)) if value]
    if len(given) != 1:
        raise UserError(
            "Give the region to repaint in one way: `--box x,y,w,h` (pixels, or percents like `10%,0%,50%,40%`), "
            "`--select <words>`, or a mask image attached (white = repaint)." + (f" You gave {' and '.join(given)}." if given else "")
        )
    extra: tuple[tuple[InitImage, int], ...] = ()
    mask_key = None
    if box_text:
        mask_png = box_mask(box_text, source.init.width, source.init.height)
        mask_key = ctx.blobs.put(mask_png, "png")
        extra = ((InitImage(mask_key, source.init.width, source.init.height), len(mask_png)),)
    elif mask_file is not None:
        mask_png = await offload(uploaded_mask, ctx, mask_file, source.init.width, source.init.height)
        mask_key = ctx.blobs.put(mask_png, "png")
        extra = ((InitImage(mask_key, source.init.width, source.init.height), len(mask_png)),)
    strength = opts.strength if opts.strength is not None else ctx.settings.inpaint_strength

    def shape(ctx: Context, spec: GenerationSpec, init: InitImage, notes: list[str]) -> dict[str, object]:
        return {
            "mask": mask_key,
            "select": select.strip() if select else None,
            "mask_blur": blur,
            "only_masked": only_masked,
            "only_masked_padding": padding,
            "strength": strength,
        }

    return await queue_edit(ctx, request, source, Edit("inpaint", "Inpaint", opts, shape, extra))


def check_select(ctx: Context, select: str | None, problems: list[str]) -> None:
    """`--select`'s problems: no words, or no segmentation model here."""
    if select is not None and not select.strip():
        problems.append("`--select` needs words, e.g. `--select hat`.")
    if select and not ctx.settings.segmenter:
        problems.append(
            "`--select` needs a segmentation model, and none is configured here (an admin sets SDBOT_SEGMENTER). "
            "Give the region with `--box x,y,w,h` or attach a mask instead."
        )


async def _picture_and_mask(ctx: Context, request: Request) -> tuple[Source, Attachment | None]:
    images = [a for a in request.attachments if first_image((a,)) is a]
    if request.reply_to or request.reply_to_images:
        source = await find_source(ctx, dataclasses.replace(request, attachments=()))
        if source.init is not None:
            return source, images[0] if images else None
    source = await find_source(ctx, request)
    return source, images[1] if len(images) > 1 else None


def box_mask(text: str, width: int, height: int) -> bytes:
    """A mask PNG (white box on black) from `x,y,w,h`, each in pixels or percent of the picture."""
    parts = text.split(",")
    numbers = [_NUMBER.match(part) for part in parts]
    if len(parts) != 4 or not all(numbers):
        raise UserError(
            f"`--box` takes four numbers x,y,w,h in pixels or percents (e.g. `--box 10%,0%,50%,40%`); you wrote `{quoted(text)}`."
        )
    values = []
    for match, side in zip(numbers, (width, height, width, height), strict=True):
        assert match is not None
        number = float(match[1])
        values.append(round(number * side / 100) if match[2] else round(number))
    x, y, w, h = values
    x1, y1 = min(width, x + w), min(height, y + h)
    if w <= 0 or h <= 0 or x >= width or y >= height or x1 <= x or y1 <= y:
        raise UserError(f"`--box {text}` covers no part of the {width}x{height} picture. Check x,y (top left) and w,h.")
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (x, y, x1, y1))
    return _png(mask)


def uploaded_mask(ctx: Context, attachment: Attachment, width: int, height: int) -> bytes:
    """The attached mask as black and white at the picture's size (white = repaint). Blocking
    (decoding): handlers run it through `offload`."""
    decoded = decode_upload(attachment, max_bytes=ctx.settings.max_upload_bytes, max_pixels=ctx.settings.max_upload_pixels)
    with Image.open(io.BytesIO(decoded.png)) as image:
        return mask_png(image, width, height)


def mask_png(image: Image.Image, width: int, height: int) -> bytes:
    """`image` as a black-and-white mask PNG at width x height (white, 128 and up, = repaint)."""
    mask = image.convert("L").point(lambda value: 255 if value >= 128 else 0)
    if mask.size != (width, height):
        mask = mask.resize((width, height), Image.Resampling.NEAREST)
    if mask.getbbox() is None:
        raise UserError("The mask is all black, so there is nothing to repaint. Paint the region to change in white.")
    return _png(mask)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
