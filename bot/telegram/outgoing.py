"""Replies as Telegram messages: text in HTML, results as one photo (a grid for a batch) with an
inline keyboard, original PNGs as documents, a reply's files (`Reply.documents`, a trained LoRA)
as documents after its text, and every Telegram limit named here.

A clip (`Reply.video`) goes with sendAnimation: a soundless MP4 (or a GIF, when no MP4 fits)
that Telegram plays inline, autoplaying and looping, with its poster (the first frame) as the
thumbnail and the clip buttons; no PNG button (a clip's frames come with /frames). A clip no file
of which fits the upload limit is its poster as a photo, with a line saying so.

Keyboard buttons carry `a:<action id>` (`a:upscale:1`, `a:vary:2`, `a:reroll`) or `png` as
callback data. They mean something only together with the message they are under, which
resolves to a job through the database; so old buttons keep working after a restart.
"""

from __future__ import annotations

import asyncio
import html
import io
import itertools
import re
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, Message, ReplyParameters
from telegram.constants import ParseMode

from bot import media
from bot.text import chunks as text_chunks
from bot.text import shorten
from commands.frame.types import Action, DocumentFile, ImageFile, Reply
from commands.jobs.render import size_text

# Telegram's limits (https://core.telegram.org/bots/api)
MAX_TEXT = 4096  # characters of a message
MAX_CAPTION = 1024  # characters of a photo or document caption
MAX_CALLBACK_DATA = 64  # bytes
MAX_PHOTO_BYTES = 10 * 1000 * 1000
MAX_PHOTO_SIDE_SUM = 10_000  # width + height
MAX_ALERT = 200  # characters of a callback query answer
MAX_THUMBNAIL_SIDE = 320  # pixels, width and height of a video's or animation's thumbnail (a JPEG)
MAX_THUMBNAIL_BYTES = 200 * 1000
THUMBNAIL_QUALITIES = (85, 70, 50)
BUTTONS_PER_ROW = 5

ACTION_PREFIX = "a:"
PNG_DATA = "png"
PNG_LABEL = "📄 PNG"


@dataclass(frozen=True)
class Limits:
    max_document_bytes: int  # what a bot may upload: documents and clips (50 MB on Telegram's servers)


def to_html(text: str) -> str:
    """The command layer's light markdown (`code`, **bold**) as Telegram HTML, everything else escaped."""
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped)
    return re.sub(r"`([^`\n]+)`", r"<code>\1</code>", escaped)


def plain(text: str) -> str:
    """The command layer's light markdown without its marks, for places that show no markup (alerts)."""
    return text.replace("**", "").replace("`", "")


def chunks(text: str) -> list[str]:
    """Pieces of a long text that stay under Telegram's limit once turned into HTML (the margin
    covers tags; Telegram counts the visible text)."""
    return text_chunks(text, MAX_TEXT - 96)


def keyboard(actions: tuple[Action, ...], *, with_png: bool) -> InlineKeyboardMarkup | None:
    """The actions by their rows (at most BUTTONS_PER_ROW a row), the PNG button on the last."""
    rows: list[list[InlineKeyboardButton]] = []
    for _, group in itertools.groupby(actions, key=lambda action: action.row):
        buttons = [InlineKeyboardButton(action.label, callback_data=callback_data(action.id)) for action in group]
        rows.extend(buttons[i : i + BUTTONS_PER_ROW] for i in range(0, len(buttons), BUTTONS_PER_ROW))
    if with_png:
        png = InlineKeyboardButton(PNG_LABEL, callback_data=PNG_DATA)
        if rows and len(rows[-1]) < BUTTONS_PER_ROW:
            rows[-1].append(png)
        else:
            rows.append([png])
    return InlineKeyboardMarkup(rows) if rows else None


def callback_data(action_id: str) -> str:
    data = ACTION_PREFIX + action_id
    if len(data.encode()) > MAX_CALLBACK_DATA:  # our ids are short; this guards future ones
        raise ValueError(f"callback data {data!r} is over Telegram's {MAX_CALLBACK_DATA} bytes")
    return data


async def send_reply(bot: Bot, chat_id: int, reply: Reply, *, reply_to: int | None, limits: Limits) -> Message:
    """Send `reply` to the chat; returns the message that carries its buttons (the one to record).
    Its documents follow it, each replying to the same message."""
    replying = ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None
    message = None
    if reply.text.strip() or reply.images or not reply.documents:
        message = await _send_message(bot, chat_id, reply, replying, limits)
    for document in reply.documents:
        sent = await send_document(bot, chat_id, document, replying, limits)
        message = message or sent
    assert message is not None
    return message


async def send_document(bot: Bot, chat_id: int, document: DocumentFile, replying: ReplyParameters | None, limits: Limits) -> Message:
    """One file as it is, under the name people save it as; a file over the limit is a line saying so."""
    try:
        size = document.path.stat().st_size
    except OSError:
        text = f"I can't find {document.filename} any more. Please ask for it again."
        return await bot.send_message(chat_id, text, reply_parameters=replying)
    if size > limits.max_document_bytes:
        text = (
            f"{document.filename} is {size_text(size)}, over the {size_text(limits.max_document_bytes)} I may send "
            "in Telegram, so it isn't attached."
        )
        return await bot.send_message(chat_id, text, reply_parameters=replying)
    data = await asyncio.to_thread(document.path.read_bytes)  # a model file may be large: off the event loop
    return await bot.send_document(
        chat_id,
        InputFile(data, filename=document.filename),
        reply_parameters=replying,
        disable_content_type_detection=True,
    )


async def _send_message(bot: Bot, chat_id: int, reply: Reply, replying: ReplyParameters | None, limits: Limits) -> Message:
    if reply.kind == "files":
        return await _send_documents(bot, chat_id, reply, replying, limits)
    if reply.video is not None:
        return await _send_clip(bot, chat_id, reply, replying, limits)
    if reply.images:
        return await _send_picture(bot, chat_id, reply, replying)
    message = None
    pieces = chunks(reply.text)
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        message = await bot.send_message(
            chat_id,
            to_html(piece),
            parse_mode=ParseMode.HTML,
            reply_parameters=replying if i == 0 else None,
            reply_markup=keyboard(reply.actions, with_png=False) if last else None,
        )
    assert message is not None
    return message


def photo_of(reply: Reply) -> media.Picture:
    """The photo a reply shows: its image, or a grid of its images, within Telegram's photo limits."""
    picture = media.picture_of(reply.images, f"sdbot-{reply.job_id}")
    return media.fit(picture, max_bytes=MAX_PHOTO_BYTES, max_side_sum=MAX_PHOTO_SIDE_SUM)


async def _send_picture(bot: Bot, chat_id: int, reply: Reply, replying: ReplyParameters | None, *, with_png: bool = True) -> Message:
    picture = await asyncio.to_thread(photo_of, reply)  # image work stays off the event loop
    with_png = with_png and reply.originals and reply.kind not in ("map", "sample")  # no job output: no PNG original
    caption = reply.text
    if picture.note is not None:
        caption += f"\n{picture.note}" + (" 📄 PNG sends the originals." if with_png else "")
    message = await bot.send_photo(
        chat_id,
        InputFile(picture.data, filename=picture.filename),
        caption=to_html(shorten(caption, MAX_CAPTION - 64)),
        parse_mode=ParseMode.HTML,
        reply_parameters=replying,
        reply_markup=keyboard(reply.actions, with_png=with_png),
        has_spoiler=reply.spoiler,
    )
    if reply.preview is not None:  # a seamless texture, tiled 2x2: a second photo, without buttons
        preview = await asyncio.to_thread(
            lambda: media.fit(
                media.picture_of((reply.preview,), f"sdbot-{reply.job_id}-tiled"),  # type: ignore[arg-type]
                max_bytes=MAX_PHOTO_BYTES,
                max_side_sum=MAX_PHOTO_SIDE_SUM,
            )
        )
        await bot.send_photo(
            chat_id,
            InputFile(preview.data, filename=preview.filename),
            caption="Tiled 2×2",
            has_spoiler=reply.spoiler,
            reply_parameters=ReplyParameters(message.message_id, allow_sending_without_reply=True),
        )
    return message


def thumbnail_of(image: ImageFile | Path) -> bytes:
    """A clip's poster as Telegram takes a thumbnail: a JPEG at most MAX_THUMBNAIL_SIDE a side and
    under MAX_THUMBNAIL_BYTES."""
    with Image.open(image.path if isinstance(image, ImageFile) else image) as opened:
        picture = opened.convert("RGB")
    picture.thumbnail((MAX_THUMBNAIL_SIDE, MAX_THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    for quality in THUMBNAIL_QUALITIES:
        out = io.BytesIO()
        picture.save(out, format="JPEG", quality=quality)
        if out.tell() <= MAX_THUMBNAIL_BYTES:
            break
    return out.getvalue()


def _clip_files(reply: Reply, limits: Limits) -> tuple[media.Clip, bytes | None]:
    """The clip fitted to the upload limit, and its thumbnail (None without a poster)."""
    assert reply.video is not None
    clip = media.clip_of(reply.video, max_bytes=limits.max_document_bytes, stem=f"sdbot-{reply.job_id}")
    poster = reply.images[0] if reply.images else (reply.video.frames[0] if reply.video.frames else None)
    try:
        thumbnail = thumbnail_of(poster) if poster is not None else None
    except OSError:  # the poster is gone: Telegram makes a thumbnail of its own
        thumbnail = None
    return clip, thumbnail


async def _send_clip(bot: Bot, chat_id: int, reply: Reply, replying: ReplyParameters | None, limits: Limits) -> Message:
    try:
        clip, thumbnail = await asyncio.to_thread(_clip_files, reply, limits)  # reading and re-encoding: off the loop
    except media.ClipError as error:  # nothing fits: the poster, saying so
        fallback = replace(reply, text=f"{reply.text}\n{error.message}", video=None)
        if fallback.images:
            return await _send_picture(bot, chat_id, fallback, replying, with_png=False)
        return await _send_message(bot, chat_id, fallback, replying, limits)
    caption = reply.text if clip.note is None else f"{reply.text}\n{clip.note}"
    return await bot.send_animation(
        chat_id,
        InputFile(clip.data, filename=clip.filename),
        duration=max(1, round(clip.seconds)),
        width=clip.width,
        height=clip.height,
        caption=to_html(shorten(caption, MAX_CAPTION - 64)),
        parse_mode=ParseMode.HTML,
        reply_parameters=replying,
        reply_markup=keyboard(reply.actions, with_png=False),
        thumbnail=InputFile(thumbnail, filename="poster.jpg") if thumbnail is not None else None,
        has_spoiler=reply.spoiler,
    )


async def _send_documents(bot: Bot, chat_id: int, reply: Reply, replying: ReplyParameters | None, limits: Limits) -> Message:
    message = None
    for image in reply.images:
        size = image.path.stat().st_size
        if size > limits.max_document_bytes:
            text = (
                f"Image {image.index + 1} of job {reply.job_id} is {size / 1e6:.0f} MB, over the "
                f"{limits.max_document_bytes / 1e6:.0f} MB this bot may send. Use a smaller size."
            )
            message = await bot.send_message(chat_id, text, reply_parameters=replying)
            continue
        filename = media.png_name(image, f"sdbot-{reply.job_id}")
        message = await bot.send_document(
            chat_id,
            InputFile(image.path.read_bytes(), filename=filename),
            caption=f"Job {reply.job_id}, image {image.index + 1}, seed {image.seed}",
            reply_parameters=replying,
            disable_content_type_detection=True,
        )
    assert message is not None
    return message
