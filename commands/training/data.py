"""The pictures people send to `/train`: read, checked and normalised before any training job sees them.

Torch-free (the command layer must start without a model). What is accepted:

- Each attachment is a picture, a `.zip` of pictures, or a kohya-style caption sidecar (`name.txt`
  or `name.caption`). Pictures are PNG, JPEG, WebP, BMP, and GIF (its first frame; the format
  allowlist is `commands.frame.images.ALLOWED_FORMATS`, shared with image uploads). TIFF and anything
  else is refused: "`notes.pdf` is not a picture I can read (...)". A file is a picture by its name
  (or an `image/*` content type for names without a picture suffix), but only its bytes decide:
  a text file named `cat.png` is refused the same way.
- A sidecar captions the pictures with the same stem (case-insensitive) in the same place: a
  top-level sidecar the top-level attachments, a sidecar in a zip the pictures in the same folder
  of that zip. Caption text is UTF-8 (a BOM is allowed), stripped, whitespace collapsed, at most
  `MAX_CAPTION_CHARS` characters; an empty one is no caption. Two sidecars for one stem are
  refused. A sidecar with no picture is ignored with a note.
- Every attachment, and every zip member as unpacked, is at most `limits.max_file_bytes`.
- Zips: at most `max_zip_members(limits)` entries (`ZIP_MEMBERS_PER_PICTURE * max_images +
  ZIP_MEMBERS_SLACK`); member paths must stay inside the zip (no absolute paths, `..` parts, drive
  letters; backslashes count as separators); no symlinks, no encryption, no nested archives (an
  archive suffix, or bytes starting with a zip signature). The declared unpacked sizes of all
  members of all zips together must fit `limits.max_zip_bytes`, and since a header can lie, each
  member is read through a bounded read (at most `max_file_bytes + 1` bytes, and never more than
  what is left of `max_zip_bytes`), so memory stays bounded whatever the headers say. Directories,
  `__MACOSX/`, `._*`, `.DS_Store`, `Thumbs.db` and `desktop.ini` are skipped silently; other
  members that are neither pictures nor sidecars are ignored with a note.
- A picture's width*height is checked against `limits.max_pixels` from its header, before a pixel
  is decoded; Pillow's own decompression-bomb error and warning are refusals too. Pictures are
  EXIF-rotated, flattened onto white, and stored as RGB PNG.
- Duplicates (the same pixels at the same size, whatever the file format) keep the first; one
  note names the dropped ones. Then there must be `min_images` to `max_images` pictures.

Every refusal is a `UserError` with one sentence naming the file and what to change; nothing
partial is ever returned.
"""

from __future__ import annotations

import hashlib
import io
import re
import stat
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from PIL import Image, ImageOps

from commands.frame.errors import UserError
from commands.frame.images import ALLOWED_FORMATS, _to_rgb
from commands.frame.types import Attachment

PICTURE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"})
SIDECAR_SUFFIXES = frozenset({".txt", ".caption"})
ARCHIVE_SUFFIXES = frozenset({".zip", ".7z", ".rar", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".zst"})
ZIP_CONTENT_TYPES = frozenset({"application/zip", "application/x-zip-compressed"})
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")  # local header, empty archive, spanned
ZIP_MEMBERS_PER_PICTURE = 4  # a picture, its sidecar, and macOS's `__MACOSX/._*` copies of both
ZIP_MEMBERS_SLACK = 100  # folders and stray files
MAX_CAPTION_CHARS = 1000
SKIPPED_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})  # OS litter, never the user's intent
_DRIVE = re.compile(r"^[A-Za-z]:")
_FORMATS = ", ".join(ALLOWED_FORMATS.values())


@dataclass(frozen=True)
class DatasetLimits:
    min_images: int  # fewest pictures (after duplicates are dropped)
    max_images: int  # most pictures
    max_file_bytes: int  # one attachment, or one zip member, as stored/unpacked
    max_zip_bytes: int  # all members of all zips together, unpacked (zip-bomb stop)
    max_pixels: int  # width*height of one picture (decompression-bomb stop)


@dataclass(frozen=True)
class DatasetImage:
    filename: str  # as the person named it (zip: the member's path inside the zip, `/`-separated)
    png: bytes  # EXIF-rotated, RGB (alpha composited on white), PNG-encoded
    width: int
    height: int
    caption: str | None  # from a `name.txt` / `name.caption` sidecar next to it, else None


@dataclass(frozen=True)
class Dataset:
    images: tuple[DatasetImage, ...]
    notes: tuple[str, ...]  # one line each for what was dropped or ignored


@dataclass(frozen=True)
class _File:
    name: str  # the attachment's name, or the member's path in its zip
    label: str  # how a message names it: "`a.png`" or "`cats/a.png` in `pics.zip`"
    place: tuple[int, str]  # (-1 for top level, else the zip's attachment index; folder): sidecars match here
    data: bytes
    content_type: str | None = None

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix.lower()

    @property
    def key(self) -> tuple[int, str, str]:
        return (*self.place, PurePosixPath(self.name).stem.lower())


def max_zip_members(limits: DatasetLimits) -> int:
    return ZIP_MEMBERS_PER_PICTURE * limits.max_images + ZIP_MEMBERS_SLACK


def read_dataset(attachments: Sequence[Attachment], limits: DatasetLimits) -> Dataset:
    """The pictures and captions of a `/train` request, checked as the module says. Blocking
    (unzipping, decoding): handlers run it through `commands.frame.offload`."""
    files: list[_File] = []
    notes: list[str] = []
    unpacked = 0  # bytes unpacked from all zips so far
    for index, attachment in enumerate(attachments):
        name = attachment.filename or f"attachment {index + 1}"
        if len(attachment.data) > limits.max_file_bytes:
            raise UserError(
                f"`{name}` is {_size(len(attachment.data))}; I take files up to "
                f"{_size(limits.max_file_bytes)}. Send it smaller, or split it up."
            )
        kind = (attachment.content_type or "").lower()
        if name.lower().endswith(".zip") or kind in ZIP_CONTENT_TYPES:
            unpacked = _unpack(attachment.data, name, index, limits, unpacked, files)
        else:
            files.append(_File(name, f"`{name}`", (-1, ""), attachment.data, kind))

    pictures: list[_File] = []
    captions: dict[tuple[int, str, str], tuple[_File, str | None]] = {}
    for file in files:
        if file.suffix in SIDECAR_SUFFIXES:
            if file.key in captions:
                raise UserError(
                    f"{captions[file.key][0].label} and {file.label} both caption the pictures "
                    f"named `{PurePosixPath(file.name).stem}`; keep one of them."
                )
            captions[file.key] = (file, _caption(file))
        elif file.suffix in PICTURE_SUFFIXES or (file.place[0] < 0 and (file.content_type or "").startswith("image/")):
            pictures.append(file)
        elif file.place[0] < 0:
            raise _unreadable(file)
        else:
            notes.append(f"Ignored {file.label}: it is neither a picture nor a .txt/.caption caption.")

    images: list[DatasetImage] = []
    first_seen: dict[bytes, str] = {}
    dropped: list[str] = []
    used: set[tuple[int, str, str]] = set()
    for file in pictures:
        image, digest = _decode(file, limits)
        if digest in first_seen:
            dropped.append(f"{file.label} (same as {first_seen[digest]})")
            continue
        first_seen[digest] = file.label
        # Stop as soon as the limit is passed: later pictures can only add to the count.
        if len(images) == limits.max_images:
            raise UserError(
                f"I found more than {limits.max_images} different pictures in what you sent; the "
                f"limit is {limits.max_images}. Pick at most {limits.max_images} and send them again."
            )
        caption = captions.get(file.key)
        used.add(file.key)
        images.append(DatasetImage(file.name, *image, caption=caption[1] if caption else None))

    if dropped:
        notes.append(f"Dropped {len(dropped)} duplicate picture{'s' if len(dropped) > 1 else ''}: " + ", ".join(dropped) + ".")
    for key, (sidecar, _) in captions.items():
        if key not in used:
            notes.append(f"Ignored {sidecar.label}: there is no picture named `{PurePosixPath(sidecar.name).stem}` next to it.")
    if not images:
        raise UserError(
            f"I found no pictures in what you sent; attach {limits.min_images}–{limits.max_images} "
            "pictures (or a .zip of them) to `/train`."
        )
    if len(images) < limits.min_images:
        after = f" (after dropping {len(dropped)} duplicate{'s' if len(dropped) > 1 else ''})" if dropped else ""
        raise UserError(
            f"I found {len(images)} picture{'s' if len(images) > 1 else ''} in what you sent{after}; "
            f"training needs at least {limits.min_images}. Attach more pictures to `/train`."
        )
    return Dataset(tuple(images), tuple(notes))


def _unpack(data: bytes, name: str, index: int, limits: DatasetLimits, unpacked: int, files: list[_File]) -> int:
    """Append the zip's members to `files`; return the running unpacked total (all zips)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise UserError(
            f"`{name}` is not a zip file I can open (it may be damaged); zip the pictures again and send the new file."
        ) from None
    with archive:
        infos = archive.infolist()
        if len(infos) > max_zip_members(limits):
            raise UserError(
                f"`{name}` has {len(infos)} entries; I take at most {max_zip_members(limits)} "
                f"(for up to {limits.max_images} pictures). Zip fewer files."
            )
        members: list[tuple[zipfile.ZipInfo, str]] = []
        for info in infos:  # check every entry first, skipped ones too: nothing odd gets through
            path = info.filename.replace("\\", "/")  # Windows tools write `\`; treat it as a separator
            parts = PurePosixPath(path).parts
            if path.startswith("/") or ".." in parts or _DRIVE.match(path):
                raise UserError(
                    f"`{name}` contains `{info.filename}`, a path that points outside the zip; "
                    "zip the pictures again from inside their folder."
                )
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UserError(f"`{name}` contains `{path}`, a symbolic link; zip the pictures themselves, not links to them.")
            if info.flag_bits & 0x1:
                raise UserError(f"`{name}` is password-protected (`{path}` is encrypted); zip the pictures again without a password.")
            members.append((info, path))
        declared = unpacked + sum(_declared_size(info) for info in infos)
        if declared > limits.max_zip_bytes:
            raise UserError(
                f"`{name}` unpacks to {_size(declared - unpacked)}; I take at most "
                f"{_size(limits.max_zip_bytes)} unpacked in all. Send fewer or smaller pictures."
            )
        for info, path in members:
            base = PurePosixPath(path).name.lower()
            if info.is_dir() or path.startswith("__MACOSX/") or base in SKIPPED_NAMES or base.startswith("._"):
                continue
            label = f"`{path}` in `{name}`"
            nested = UserError(f"{label} is another archive; unpack it and put its pictures straight into one zip.")
            if PurePosixPath(base).suffix in ARCHIVE_SUFFIXES:
                raise nested
            too_big = UserError(f"{label} is larger than {_size(limits.max_file_bytes)}, the most I take for one file; send it smaller.")
            if _declared_size(info) > limits.max_file_bytes:
                raise too_big
            # The bounded read: whatever the header says, never hold more than one file's limit or
            # more than is left of the total, plus one byte to tell "exactly at the limit" from "over".
            room = limits.max_zip_bytes - unpacked
            try:
                with archive.open(info) as member:
                    content = member.read(min(limits.max_file_bytes, room) + 1)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError, zlib.error):
                raise UserError(
                    f"I can't unpack {label} (the zip may be damaged, or use a compression I "
                    "don't know); zip the pictures again with ordinary compression."
                ) from None
            if len(content) > limits.max_file_bytes:
                raise too_big
            unpacked += len(content)
            if unpacked > limits.max_zip_bytes:
                raise UserError(
                    f"`{name}` unpacks to more than {_size(limits.max_zip_bytes)}, the most I take in all; send fewer or smaller pictures."
                )
            if content.startswith(ZIP_SIGNATURES):
                raise nested
            files.append(_File(path, label, (index, str(PurePosixPath(path).parent)), content))
    return unpacked


def _declared_size(info: zipfile.ZipInfo) -> int:
    """What the zip's header claims a member unpacks to (checked first; the bounded read backs it up)."""
    return info.file_size


def _decode(file: _File, limits: DatasetLimits) -> tuple[tuple[bytes, int, int], bytes]:
    """((png, width, height), digest of the normalised pixels), or a refusal naming the file."""
    too_many = f"the limit is {limits.max_pixels / 1e6:g} megapixels. Downscale it and send it again."
    try:
        # Pillow warns (and past twice its limit, raises) for huge images; both are refusals here.
        # catch_warnings is process-wide, which is fine: the filter only turns this warning into an error.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(file.data), formats=list(ALLOWED_FORMATS)) as image:
                width, height = image.size  # from the header: nothing decoded yet
                if width * height > limits.max_pixels:
                    raise UserError(f"{file.label} is {width}x{height} ({width * height / 1e6:.1f} megapixels); " + too_many)
                image.load()
                rgb = _to_rgb(ImageOps.exif_transpose(image))
    except UserError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(f"{file.label} has too many pixels to open safely; " + too_many) from None
    except Exception:  # noqa: BLE001 - Pillow's decoders raise assorted errors on broken or hostile files
        raise _unreadable(file) from None
    out = io.BytesIO()
    rgb.save(out, format="PNG")
    # Hash the pixels, not the file: the same picture as PNG and as lossless WebP/BMP is one picture.
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode() + rgb.tobytes()).digest()
    return (out.getvalue(), rgb.width, rgb.height), digest


def _caption(file: _File) -> str | None:
    try:
        text = file.data.decode("utf-8-sig")  # `-sig`: Windows editors often prepend a BOM
    except UnicodeDecodeError:
        raise UserError(f"{file.label} is not UTF-8 text; save it as UTF-8 and send it again.") from None
    text = " ".join(text.split())
    if len(text) > MAX_CAPTION_CHARS:
        raise UserError(
            f"{file.label} is {len(text)} characters long; a caption can be at most {MAX_CAPTION_CHARS}. Shorten it and send it again."
        )
    return text or None


def _unreadable(file: _File) -> UserError:
    return UserError(
        f"{file.label} is not a picture I can read (I take {_FORMATS}, a .zip of them, and "
        ".txt/.caption captions); convert or remove it and send again."
    )


def _size(count: int) -> str:
    if count >= 2**20:
        return f"{count / 2**20:.1f} MiB"
    return f"{count / 2**10:.0f} KiB" if count >= 2**10 else f"{count} bytes"
