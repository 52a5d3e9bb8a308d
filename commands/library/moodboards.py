"""Moodboards: named sets of pictures that give a drawing its style (`--sref NAME`), Midjourney's.

    /moodboard save NAME     with pictures: attached, replied to, or `--images b3,b5` (message ids)
    /moodboard add NAME      more pictures, the same ways
    /moodboard remove NAME N the N-th picture out
    /moodboard show NAME     its pictures, as one contact sheet
    /moodboard delete|share|unshare NAME
    /moodboards              yours and the shared ones

`--sref NAME` draws with the mean of the board's pictures' IP-Adapter embeddings (one image prompt,
however many pictures: `generation.control.ip_adapters`); `/settings --moodboard NAME` makes it the
style of every drawing that names none. A board is stored as an asset of kind "moodboard" (the
LoRAs' table, so it is owned, private until shared, and named as they are); its pictures' blob
keys and sizes are in the row's `info`. New uploads count towards the person's storage quota, the
bot's own pictures do not (they are stored already). A job copies the board's picture keys into
its spec when it is queued: editing or deleting a board never changes a queued or finished job.
"""

from __future__ import annotations

import hashlib
import io
import math

from PIL import Image, ImageOps
from sqlalchemy.ext.asyncio import AsyncSession

from commands.frame.context import Context
from commands.frame.declare import Option, read_flags
from commands.frame.errors import Refused, UserError
from commands.frame.offload import offload
from commands.frame.types import ImageFile, Reply, Request
from commands.jobs import render
from commands.jobs.admission import asker
from commands.jobs.options import IMAGES, InitImage, message_ids, picture_files
from commands.jobs.sources import MOODBOARD, board_pictures, find_pictures
from generation.assets.files import valid_asset_name
from generation.spec import MAX_REFERENCE_PICTURES
from storage import assets, queue
from storage.tables import Asset

MAX_MOODBOARDS = 50  # per person
SHEET_CELL = 256  # px: the side of one picture on /moodboard show's contact sheet
ACTIONS = ("save", "add", "remove", "show", "list", "delete", "share", "unshare")
OPTIONS: tuple[Option, ...] = (
    Option("action", "choice", "What to do (save, add: with pictures)", choices=ACTIONS, positional=True, required=True),
    Option("name", "text", "The moodboard's name", positional=True),
    Option("number", "int", "With remove: which picture (1 = the first)", bounds=(1, MAX_REFERENCE_PICTURES), positional=True),
    IMAGES,
    *picture_files(4, "A picture for the board:"),
)
USAGE = (
    "Use `/moodboard save NAME` with pictures (attach them, reply to one, or `--images b3,b5`), `/moodboard add NAME` "
    "for more, `/moodboard show|delete|share|unshare NAME`, `/moodboard remove NAME N`, or `/moodboards` to list them."
)


async def list_moodboards(ctx: Context, request: Request, args: str) -> list[Reply]:
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        found = await assets.usable(session, user.id, MOODBOARD)
        default = user.settings.get("moodboard")
    own = [b for b in found if b.owner_id == user.id]
    shared = [b for b in found if b.owner_id != user.id]
    lines = ["🖼 Moodboards: draw in their style with `--sref NAME`."]
    lines += [_line(board, default) for board in own] or ["You have none yet: `/moodboard save NAME` with pictures attached."]
    if shared:
        lines += ["", "Shared:"] + [_line(board, default) for board in shared]
    return [Reply("\n".join(lines))]


def _line(board: Asset, default: object) -> str:
    count = len(board.info["pictures"])
    marks = [f"{count} picture{'s' if count != 1 else ''}", "shared" if board.shared else "private"]
    if board.name == default:
        marks.append("your default (/settings)")
    return f"• {board.name} — {' · '.join(marks)}"


async def moodboard_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags = read_flags(request.options, args, OPTIONS)
    if flags.problems:
        raise UserError(*flags.problems)
    verb, *words = flags.text.split() or ["list"]
    verb = verb.lower()
    if verb == "list" and not words:
        return await list_moodboards(ctx, request, "")
    if verb not in ACTIONS or not words:
        raise UserError(USAGE)
    name = words[0].lower()
    if verb in ("save", "add") and len(words) == 1:
        return await _save(ctx, request, name, message_ids(flags.values.get("images")), adding=verb == "add")
    if verb == "remove" and len(words) == 2 and words[1].isdigit():
        return await _remove(ctx, request, name, int(words[1]))
    if verb == "show" and len(words) == 1:
        return await _show(ctx, request, name)
    if verb in ("delete", "share", "unshare") and len(words) == 1:
        return await _manage(ctx, request, verb, name)
    raise UserError(USAGE)


async def _save(ctx: Context, request: Request, name: str, ids: list[str], *, adding: bool) -> list[Reply]:
    if not valid_asset_name(name):
        raise UserError(f"`{name}` can't be a name: use letters, digits, `_`, `-` and `.`, up to 64 characters.")
    if not (request.attachments or request.reply_to or ids):
        raise UserError(
            f"`/moodboard {'add' if adding else 'save'} {name}` needs pictures: attach them, reply to one, or `--images b3,b5`."
        )
    async with ctx.db.transaction() as session:  # what is there now, to check the count before any upload is read
        user = await asker(session, request)
        board = await assets.find_own(session, user.id, MOODBOARD, name)
        _check_target(board, name, adding)
        count = await _count(session, user.id)
    had = len(board.info["pictures"]) if board is not None else 0
    if not adding and count >= MAX_MOODBOARDS:
        raise UserError(f"You have {count} moodboards, the most one person may keep. Delete one first (`/moodboard delete NAME`).")
    room = MAX_REFERENCE_PICTURES - had
    if room <= 0:
        raise UserError(f"`{name}` has {had} pictures, the most a moodboard takes. `/moodboard remove {name} N` makes room.")
    found = await find_pictures(ctx, request, ids, most=room, what=f"The moodboard `{name}` (it has {had} of {MAX_REFERENCE_PICTURES})")
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        board = await assets.find_own(session, user.id, MOODBOARD, name)  # again: it may have changed meanwhile
        _check_target(board, name, adding)
        pictures = [
            *(board.info["pictures"] if board is not None else []),
            *({"key": p.blob_key, "width": p.width, "height": p.height} for p, _ in found),
        ]
        if len(pictures) > MAX_REFERENCE_PICTURES:
            raise UserError(f"`{name}` would have {len(pictures)} pictures; a moodboard takes up to {MAX_REFERENCE_PICTURES}.")
        new_bytes = sum(size for _, size in found if size is not None)
        used, quota = await assets.bytes_used(session, user.id), ctx.limits(request).storage_bytes
        if quota is not None and new_bytes and used + new_bytes > quota:
            raise Refused(
                "storage",
                f"That would use {render.size_text(used + new_bytes)} of your {render.size_text(quota)} for uploads. "
                "Delete a LoRA or a moodboard first.",
            )
        for picture, size in found:
            if size is not None:
                await queue.record_blob(session, picture.blob_key, size, "image/png", picture.width, picture.height)
        fields = {
            "blob_key": pictures[0]["key"],
            "sha256": hashlib.sha256(" ".join(p["key"] for p in pictures).encode()).hexdigest(),
            "info": {"pictures": pictures},
        }
        if board is None:
            board = await assets.add(
                session, user.id, MOODBOARD, name, format=MOODBOARD, architecture=None, rank=None, size=new_bytes, **fields
            )
        else:
            board.size += new_bytes
            for key, value in fields.items():
                setattr(board, key, value)
    verb = "Added to" if adding else "Saved"
    return [
        Reply(
            f"{verb} the moodboard `{name}`: {len(pictures)} picture{'s' if len(pictures) != 1 else ''}. Draw in its style with `--sref {name}`."
        )
    ]


def _check_target(board: Asset | None, name: str, adding: bool) -> None:
    if adding and board is None:
        raise UserError(f"You have no moodboard `{name}`. Make it with `/moodboard save {name}` and pictures.")
    if not adding and board is not None:
        raise UserError(f"You already have a moodboard `{name}`. Add pictures with `/moodboard add {name}`, or delete it first.")


async def _count(session: AsyncSession, user_id: int) -> int:
    return sum(1 for board in await assets.usable(session, user_id, MOODBOARD) if board.owner_id == user_id)


async def _remove(ctx: Context, request: Request, name: str, number: int) -> list[Reply]:
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        board = await assets.find_own(session, user.id, MOODBOARD, name)
        if board is None:
            raise UserError(f"You have no moodboard `{name}`. `/moodboards` lists them.")
        pictures = list(board.info["pictures"])
        if not 1 <= number <= len(pictures):
            raise UserError(
                f"`{name}` has {len(pictures)} picture{'s' if len(pictures) != 1 else ''}; give a number from 1 to {len(pictures)}."
            )
        if len(pictures) == 1:
            raise UserError(f"That is the last picture of `{name}`; delete the board instead (`/moodboard delete {name}`).")
        del pictures[number - 1]
        board.info = {"pictures": pictures}
        board.blob_key = pictures[0]["key"]
    return [Reply(f"Took picture {number} out of `{name}`; it has {len(pictures)} now. Jobs already queued with it keep theirs.")]


async def _show(ctx: Context, request: Request, name: str) -> list[Reply]:
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        board = await assets.find_usable(session, user.id, MOODBOARD, name)
    if board is None:
        raise UserError(f"I know no moodboard `{name}` of yours or shared. `/moodboards` lists them.")
    pictures = [picture for picture, _ in board_pictures(board)]
    sheet = await offload(_contact_sheet, ctx, pictures)
    owner = "yours" if board.owner_id == user.id else "shared"
    text = f"🖼 Moodboard `{board.name}` ({owner}, {len(pictures)} pictures, in order: `/moodboard remove {board.name} N` takes one out)."
    return [Reply(text, kind="sample", images=(sheet,), originals=False)]


def _contact_sheet(ctx: Context, pictures: list[InitImage]) -> ImageFile:
    """The pictures side by side, each fitted into a SHEET_CELL square, up to 4 a row (blocking)."""
    columns = min(4, len(pictures))
    rows = math.ceil(len(pictures) / columns)
    sheet = Image.new("RGB", (columns * SHEET_CELL, rows * SHEET_CELL), (24, 24, 24))
    for index, picture in enumerate(pictures):
        with Image.open(ctx.blobs.path(picture.blob_key)) as opened:
            thumb = ImageOps.contain(opened.convert("RGB"), (SHEET_CELL, SHEET_CELL))
        x = index % columns * SHEET_CELL + (SHEET_CELL - thumb.width) // 2
        y = index // columns * SHEET_CELL + (SHEET_CELL - thumb.height) // 2
        sheet.paste(thumb, (x, y))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    key = ctx.blobs.put(buffer.getvalue(), "png")
    return ImageFile(ctx.blobs.path(key), sheet.width, sheet.height, 0, 0)


async def _manage(ctx: Context, request: Request, verb: str, name: str) -> list[Reply]:
    admin = ctx.is_admin(request)
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        board = await assets.find_own(session, user.id, MOODBOARD, name)
        if board is None and admin and verb in ("delete", "unshare"):
            found = await assets.find_any(session, MOODBOARD, name)
            if len(found) > 1:
                raise UserError(f"{len(found)} people have a moodboard named `{name}`; an admin must act on one at a time.")
            board = found[0] if found else None
        if board is None:
            raise UserError(f"You have no moodboard `{name}`. `/moodboards` lists them.")
        if verb == "delete":
            await session.delete(board)
            return [Reply(f"Deleted the moodboard `{board.name}`. Jobs already queued with it still run.")]
        board.shared = verb == "share"
    state = "shared: everyone can draw with `--sref " + board.name + "`" if board.shared else "private again"
    return [Reply(f"The moodboard `{board.name}` is {state}.")]
