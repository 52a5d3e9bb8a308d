"""Replies as Discord messages: content within 2000 characters, the images as files fitted to the
upload limit (a grid for a batch), a reply's documents (a trained LoRA) as they are, and the buttons.

Discord keeps files as they are uploaded, so a single image goes out as its original PNG, with
its parameters, unless it is over the limit. Originals (`kind == "files"`: an admin's review)
go as one PNG file each, like documents.

A clip (`Reply.video`) goes as `sdbot-<job>.mp4`, which Discord plays inline, fitted to the upload
limit (`media.clip_of`: re-encoded or smaller, a GIF as a last resort), with its buttons; when no
file of it fits, its poster (the first frame) goes instead, with a line saying so.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import discord

from bot import media
from bot.discord.interface import result_view
from bot.text import chunks, shorten
from commands.frame.types import DocumentFile, Reply
from commands.jobs.render import size_text

MAX_CONTENT = 2000
MAX_FILES = 10  # attachments on one message
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # bytes per file where nothing tells us more


def leading_texts(reply: Reply) -> list[str]:
    """The first pieces of a text reply too long for one message; `message_kwargs` sends the last."""
    return [] if reply.images else chunks(reply.text, MAX_CONTENT)[:-1]


def message_kwargs(reply: Reply, max_bytes: int, *, mention: str | None = None) -> dict[str, Any]:
    """Keyword arguments for `send` (channel, followup, or reply) that show `reply`. Reads (and for
    a clip, may re-encode) files: call it off the event loop."""
    if reply.kind == "files":  # originals: each PNG as it is, with its parameters, never a grid
        stem = f"sdbot-{reply.job_id}"
        documents = tuple(DocumentFile(image.path, media.png_name(image, stem), image.path.stat().st_size) for image in reply.images)
        reply = dataclasses.replace(reply, images=(), documents=(*documents, *reply.documents))
    text = reply.text if reply.images else chunks(reply.text, MAX_CONTENT)[-1]
    kwargs: dict[str, Any] = {}
    clip = None
    if reply.video is not None:
        try:
            clip = media.clip_of(reply.video, max_bytes=max_bytes, stem=f"sdbot-{reply.job_id}")
        except media.ClipError as error:  # nothing fits: the poster below, saying so
            text += f"\n{error.message}"
        else:
            if clip.note:
                text += f"\n{clip.note}"
            kwargs["files"] = [discord.File(io.BytesIO(clip.data), filename=clip.filename, spoiler=reply.spoiler)]
    if reply.images and clip is None:
        picture = media.fit(media.picture_of(reply.images, f"sdbot-{reply.job_id}"), max_bytes=max_bytes)
        if picture.note:
            text += f"\n{picture.note}"
        kwargs["files"] = [discord.File(io.BytesIO(picture.data), filename=picture.filename, spoiler=reply.spoiler)]
        if reply.preview is not None:  # a seamless texture, tiled 2x2
            preview = media.fit(media.picture_of((reply.preview,), f"sdbot-{reply.job_id}-tiled"), max_bytes=max_bytes)
            kwargs["files"].append(discord.File(io.BytesIO(preview.data), filename=preview.filename, spoiler=reply.spoiler))
    if reply.documents:
        files, notes = document_files(reply.documents, max_bytes, room=MAX_FILES - len(kwargs.get("files", [])))
        if files:
            kwargs.setdefault("files", []).extend(files)
        text = "\n".join([text, *notes]) if text.strip() else "\n".join(notes)
    if mention:
        text = f"<@{mention}> {text}"
        kwargs["allowed_mentions"] = discord.AllowedMentions(users=[discord.Object(int(mention))])
    kwargs["content"] = shorten(text, MAX_CONTENT)
    view = result_view(reply.actions)
    if view is not None:
        kwargs["view"] = view
    return kwargs


def document_files(documents: tuple[DocumentFile, ...], max_bytes: int, *, room: int = MAX_FILES) -> tuple[list[discord.File], list[str]]:
    """The documents as files as they are, under the names people save them as; a line instead for
    each one over the upload limit (or beyond the files one message may carry). Reads the files:
    call it off the event loop."""
    files: list[discord.File] = []
    notes: list[str] = []
    for document in documents:
        try:
            size = document.path.stat().st_size
        except OSError:
            notes.append(f"I can't find `{document.filename}` any more. Please ask for it again.")
            continue
        if size > max_bytes:
            notes.append(
                f"`{document.filename}` is {size_text(size)}, over the {size_text(max_bytes)} I may upload here, so it isn't attached."
            )
        elif len(files) >= room:
            notes.append(f"`{document.filename}` isn't attached: a message carries at most {MAX_FILES} files.")
        else:
            files.append(discord.File(io.BytesIO(document.path.read_bytes()), filename=document.filename))
    return files, notes
