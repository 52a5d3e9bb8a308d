"""Where the texts are: PNG chunks and EXIF, read without decoding a single pixel.

`read_fields` gives every metadata text an image carries, keyed by name (first one wins):

- PNG: `tEXt`, `zTXt` and `iTXt` chunks (at most MAX_TEXT_CHUNKS of them, each at most MAX_CHUNK
  bytes, inflated with a cap so a zip bomb stays small), and an `eXIf` chunk. The chunks are walked
  here rather than through Pillow's `PngImageFile.text`, which decodes the whole image to find
  trailing chunks; IDAT is skipped over, never inflated.
- JPEG / WebP / MPO: the EXIF UserComment as `UserComment` (`UNICODE\\0` + UTF-16, or `ASCII\\0\\0\\0`
  + text, as A1111 writes it with piexif), and a JPEG COM segment as `jpeg comment`.
- ComfyUI's WebP saver: `prompt:{...}` / `workflow:{...}` in any EXIF tag, as `prompt` / `workflow`.

What cannot be read (truncated, damaged, too big) is skipped, with a note for a text that was
there but not read; anything that still raises is caught by `read_metadata`.
"""

from __future__ import annotations

import io
import warnings
import zlib
from collections.abc import Iterator

from PIL import Image

from commands.pictures.metadata.limits import MAX_CHUNK, MAX_TEXT_CHUNKS
from commands.pictures.metadata.values import add_note, mib

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_USER_COMMENT, _EXIF_IFD = 0x9286, 0x8769


def read_fields(data: bytes) -> tuple[dict[str, str], list[str]]:
    notes: list[str] = []
    if data[:8] == _PNG_SIGNATURE:
        return _png_fields(data, notes), notes
    return _exif_fields(data, notes), notes


def _png_fields(data: bytes, notes: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    seen = 0
    for kind, body in _png_chunks(data):
        if kind == b"eXIf":
            for key, value in _exif_texts(_load_exif(body), notes).items():
                fields.setdefault(key, value)
            continue
        if kind not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        seen += 1
        if seen > MAX_TEXT_CHUNKS:
            add_note(notes, f"The image has more than {MAX_TEXT_CHUNKS} text chunks; the rest are not read.")
            break
        item = _png_text(kind, body, notes)
        if item is not None:
            fields.setdefault(*item)
    return fields


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, memoryview]]:
    """(type, data) of each chunk; IDAT is skipped over, never inflated. Stops at IEND or at the
    first truncated chunk."""
    view = memoryview(data)
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = bytes(data[pos + 4 : pos + 8])
        start, end = pos + 8, pos + 8 + length
        if length > 2**31 - 1 or end > len(data):
            return
        if kind == b"IEND":
            return
        if kind != b"IDAT":
            yield kind, view[start:end]
        pos = end + 4  # and the CRC


def _png_text(kind: bytes, body: memoryview, notes: list[str]) -> tuple[str, str] | None:
    raw = bytes(body[: MAX_CHUNK + 200])
    key_bytes, sep, rest = raw.partition(b"\0")
    if not sep or not key_bytes:
        return None
    key = key_bytes.decode("latin-1")
    if len(body) - len(key_bytes) - 1 > MAX_CHUNK:
        add_note(notes, f"The `{key}` text is {mib(len(body))}; texts over {mib(MAX_CHUNK)} are not read.")
        return None
    if kind == b"tEXt":
        return key, _decode_text(rest)
    if kind == b"zTXt":
        text = _inflate(rest[1:], key, notes)  # compression method byte, then zlib
        return None if text is None else (key, _decode_text(text))
    # iTXt: compression flag, method, language tag \0, translated keyword \0, UTF-8 text
    if len(rest) < 2:
        return None
    compressed, rest = rest[0], rest[2:]
    _, _, rest = rest.partition(b"\0")
    _, _, text = rest.partition(b"\0")
    if compressed:
        inflated = _inflate(text, key, notes)
        if inflated is None:
            return None
        text = inflated
    return key, text.decode("utf-8", errors="replace")


def _inflate(data: bytes, key: str, notes: list[str]) -> bytes | None:
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(data, MAX_CHUNK + 1)
    except zlib.error:
        add_note(notes, f"The compressed `{key}` text is damaged and was not read.")
        return None
    if len(text) > MAX_CHUNK or inflater.unconsumed_tail:
        add_note(notes, f"The `{key}` text is over {mib(MAX_CHUNK)} unpacked and was not read.")
        return None
    return text


def _decode_text(data: bytes) -> str:
    """tEXt is Latin-1 by the standard, but many writers put UTF-8 there."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _exif_fields(data: bytes, notes: list[str]) -> dict[str, str]:
    """EXIF of a JPEG or WebP (Pillow reads it from the header; no pixel is decoded)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=["JPEG", "WEBP", "MPO"]) as image:
                exif = image.getexif()
                comment = image.info.get("comment")
                fields = _exif_texts(exif, notes)
    except Exception:  # not an image we read metadata from (or a damaged one)
        return {}
    if "parameters" not in fields and isinstance(comment, bytes) and comment:
        fields["jpeg comment"] = _decode_text(comment[:MAX_CHUNK])
    return fields


def _load_exif(body: memoryview) -> Image.Exif | None:
    exif = Image.Exif()
    try:
        exif.load(bytes(body[:MAX_CHUNK]))
    except Exception:
        return None
    return exif


def _exif_texts(exif: Image.Exif | None, notes: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    if exif is None:
        return fields
    try:
        comment = exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except Exception:
        comment = None
    if comment is None:
        comment = exif.get(_USER_COMMENT)
    if comment is not None:
        text = _user_comment(comment)
        if text:
            fields["UserComment"] = text
    for value in list(exif.values())[:64]:  # ComfyUI's WebP saver: "prompt:{...}", "workflow:{...}"
        if isinstance(value, bytes):
            value = _decode_text(value[:MAX_CHUNK])
        if isinstance(value, str):
            key, sep, rest = value.partition(":")
            if sep and key in ("prompt", "workflow") and rest.lstrip().startswith("{"):
                fields.setdefault(key, rest.rstrip("\0"))
    return fields


def _user_comment(value: object) -> str:
    """EXIF UserComment: an 8-byte character code, then the text (A1111: UNICODE = UTF-16 BE)."""
    if isinstance(value, str):
        return value.strip("\0").strip()
    if not isinstance(value, bytes):
        return ""
    prefix, body = value[:8], value[8 : 8 + 2 * MAX_CHUNK]
    if prefix == b"UNICODE\0":
        text = _utf16(body)
    elif prefix in (b"ASCII\0\0\0", b"\0" * 8, b"JIS\0\0\0\0\0"):
        text = _decode_text(body)
    else:
        text = _decode_text(value[: 2 * MAX_CHUNK])
    return text.strip("\0").strip()


def _utf16(body: bytes) -> str:
    if body[:2] == b"\xfe\xff":
        return body[2:].decode("utf-16-be", errors="replace")
    if body[:2] == b"\xff\xfe":
        return body[2:].decode("utf-16-le", errors="replace")
    body = body[: len(body) // 2 * 2]
    # ASCII in UTF-16 BE has its zero bytes first; some writers use little-endian regardless
    little = body[1::2].count(0) > body[0::2].count(0)
    return body.decode("utf-16-le" if little else "utf-16-be", errors="replace")
