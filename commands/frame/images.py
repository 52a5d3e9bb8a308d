"""Images users send us: checked, oriented, and stored as PNG blobs before any job uses them.

Limits (from the settings): file size, a format allowlist, and a pixel count checked from the
header before a single pixel is decoded (a decompression bomb never reaches memory).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from commands.frame.errors import UserError
from commands.frame.types import Attachment

ALLOWED_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "GIF": "GIF (first frame)", "BMP": "BMP"}


@dataclass(frozen=True)
class DecodedImage:
    png: bytes
    width: int
    height: int


def decode_upload(attachment: Attachment, *, max_bytes: int, max_pixels: int) -> DecodedImage:
    """The upload checked, oriented and PNG-encoded. Blocking (decoding): handlers run it through
    `commands.frame.offload` (as `commands.jobs.submit.store_upload` does)."""
    name = attachment.filename or "your file"
    if len(attachment.data) > max_bytes:
        raise UserError(
            f"`{name}` is {len(attachment.data) / 2**20:.1f} MiB; I take images up to {max_bytes / 2**20:.0f} MiB. "
            "Send a smaller or more compressed image."
        )
    formats = ", ".join(ALLOWED_FORMATS.values())
    try:
        with Image.open(io.BytesIO(attachment.data), formats=list(ALLOWED_FORMATS)) as image:
            width, height = image.size  # from the header: nothing decoded yet
            if width * height > max_pixels:
                raise UserError(
                    f"`{name}` is {width}x{height} ({width * height / 1e6:.0f} megapixels); "
                    f"the limit is {max_pixels / 1e6:.0f} megapixels. Downscale it and send it again."
                )
            image.seek(0)
            image = ImageOps.exif_transpose(image)
            rgb = _to_rgb(image)
    except UserError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        raise UserError(f"I can't read `{name}` as an image. Send a {formats} file.") from None
    out = io.BytesIO()
    rgb.save(out, format="PNG")
    return DecodedImage(out.getvalue(), rgb.width, rgb.height)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Flatten transparency onto white (what a person sees in a chat), then RGB."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def first_image(attachments: tuple[Attachment, ...]) -> Attachment | None:
    """The first attachment that may be an image (by type or name); others are ignored here."""
    for attachment in attachments:
        kind = (attachment.content_type or "").lower()
        name = attachment.filename.lower()
        if kind.startswith("image/") or name.endswith((".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")):
            return attachment
    return attachments[0] if attachments else None
