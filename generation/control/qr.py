"""QR codes for `/control qr <text> <prompt>`: the code that a QR ControlNet (QR Code Monster
and the like) hides in a picture. Made with segno at high error correction (H: 30% of the code
may be lost and it still reads), which is what lets the picture's detail cover parts of it.
Torch-free: the command layer checks the text before queueing, the engine draws the map."""

from __future__ import annotations

import io

import segno
from PIL import Image

MAX_VERSION = 10  # 57x57 modules: larger codes are too fine to survive being drawn into a picture
QUIET_ZONE = 4  # modules of margin, as the standard asks


class QRTextError(ValueError):
    """The text cannot be a code sdbot hides in a picture; the message says why."""


def make_code(text: str) -> segno.QRCode:
    if not text:
        raise QRTextError("Give the text for the code, e.g. `/control qr https://example.com a mountain village`.")
    try:
        code = segno.make(text, error="h", micro=False, boost_error=False)
    except segno.DataOverflowError:
        code = None
    if code is None or int(code.version) > MAX_VERSION:
        raise QRTextError(
            f"`{text[:60]}{'…' if len(text) > 60 else ''}` ({len(text.encode())} bytes) is too long for a QR code that "
            f"still reads once hidden in a picture: at high error correction, version {MAX_VERSION} holds 119 bytes. "
            "Use a shorter link (a URL shortener helps)."
        )
    return code


def qr_map(text: str, width: int, height: int) -> Image.Image:
    """The code, black on white, as large as whole pixels per module allow, centred on a white
    `width` x `height` canvas (RGB, as ControlNets take their maps)."""
    code = make_code(text)
    modules = code.symbol_size(scale=1, border=QUIET_ZONE)[0]
    scale = max(1, min(width, height) // modules)
    buffer = io.BytesIO()
    code.save(buffer, kind="png", scale=scale, border=QUIET_ZONE, dark="black", light="white")
    with Image.open(buffer) as drawn:
        symbol = drawn.convert("RGB")
    canvas = Image.new("RGB", (width, height), "white")
    canvas.paste(symbol, ((width - symbol.width) // 2, (height - symbol.height) // 2))
    return canvas
